"""Our statuses as the GitOps tools read them, with the real readers.

Every interesting state of the five kinds is produced by the operator's own pure status layer
(``status.batch``, ``status.serving``, EvalRun's ``finish``), wrapped in a full object the way
the reconcilers write it (``status.observedGeneration`` = ``metadata.generation``), and read by

- kstatus (``sigs.k8s.io/cli-utils/pkg/kstatus/status.Compute``, what Flux and kpt use) through
  ``hack/kstatus``, built on demand by ``e2e/cluster/build-binaries.sh`` (cached, a no-op when
  warm), and
- the chart's Argo CD health scripts (``helm/internlm-operator/files/argocd/*.lua``) in a real
  Lua 5.1 interpreter (``lupa.lua51``; Argo CD's gopher-lua implements Lua 5.1).

The expected table below is the contract documented in docs/helm.md.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from internlm_operator.api.v1alpha1 import parse
from internlm_operator.reconcilers.evalrun import finish
from internlm_operator.status import batch, serving
from internlm_operator.status.serving import Blocker, ServingObservation

from tests.unit.test_batch_status import NOW, job, obs, pod
from tests.unit.test_serving_status import READY_PREV, deploy, failed_pod
from tests.unit.test_stuck import PSA, QUOTA, event, pending, sigterm, waiting

REPO = Path(__file__).resolve().parents[2]
LUA_DIR = REPO / "helm" / "internlm-operator" / "files" / "argocd"
BATCH_KINDS = ("TrainJob", "FineTune", "EvalRun")
SERVING_KINDS = ("ModelServe", "Agent")

Status = dict[str, Any]


# -- states, from the pure status layer ---------------------------------------------------------


def b(**kw: Any) -> Status:
    return batch.decide(obs(**kw)).status


def running_pods() -> list[dict[str, Any]]:
    return [pod(0), pod(1)]


def succeeded(message: str = '{"ok": true}') -> Status:
    done = job(conds=[("Complete", "")])
    return b(job=done, pods=[pod(0, phase="Succeeded", code=0, message=message)])


def evalrun(value: float) -> Status:
    """A finished EvalRun of samples/evalrun.yaml (threshold gsm8k accuracy >= 60)."""
    manifest = yaml.safe_load((REPO / "samples" / "evalrun.yaml").read_text())
    manifest["metadata"].update(namespace="ns", uid="u", generation=1)
    spec = parse(manifest).spec
    result = {"ok": True, "scores": [{"dataset": "gsm8k", "metric": "accuracy", "value": value}]}
    d = batch.decide(
        obs(
            job=job(conds=[("Complete", "")]),
            pods=[pod(0, phase="Succeeded", code=0, message=json.dumps(result))],
            nodes=1,
        )
    )
    return finish(d.status, d.result, spec, "/mnt/output", NOW, 1, {})


def s(
    d: dict[str, Any] | None,
    pods: list[dict[str, Any]] | None = None,
    prev: Status | None = None,
    blocker: Blocker | None = None,
    desired: int = 2,
    noun: str = "server",
) -> Status:
    return serving.decide(
        ServingObservation(
            generation=1,
            status=prev or {},
            deployment=d,
            pods=pods or [],
            now=NOW,
            desired_replicas=desired,
            blocker=blocker,
            fields={"endpoint": "http://x:23333/v1"},
            noun=noun,
        )
    ).status


CRASHLOOP = {
    "metadata": {"name": "p1"},
    "status": {
        "phase": "Running",
        "containerStatuses": [
            {"name": "server", "state": {"waiting": {"reason": "CrashLoopBackOff"}}}
        ],
    },
}

# name, kind, state -> kstatus verdict, Argo CD health, a fragment of the Argo CD message
CASES: list[tuple[str, str, Callable[[], Status], str, str, str]] = [
    # -- batch ----------------------------------------------------------------------------------
    ("batch created", "TrainJob", lambda: b(), "InProgress", "Progressing", "Creating"),
    (
        "batch pods starting",
        "FineTune",
        lambda: b(job=job(), pods=[pod(0), pod(1, phase="Pending")]),
        "InProgress",
        "Progressing",
        "PodsStarting: 1/2",
    ),
    (
        "batch waiting for a dependency",
        "FineTune",
        lambda: batch.waiting({}, 1, NOW, "waiting for TrainJob a to succeed (phase Running)"),
        "InProgress",
        "Progressing",
        "WaitingForDependency: waiting for TrainJob a",
    ),
    (
        "batch queued by Kueue",
        "TrainJob",
        lambda: b(queued=True, job=job(suspend=True)),
        "InProgress",
        "Progressing",
        "Queued",
    ),
    (
        "batch running with progress",
        "TrainJob",
        lambda: b(job=job(), pods=running_pods(), progress={"step": 10, "totalSteps": 100}),
        "InProgress",
        "Progressing",
        "Running: 2/2 pod(s) running",
    ),
    (
        "batch restarting",
        "TrainJob",
        lambda: b(job=job(), pods=[pod(0, phase="Failed", code=137, reason="OOMKilled"), pod(1)]),
        "InProgress",
        "Progressing",
        "OOMKilled: restart 1/2",
    ),
    (
        "batch suspended",
        "FineTune",
        lambda: b(status={"phase": "Suspended"}, suspend=True, job=job(suspend=True)),
        "InProgress",
        "Suspended",
        "suspended by spec.suspend",
    ),
    ("batch succeeded", "TrainJob", succeeded, "Current", "Healthy", "the run completed"),
    (
        "batch failed (exit code)",
        "FineTune",
        lambda: b(
            job=job(),
            pods=[pod(0, phase="Failed", code=2, message='{"ok": false, "reason": "no data"}')],
        ),
        "Failed",
        "Degraded",
        "ExitCode",
    ),
    (
        "batch failed (ok=false)",
        "TrainJob",
        lambda: succeeded('{"ok": false, "reason": "loss diverged"}'),
        "Failed",
        "Degraded",
        "WorkloadFailed: loss diverged",
    ),
    (
        "batch backoff limit exceeded",
        "TrainJob",
        lambda: b(
            status={"restarts": 2}, job=job(attempt=2), pods=[pod(0, phase="Failed", code=137)]
        ),
        "Failed",
        "Degraded",
        "BackoffLimitExceeded",
    ),
    (
        "batch stalled (invalid spec)",
        "TrainJob",
        lambda: batch.stalled({}, 1, NOW, "InvalidSpec", "globalBatchSize 7 is not divisible"),
        "Failed",
        "Degraded",
        "InvalidSpec: globalBatchSize 7",
    ),
    (
        "batch stalled (upstream failed)",
        "EvalRun",
        lambda: batch.stalled(
            batch.waiting({}, 1, NOW, "waiting"),
            1,
            NOW,
            "UpstreamFailed",
            "FineTune ft failed: ExitCode",
            phase="Waiting",
        ),
        "Failed",
        "Degraded",
        "UpstreamFailed",
    ),
    (
        "evalrun running (Passed absent)",
        "EvalRun",
        lambda: b(job=job(), pods=[pod(0)], nodes=1),
        "InProgress",
        "Progressing",
        "Running",
    ),
    ("evalrun passed the gate", "EvalRun", lambda: evalrun(72.5), "Current", "Healthy", ""),
    (
        "evalrun failed the gate",
        "EvalRun",
        lambda: evalrun(41.0),
        "Failed",
        "Degraded",
        "ThresholdsNotMet: thresholds not met: gsm8k accuracy 41 < 60",
    ),
    # -- serving --------------------------------------------------------------------------------
    ("serving creating", "ModelServe", lambda: s(None), "InProgress", "Progressing", "Creating"),
    (
        "serving starting",
        "ModelServe",
        lambda: s(deploy(2, 0)),
        "InProgress",
        "Progressing",
        "ServersNotReady: 0/2",
    ),
    (
        "serving partly ready while starting",
        "ModelServe",
        lambda: s(deploy(2, 1)),
        "InProgress",
        "Progressing",
        "RollingOut",
    ),
    (
        "serving rolling out (old servers ready)",
        "ModelServe",
        lambda: s(deploy(2, 2, updated=1, replicas=3, gen=2), prev=READY_PREV),
        "InProgress",
        "Progressing",
        "RollingOut: 1/2 updated",
    ),
    (
        "serving ready",
        "ModelServe",
        lambda: s(deploy(2, 2)),
        "Current",
        "Healthy",
        "Serving: 2/2 server(s) ready",
    ),
    (
        "serving scaled to zero",
        "ModelServe",
        lambda: s(deploy(0, 0), desired=0),
        "Current",
        "Healthy",
        "ScaledToZero",
    ),
    (
        "serving degraded (crash loop)",
        "ModelServe",
        lambda: s(deploy(2, 1), pods=[CRASHLOOP], prev=READY_PREV),
        "InProgress",
        "Degraded",
        "CrashLoopBackOff",
    ),
    (
        "serving degraded (recent crash, all ready again)",
        "ModelServe",
        lambda: s(deploy(2, 2), pods=[failed_pod(5)], prev=READY_PREV),
        "Current",
        "Degraded",
        "ServerCrashed: pod p1 exited with code 1",
    ),
    (
        "serving rollout deadline exceeded",
        "ModelServe",
        lambda: s(deploy(1, 0, updated=1, replicas=1, deadline=True), desired=1),
        "Failed",
        "Degraded",
        "ProgressDeadlineExceeded",
    ),
    (
        "serving waiting for a dependency",
        "ModelServe",
        lambda: s(None, blocker=Blocker("dependency", "WaitingForDependency", "FineTune ft")),
        "InProgress",
        "Progressing",
        "WaitingForDependency: FineTune ft",
    ),
    (
        "serving waiting on the gate",
        "ModelServe",
        lambda: s(None, blocker=Blocker("gate", "WaitingForGate", "EvalRun e has not passed")),
        "InProgress",
        "Progressing",
        "WaitingForGate",
    ),
    (
        "serving the old model while the gate waits",
        "ModelServe",
        lambda: s(
            deploy(1, 1),
            prev=READY_PREV,
            blocker=Blocker("gate", "WaitingForGate", "EvalRun e has not passed"),
            desired=1,
        ),
        "InProgress",
        "Healthy",
        "EvalRun e has not passed",
    ),
    (
        "serving gate failed",
        "ModelServe",
        lambda: s(None, blocker=Blocker("upstream-failed", "GateFailed", "EvalRun e failed")),
        "Failed",
        "Degraded",
        "GateFailed: EvalRun e failed",
    ),
    (
        "serving stalled (invalid spec)",
        "Agent",
        lambda: s(None, blocker=Blocker("invalid", "InvalidSpec", "unknown tool foo")),
        "Failed",
        "Degraded",
        "InvalidSpec: unknown tool foo",
    ),
    (
        "agent ready",
        "Agent",
        lambda: s(deploy(1, 1), desired=1, noun="agent pod"),
        "Current",
        "Healthy",
        "1/1 agent pod(s) ready",
    ),
    (
        "agent LLM down",
        "Agent",
        lambda: s(
            deploy(1, 1),
            prev=READY_PREV,
            blocker=Blocker("llm", "ModelServeNotReady", "ModelServe chat is not Ready"),
            desired=1,
            noun="agent pod",
        ),
        "InProgress",
        "Degraded",
        "ModelServeNotReady: ModelServe chat is not Ready",
    ),
]


# -- why it is stuck (status.stuck), and suspension that is not failure -------------------------


def refused(message: str) -> dict[str, Any]:
    d = deploy(2, 0)
    d["status"]["conditions"].append(
        {"type": "ReplicaFailure", "status": "True", "reason": "FailedCreate", "message": message}
    )
    return d


def overdue() -> Status:
    slow = deploy(2, 0)
    slow["spec"]["template"] = {"spec": {"containers": [{"readinessProbe": {"periodSeconds": 1}}]}}
    p = pod(0)
    p["status"]["conditions"] = [{"type": "Ready", "status": "False"}]
    p["status"]["startTime"] = "2026-01-01T11:50:00Z"
    return s(slow, pods=[p])


def crash_looping() -> Status:
    last = {"exitCode": 1, "reason": "Error", "message": "ValueError: no weights"}
    return s(deploy(2, 1), pods=[waiting(0, "CrashLoopBackOff", "back-off", last)])


STUCK_CASES: list[tuple[str, str, Callable[[], Status], str, str, str]] = [
    (
        "batch missing PVC",
        "TrainJob",
        lambda: b(refs_found={("PersistentVolumeClaim", "pretrain-corpus"): False}),
        "Failed",
        "Degraded",
        'PVCNotFound: PersistentVolumeClaim "pretrain-corpus" not found',
    ),
    (
        "batch missing Secret",
        "FineTune",
        lambda: b(refs_found={("Secret", "hf-token"): False}),
        "Failed",
        "Degraded",
        'SecretNotFound: Secret "hf-token" not found',
    ),
    (
        "batch missing ConfigMap",
        "EvalRun",
        lambda: b(refs_found={("ConfigMap", "prompts"): False}),
        "Failed",
        "Degraded",
        'ConfigMapNotFound: ConfigMap "prompts" not found',
    ),
    (
        "batch quota refuses pods",
        "TrainJob",
        lambda: b(job=job(), pods=[], events=[event(QUOTA)]),
        "InProgress",
        "Progressing",
        "QuotaExceeded: 0/2 pod(s) running: Error creating",
    ),
    (
        "batch Pod Security refuses pods",
        "EvalRun",
        lambda: b(job=job(), pods=[], events=[event(PSA)], nodes=1),
        "Failed",
        "Degraded",
        'PodSecurityViolation: 0/1 pod(s) running: Error creating: pods "t-tj-0-x" is forbidden',
    ),
    (
        "batch unschedulable",
        "TrainJob",
        lambda: b(job=job(), pods=[pod(0), pending(1)]),
        "InProgress",
        "Progressing",
        "Unschedulable: 1/2 pod(s) running: pod p1: 0/4 nodes are available: 4 Insufficient",
    ),
    (
        "batch image pull failure",
        "FineTune",
        lambda: b(job=job(), pods=[waiting(0, "ImagePullBackOff", "Back-off pulling")], nodes=1),
        "Failed",
        "Degraded",
        "ImagePullBackOff: 0/1 pod(s) running: pod p0 container workload: Back-off pulling",
    ),
    (
        "batch suspended while queued (no Job)",
        "TrainJob",
        lambda: b(status={"phase": "Running"}, queued=True, suspend=True, job=None),
        "InProgress",
        "Suspended",
        "Kueue releases its quota",
    ),
    (
        "batch preempted by Kueue, waiting again",
        "TrainJob",
        lambda: b(
            status={"phase": "Running"},
            queued=True,
            backoff_limit=0,
            job=job(suspend=True),
            pods=[sigterm(0), sigterm(1)],
        ),
        "InProgress",
        "Progressing",
        "Queued: waiting for Kueue to admit the Job again",
    ),
    (
        "batch preempted by the scheduler, restart not counted",
        "TrainJob",
        lambda: b(
            status={"phase": "Running"},
            backoff_limit=0,
            job=job(),
            pods=[pod(0, phase="Failed", code=143, disruption="PreemptionByScheduler"), pod(1)],
        ),
        "InProgress",
        "Progressing",
        "Preempted: restart (not counted",
    ),
    (
        "batch waiting out its restart delay (NCCL error, exit 1)",
        "TrainJob",
        lambda: b(
            status=b(
                job=job(),
                pods=[pod(0, phase="Failed", code=1, message="ncclRemoteError: remote exited")],
            ),
            job=None,
        ),
        "InProgress",
        "Progressing",
        "RestartBackoff: restart backoff: the new gang starts in 10s",
    ),
    (
        "serving unschedulable",
        "ModelServe",
        lambda: s(deploy(2, 0), pods=[pending(0), pending(1)]),
        "InProgress",
        "Progressing",
        "Unschedulable: 0/2 server(s) ready: pod p0: 0/4 nodes are available: 4 Insufficient",
    ),
    (
        "serving quota refuses pods",
        "ModelServe",
        lambda: s(refused(QUOTA)),
        "InProgress",
        "Progressing",
        "QuotaExceeded: 0/2 server(s) ready: Error creating",
    ),
    (
        "serving Pod Security refuses pods",
        "Agent",
        lambda: s(refused(PSA), noun="agent pod"),
        "Failed",
        "Degraded",
        "PodSecurityViolation: Error creating",
    ),
    (
        "serving image pull failure",
        "ModelServe",
        lambda: s(deploy(2, 0), pods=[waiting(0, "ErrImagePull", "manifest unknown")]),
        "Failed",
        "Degraded",
        "ErrImagePull: pod p0 container workload: manifest unknown",
    ),
    (
        "serving crash loop with the last termination",
        "ModelServe",
        crash_looping,
        "InProgress",
        "Degraded",
        "last exit 1 (Error): ValueError: no weights",
    ),
    (
        "serving not ready within the startup budget",
        "ModelServe",
        overdue,
        "Failed",
        "Degraded",
        "StartupTimeout: pod p0 is running but not ready after 600s",
    ),
    (
        "serving missing Secret (before the Deployment)",
        "Agent",
        lambda: s(None, blocker=Blocker("missing", "SecretNotFound", 'Secret "key" not found')),
        "Failed",
        "Degraded",
        'SecretNotFound: Secret "key" not found',
    ),
    (
        "serving missing PVC (before the Deployment)",
        "ModelServe",
        lambda: s(
            None,
            blocker=Blocker(
                "missing", "PVCNotFound", 'PersistentVolumeClaim "model-store" not found'
            ),
        ),
        "Failed",
        "Degraded",
        'PVCNotFound: PersistentVolumeClaim "model-store" not found',
    ),
]
CASES.extend(STUCK_CASES)


def wrap(kind: str, status: Status | None, generation: int = 1, observed: int = 1) -> Status:
    """A full object, as the reconcilers write it (observedGeneration with the status)."""
    obj: Status = {
        "apiVersion": "internlm.io/v1alpha1",
        "kind": kind,
        "metadata": {"name": "x", "namespace": "ns", "uid": "u", "generation": generation},
    }
    if status is not None:
        obj["status"] = {**status, "observedGeneration": observed}
    return obj


def extra_objects() -> list[tuple[str, Status, str, str, str]]:
    """Cases that are not one status: the generation and a resource without status."""
    ready_batch = succeeded()
    ready_serving = s(deploy(2, 2))
    return [
        # The spec changed (generation 2) and the operator has not reconciled it yet.
        (
            "stale generation (batch)",
            wrap("TrainJob", ready_batch, generation=2, observed=1),
            "InProgress",
            "Progressing",
            "observe generation 2",
        ),
        (
            "stale generation (serving)",
            wrap("ModelServe", ready_serving, generation=2, observed=1),
            "InProgress",
            "Progressing",
            "observe generation 2",
        ),
        # Just created: no status at all. kstatus reads an object without conditions or
        # observedGeneration as Current (its documented fallback); Argo CD waits.
        (
            "no status yet (batch)",
            wrap("EvalRun", None),
            "Current",
            "Progressing",
            "report status",
        ),
        (
            "no status yet (serving)",
            wrap("Agent", None),
            "Current",
            "Progressing",
            "report status",
        ),
    ]


def all_cases() -> list[tuple[str, Status, str, str, str]]:
    out = [(n, wrap(k, f()), ks, argo, msg) for n, k, f, ks, argo, msg in CASES]
    return out + extra_objects()


IDS = [c[0] for c in CASES] + [c[0] for c in extra_objects()]


def test_table_covers_both_families_and_all_kinds() -> None:
    kinds = {c[1]["kind"] for c in all_cases()}
    assert kinds == set(BATCH_KINDS + SERVING_KINDS)


# -- kstatus ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def kstatus() -> Callable[[list[Status]], list[dict[str, str]]]:
    if shutil.which("go") is None:
        pytest.skip("Go is not installed: cannot build hack/kstatus")
    built = subprocess.run(
        ["bash", str(REPO / "e2e" / "cluster" / "build-binaries.sh"), "kstatus-path"],
        capture_output=True,
        text=True,
        timeout=540,
        check=False,
    )
    assert built.returncode == 0, built.stderr[-4000:]
    binary = built.stdout.strip().splitlines()[-1]

    def run(objs: list[Status]) -> list[dict[str, str]]:
        res = subprocess.run(
            [binary], input=json.dumps(objs), capture_output=True, text=True, timeout=60
        )
        assert res.returncode == 0, res.stderr
        out: list[dict[str, str]] = json.loads(res.stdout)
        return out

    return run


@pytest.fixture(scope="module")
def kstatus_verdicts(
    kstatus: Callable[[list[Status]], list[dict[str, str]]],
) -> dict[str, dict[str, str]]:
    cases = all_cases()
    return dict(zip([c[0] for c in cases], kstatus([c[1] for c in cases]), strict=True))


@pytest.mark.parametrize("case", all_cases(), ids=IDS)
def test_kstatus_verdict(
    case: tuple[str, Status, str, str, str], kstatus_verdicts: dict[str, dict[str, str]]
) -> None:
    name, _obj, want, _argo, _msg = case
    got = kstatus_verdicts[name]
    assert got["status"] == want, got


def test_kstatus_terminating(kstatus: Callable[[list[Status]], list[dict[str, str]]]) -> None:
    obj = wrap("ModelServe", s(deploy(2, 2)))
    obj["metadata"]["deletionTimestamp"] = "2026-01-01T12:00:00Z"
    assert kstatus([obj])[0]["status"] == "Terminating"


def test_kstatus_messages_carry_our_reasons(
    kstatus_verdicts: dict[str, dict[str, str]],
) -> None:
    """kstatus' InProgress/Failed messages are our Reconciling/Stalled messages."""
    assert "waiting for TrainJob a" in kstatus_verdicts["batch waiting for a dependency"]["message"]
    assert "globalBatchSize" in kstatus_verdicts["batch stalled (invalid spec)"]["message"]
    assert "gsm8k accuracy 41 < 60" in kstatus_verdicts["evalrun failed the gate"]["message"]
    assert "generation is 2" in kstatus_verdicts["stale generation (serving)"]["message"]


# -- Argo CD (Lua) ------------------------------------------------------------------------------


def lua_runtime() -> Any:
    try:
        from lupa import lua51

        return lua51.LuaRuntime(unpack_returned_tuples=True)
    except ImportError:  # a lupa build without the bundled Lua 5.1
        import lupa

        return lupa.LuaRuntime(unpack_returned_tuples=True)


def to_lua(lua: Any, value: Any) -> Any:
    """Python JSON -> Lua tables, recursively (arrays 1-based, as Argo CD converts objects)."""
    if isinstance(value, dict):
        t = lua.table()
        for k, v in value.items():
            t[k] = to_lua(lua, v)
        return t
    if isinstance(value, list):
        t = lua.table()
        for i, v in enumerate(value, 1):
            t[i] = to_lua(lua, v)
        return t
    return value


def argo_health(obj: Status) -> tuple[str, str]:
    family = "batch" if obj["kind"] in BATCH_KINDS else "serving"
    lua = lua_runtime()
    lua.globals().obj = to_lua(lua, obj)
    hs = lua.execute((LUA_DIR / f"{family}.lua").read_text())
    return hs["status"], hs["message"]


def test_lua_is_5_1() -> None:
    assert lua_runtime().eval("_VERSION") == "Lua 5.1"


@pytest.mark.parametrize("case", all_cases(), ids=IDS)
def test_argocd_health(case: tuple[str, Status, str, str, str]) -> None:
    _name, obj, _ks, want, fragment = case
    status, message = argo_health(obj)
    assert status == want, message
    assert fragment in message
    assert status in ("Healthy", "Progressing", "Degraded", "Suspended", "Missing")


# -- the argocd-cm block in the docs ------------------------------------------------------------


def test_argocd_cm_block_installs_the_chart_scripts_for_all_kinds() -> None:
    tool = REPO / "hack" / "argocd_health.py"
    printed = subprocess.run(
        [sys.executable, str(tool), "--print"], capture_output=True, text=True, check=True
    ).stdout
    cm = yaml.safe_load(printed)
    assert (cm["kind"], cm["metadata"]["name"]) == ("ConfigMap", "argocd-cm")
    values = yaml.safe_load(
        subprocess.run(
            [sys.executable, str(tool), "--print", "--helm-values"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    assert values["configs"]["cm"] == cm["data"]
    want = {
        f"resource.customizations.health.internlm.io_{k}": (LUA_DIR / f"{fam}.lua").read_text()
        for fam, kinds in (("batch", BATCH_KINDS), ("serving", SERVING_KINDS))
        for k in kinds
    }
    assert cm["data"] == want
    docs = (REPO / "docs" / "helm.md").read_text()
    assert printed in docs
    check = subprocess.run(
        [sys.executable, str(tool), "--check"], capture_output=True, text=True, check=False
    )
    assert check.returncode == 0, check.stderr


def test_docs_no_longer_claim_argocd_needs_no_lua() -> None:
    for path in [REPO / "README.md", *(REPO / "docs").glob("*.md")]:
        assert "without custom Lua" not in path.read_text(), path
