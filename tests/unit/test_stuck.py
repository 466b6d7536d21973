"""Why a resource's pods do not run (status.stuck), and what the batch and serving status
layers make of it; suspension and preemption that must not count as failures."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from internlm_operator.status import stuck
from internlm_operator.status.batch import decide
from internlm_operator.status.serving import Blocker, ServingObservation
from internlm_operator.status.serving import decide as serving_decide

from tests.unit.test_batch_status import NOW, job, obs, pod
from tests.unit.test_serving_status import deploy

# Real messages, as the API server, the scheduler and the kubelet write them.
QUOTA = (
    'Error creating: pods "t-tj-0-abcde" is forbidden: exceeded quota: gpu-quota, '
    "requested: requests.nvidia.com/gpu=8, used: requests.nvidia.com/gpu=0, "
    "limited: requests.nvidia.com/gpu=4"
)
PSA = (
    'Error creating: pods "t-tj-0-x" is forbidden: violates PodSecurity "restricted:latest": '
    'allowPrivilegeEscalation != false (container "workload" must set '
    "securityContext.allowPrivilegeEscalation=false)"
)
WEBHOOK = (
    'Error creating: Internal error occurred: failed calling webhook "x.example.com": '
    "context deadline exceeded"
)
DENIED = 'Error creating: admission webhook "policy.example.com" denied the request: no GPUs'
NO_GPU = (
    "0/4 nodes are available: 4 Insufficient nvidia.com/gpu. preemption: 0/4 nodes are available"
)
NO_PVC = '0/4 nodes are available: persistentvolumeclaim "pretrain-corpus" not found.'


def conds(st: dict[str, Any]) -> dict[str, tuple[str, str, str]]:
    return {c["type"]: (c["status"], c["reason"], c.get("message", "")) for c in st["conditions"]}


def pending(idx: int, message: str = NO_GPU) -> dict[str, Any]:
    p = pod(idx, phase="Pending")
    p["status"]["conditions"] = [
        {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message}
    ]
    return p


def waiting(idx: int, reason: str, message: str = "", last: dict[str, Any] | None = None) -> dict:
    p = pod(idx, phase="Pending" if reason != "CrashLoopBackOff" else "Running")
    cs: dict[str, Any] = {
        "name": "workload",
        "image": "registry.local/x:1",
        "restartCount": 4,
        "state": {"waiting": {"reason": reason, "message": message}},
    }
    if last:
        cs["lastState"] = {"terminated": last}
    p["status"]["containerStatuses"] = [cs]
    return p


def event(message: str, when: str = "2026-01-01T11:59:00Z") -> dict[str, Any]:
    return {"reason": "FailedCreate", "type": "Warning", "message": message, "lastTimestamp": when}


# -- the pure classification --------------------------------------------------------------------


def test_refs_of_walks_volumes_env_and_env_from() -> None:
    spec = {
        "volumes": [
            {"name": "a", "persistentVolumeClaim": {"claimName": "data"}},
            {"name": "b", "secret": {"secretName": "tls"}},
            {"name": "c", "secret": {"secretName": "maybe", "optional": True}},
            {"name": "d", "configMap": {"name": "own-config"}},
            {"name": "e", "configMap": {"name": "user-cm"}},
            {"name": "f", "projected": {"sources": [{"secret": {"name": "proj"}}]}},
            {"name": "g", "emptyDir": {}},
        ],
        "initContainers": [
            {"env": [{"name": "T", "valueFrom": {"secretKeyRef": {"name": "hf", "key": "t"}}}]}
        ],
        "containers": [
            {
                "env": [
                    {"name": "X", "value": "1"},
                    {"name": "T", "valueFrom": {"secretKeyRef": {"name": "hf", "key": "t"}}},
                    {"name": "C", "valueFrom": {"configMapKeyRef": {"name": "cm2", "key": "k"}}},
                ],
                "envFrom": [{"secretRef": {"name": "bulk"}}, {"configMapRef": {"name": "cm3"}}],
            }
        ],
    }
    assert stuck.refs_of(spec, ["own-config"]) == [
        ("PersistentVolumeClaim", "data"),
        ("Secret", "tls"),
        ("ConfigMap", "user-cm"),
        ("Secret", "proj"),
        ("Secret", "hf"),
        ("ConfigMap", "cm2"),
        ("Secret", "bulk"),
        ("ConfigMap", "cm3"),
    ]


def test_missing_names_every_absent_reference_and_ignores_unknown() -> None:
    assert stuck.missing({("Secret", "s"): True, ("Secret", "x"): None}) is None
    m = stuck.missing(
        {
            ("PersistentVolumeClaim", "data"): False,
            ("Secret", "hf"): False,
            ("ConfigMap", "c"): True,
        }
    )
    assert m is not None and m.reason == "PVCNotFound" and m.stalled
    assert 'PersistentVolumeClaim "data" not found' in m.message
    assert 'Secret "hf" not found' in m.message and '"c"' not in m.message
    only_secret = stuck.missing({("Secret", "hf"): False})
    assert only_secret is not None and only_secret.reason == "SecretNotFound"


@pytest.mark.parametrize(
    "message, reason, stalled",
    [
        (QUOTA, "QuotaExceeded", False),
        (PSA, "PodSecurityViolation", True),
        (WEBHOOK, "FailedCreate", False),
        (DENIED, "FailedCreate", True),
    ],
)
def test_refusal_table(message: str, reason: str, stalled: bool) -> None:
    r = stuck.refusal(message)
    assert (r.reason, r.stalled) == (reason, stalled)
    assert r.message == message  # the upstream message, whole


def test_failed_create_takes_the_newest_event() -> None:
    assert stuck.failed_create([]) is None
    assert stuck.failed_create([{"reason": "SuccessfulCreate", "message": "ok"}]) is None
    got = stuck.failed_create(
        [event(PSA, "2026-01-01T11:00:00Z"), event(QUOTA, "2026-01-01T11:59:00Z")]
    )
    assert got is not None and got.reason == "QuotaExceeded"
    # events.k8s.io/v1 shape (note, series)
    new_api = {"reason": "FailedCreate", "note": PSA, "series": {"lastObservedTime": "z"}}
    got = stuck.failed_create([event(QUOTA), new_api])
    assert got is not None and got.reason == "PodSecurityViolation"


def test_replica_failure_of_a_deployment() -> None:
    d = deploy(2, 0)
    assert stuck.replica_failure(d) is None
    d["status"]["conditions"].append(
        {"type": "ReplicaFailure", "status": "True", "reason": "FailedCreate", "message": QUOTA}
    )
    got = stuck.replica_failure(d)
    assert got is not None and got.reason == "QuotaExceeded" and QUOTA in got.message


def test_pods_table() -> None:
    assert stuck.of_pods([pod(0), pod(1)]) is None
    u = stuck.of_pods([pod(0), pending(1)])
    assert u is not None and u.reason == "Unschedulable" and not u.stalled
    assert "Insufficient nvidia.com/gpu" in u.message and "pod p1" in u.message
    v = stuck.of_pods([pending(0, NO_PVC)])
    assert v is not None and v.reason == "PVCNotFound" and v.stalled
    img = stuck.of_pods([waiting(0, "ImagePullBackOff", 'Back-off pulling image "x:1"')])
    assert img is not None and img.reason == "ImagePullBackOff" and img.stalled
    assert 'Back-off pulling image "x:1"' in img.message
    cfg = stuck.of_pods([waiting(0, "CreateContainerConfigError", 'secret "hf" not found')])
    assert cfg is not None and cfg.reason == "CreateContainerConfigError"
    assert 'secret "hf" not found' in cfg.message
    crash = stuck.of_pods(
        [
            waiting(
                0,
                "CrashLoopBackOff",
                "back-off 40s restarting failed container",
                {"exitCode": 1, "reason": "Error", "message": "Traceback\nValueError: bad model"},
            )
        ]
    )
    assert crash is not None and crash.reason == "CrashLoopBackOff" and not crash.stalled
    assert "last exit 1 (Error): ValueError: bad model" in crash.message
    assert "restarted 4 times" in crash.message
    # A pod being deleted says nothing about the new ones.
    gone = pending(0)
    gone["metadata"]["deletionTimestamp"] = "2026-01-01T11:00:00Z"
    assert stuck.of_pods([gone]) is None


def test_startup_budget_and_readiness_overdue() -> None:
    spec = {
        "containers": [
            {
                "startupProbe": {"periodSeconds": 10, "failureThreshold": 6},
                "readinessProbe": {"periodSeconds": 5, "failureThreshold": 2},
            }
        ]
    }
    assert stuck.startup_budget(spec) == 70
    assert stuck.startup_budget({"containers": [{}]}) == stuck.DEFAULT_STARTUP_SECONDS
    p = pod(0)
    p["status"]["conditions"] = [{"type": "Ready", "status": "False"}]
    p["status"]["startTime"] = "2026-01-01T11:58:00Z"  # 120 s before NOW
    assert stuck.of_pods([p], NOW, 300) is None
    late = stuck.of_pods([p], NOW, 70)
    assert late is not None and late.reason == "StartupTimeout" and late.stalled
    assert "not ready after 120s (startup budget 70s)" in late.message
    p["status"]["conditions"] = [{"type": "Ready", "status": "True"}]
    assert stuck.of_pods([p], NOW, 70) is None


def test_every_reason_is_listed() -> None:
    assert {"PVCNotFound", "SecretNotFound", "ConfigMapNotFound", "Unschedulable"} <= stuck.REASONS
    assert {"QuotaExceeded", "PodSecurityViolation", "FailedCreate", "StartupTimeout"} <= (
        stuck.REASONS
    )


# -- batch kinds ----------------------------------------------------------------------------------


def test_batch_missing_reference_creates_nothing() -> None:
    d = decide(obs(refs_found={("PersistentVolumeClaim", "corpus"): False}))
    assert d.action == "none" and d.status["phase"] == "Pending"
    c = conds(d.status)
    assert c["Stalled"][:2] == ("True", "PVCNotFound")
    assert c["Ready"][:2] == ("False", "PVCNotFound") and c["Reconciling"][0] == "False"
    assert 'PersistentVolumeClaim "corpus" not found' in c["Ready"][2]
    # Created once it exists, and the stall clears.
    d2 = decide(obs(d.status, refs_found={("PersistentVolumeClaim", "corpus"): True}))
    assert d2.action == "create" and conds(d2.status)["Stalled"][0] == "False"
    # Unknown (no permission to look): created, the pods will tell.
    assert decide(obs(refs_found={("Secret", "hf"): None})).action == "create"


def test_batch_failed_create_and_unschedulable() -> None:
    d = decide(obs(job=job(), pods=[], events=[event(QUOTA)]))
    c = conds(d.status)
    assert d.action == "none" and d.status["phase"] == "Pending"
    assert c["Ready"][:2] == ("False", "QuotaExceeded") and QUOTA in c["Ready"][2]
    assert c["Reconciling"][:2] == ("True", "QuotaExceeded") and c["Stalled"][0] == "False"
    d = decide(obs(job=job(), pods=[pod(0)], events=[event(PSA)]))
    c = conds(d.status)
    assert c["Stalled"][:2] == ("True", "PodSecurityViolation")
    assert c["Reconciling"][0] == "False" and "violates PodSecurity" in c["Stalled"][2]
    # All pods exist: an old FailedCreate says nothing any more.
    d = decide(obs(job=job(), pods=[pod(0), pending(1)], events=[event(PSA)]))
    c = conds(d.status)
    assert c["Ready"][:2] == ("False", "Unschedulable") and "1/2 pod(s) running" in c["Ready"][2]
    assert "Insufficient nvidia.com/gpu" in c["Ready"][2] and c["Stalled"][0] == "False"
    d = decide(obs(job=job(), pods=[pod(0), waiting(1, "ErrImagePull", "not found")]))
    assert conds(d.status)["Stalled"][:2] == ("True", "ErrImagePull")
    # Then they run: the reason goes away.
    d2 = decide(obs(d.status, job=job(), pods=[pod(0), pod(1)]))
    c = conds(d2.status)
    assert d2.status["phase"] == "Running" and c["Stalled"][0] == "False"


# -- suspension is not failure ------------------------------------------------------------------


def sigterm(idx: int, deleted: bool = True) -> dict[str, Any]:
    """A pod a real kubelet ended on SIGTERM after the Job controller deleted it."""
    p = pod(idx, phase="Failed", code=143, message='{"ok": false, "reason": "stopped"}')
    if deleted:
        p["metadata"]["deletionTimestamp"] = "2026-01-01T11:59:00Z"
    return p


def test_pods_stopped_by_suspension_never_count() -> None:
    running = {"phase": "Running", "restarts": 0}
    # spec.suspend took effect: the pods exit 143 while the Job is suspended.
    d = decide(
        obs(running, suspend=True, backoff_limit=0, job=job(suspend=True), pods=[sigterm(0)])
    )
    assert d.action == "none" and d.status["phase"] == "Suspended" and not d.counted
    # Resumed while the old pods still terminate: not a failure either.
    d = decide(
        obs({"phase": "Suspended"}, backoff_limit=0, job=job(suspend=True), pods=[sigterm(0)])
    )
    assert d.action == "unsuspend"
    d = decide(obs({"phase": "Pending"}, backoff_limit=0, job=job(), pods=[sigterm(0), pod(1)]))
    assert d.status["phase"] == "Pending" and d.action == "none"
    assert not d.status.get("restarts")
    # The same exit without a deletion is the workload's own: counted as before.
    d = decide(obs(running, backoff_limit=2, job=job(), pods=[sigterm(0, deleted=False)]))
    assert d.action == "restart" and d.counted


def test_preemption_and_eviction_restart_without_counting() -> None:
    for reason in ("PreemptionByScheduler", "EvictionByEvictionAPI", "TerminationByKubelet"):
        d = decide(
            obs(
                {"phase": "Running", "restarts": 0},
                backoff_limit=0,
                job=job(),
                pods=[pod(0, phase="Failed", code=143, disruption=reason), pod(1)],
            )
        )
        assert d.action == "restart" and not d.counted, reason
        assert not d.status.get("restarts") and d.status["phase"] == "Running"
    # A lost node still counts (runPolicy.backoffLimit bounds it).
    d = decide(
        obs(
            {"phase": "Running"},
            backoff_limit=2,
            job=job(),
            pods=[pod(0, phase="Failed", disruption="DeletionByTaintManager"), pod(1)],
        )
    )
    assert d.action == "restart" and d.counted and d.status["restarts"] == 1


def test_queued_job_suspend_is_left_to_kueue() -> None:
    # spec.suspend on an admitted, queued resource: the Job is deleted, never patched.
    d = decide(
        obs({"phase": "Running"}, queued=True, suspend=True, job=job(), pods=[pod(0), pod(1)])
    )
    assert d.action == "delete" and d.status["phase"] == "Suspended" and not d.counted
    d = decide(obs(d.status, queued=True, suspend=True, job=job(deleting=True)))
    assert d.action == "none" and d.status["phase"] == "Suspended"
    d = decide(obs(d.status, queued=True, suspend=True))
    assert d.action == "none" and d.status["phase"] == "Suspended"  # no Job while suspended
    d = decide(obs(d.status, queued=True))
    assert d.action == "create"
    # Kueue preempted or evicted it (suspended the Job): wait, whatever the pods did.
    d = decide(
        obs(
            {"phase": "Running"},
            queued=True,
            backoff_limit=0,
            job=job(suspend=True),
            pods=[sigterm(0), sigterm(1)],
        )
    )
    assert d.action == "none" and d.status["phase"] == "Pending" and not d.counted
    assert "again" in conds(d.status)["Ready"][2]
    # Not queued, but suspended by someone else (manageJobsWithoutQueueName): never unsuspended.
    d = decide(obs({"phase": "Pending"}, job=job(suspend=True)))
    assert d.action == "none" and conds(d.status)["Ready"][1] == "Queued"


# -- serving kinds --------------------------------------------------------------------------------


def serve(d: dict[str, Any] | None, pods: list[dict[str, Any]], **kw: Any) -> dict[str, Any]:
    o = ServingObservation(
        generation=1, status={}, deployment=d, pods=pods, now=NOW, desired_replicas=2, **kw
    )
    return serving_decide(o).status


def test_serving_reasons() -> None:
    st = serve(deploy(2, 0), [pending(0), pending(1)])
    c = conds(st)
    assert c["Ready"][:2] == ("False", "Unschedulable") and "Insufficient" in c["Ready"][2]
    assert c["Reconciling"][:2] == ("True", "Unschedulable") and c["Stalled"][0] == "False"
    assert c["Degraded"][0] == "False"

    d = deploy(2, 0)
    d["status"]["conditions"].append(
        {"type": "ReplicaFailure", "status": "True", "reason": "FailedCreate", "message": PSA}
    )
    c = conds(serve(d, []))
    assert c["Stalled"][:2] == ("True", "PodSecurityViolation") and c["Reconciling"][0] == "False"
    assert c["Degraded"][:2] == ("True", "PodSecurityViolation")

    c = conds(serve(deploy(2, 0), [waiting(0, "ImagePullBackOff", "Back-off pulling image")]))
    assert c["Stalled"][:2] == ("True", "ImagePullBackOff")

    slow = deploy(2, 0)
    slow["spec"]["template"] = {"spec": {"containers": [{"readinessProbe": {"periodSeconds": 1}}]}}
    p = pod(0)
    p["status"]["conditions"] = [{"type": "Ready", "status": "False"}]
    p["status"]["startTime"] = (NOW - dt.timedelta(seconds=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
    c = conds(serve(slow, [p]))
    assert c["Stalled"][:2] == ("True", "StartupTimeout")

    st = serve(None, [], blocker=Blocker("missing", "SecretNotFound", 'Secret "k" not found'))
    c = conds(st)
    assert st["phase"] == "Pending" and c["Stalled"][:2] == ("True", "SecretNotFound")


def test_serving_one_event_per_cause() -> None:
    d = deploy(2, 0)
    o = ServingObservation(
        generation=1,
        status={},
        deployment=d,
        pods=[waiting(0, "ImagePullBackOff", "Back-off")],
        now=NOW,
        desired_replicas=2,
    )
    events = serving_decide(o).events
    reasons = [e[1] for e in events]
    assert reasons.count("ImagePullBackOff") == 1
    assert ("Warning", "ImagePullBackOff") in [(e[0], e[1]) for e in events]
