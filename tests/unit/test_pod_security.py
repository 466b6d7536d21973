"""Every pod the builders render passes the Pod Security Standard ``restricted`` (v1.latest),
checked field by field as the API server's PodSecurity admission checks it; and the Kueue
labels (``spec.scheduling.queueName``, ``kueue.x-k8s.io/priority-class``) reach the Job."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from internlm_operator.api.v1alpha1 import parse
from internlm_operator.builders import BatchInputs, Owner, build
from internlm_operator.builders import agent as ba
from internlm_operator.builders import modelserve as bm
from internlm_operator.builders.security import HOME_DIR, WORKLOAD_GID, WORKLOAD_UID
from pydantic import ValidationError

REPO = Path(__file__).resolve().parents[2]
QUEUE = "kueue.x-k8s.io/queue-name"
PRIORITY = "kueue.x-k8s.io/priority-class"

# --------------------------------------------------------------- the restricted profile

# https://kubernetes.io/docs/concepts/security/pod-security-standards/ (restricted, latest)
RESTRICTED_VOLUME_TYPES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
}
SAFE_SYSCTLS = {
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
}
SELINUX_TYPES = {
    None,
    "",
    "container_t",
    "container_init_t",
    "container_kvm_t",
    "container_engine_t",
}


def restricted_violations(pod: dict[str, Any]) -> list[str]:
    """What in ``pod`` (a pod spec) the restricted profile forbids; empty when it passes."""
    out: list[str] = []
    psc = pod.get("securityContext") or {}
    containers = [
        *(pod.get("initContainers") or []),
        *(pod.get("containers") or []),
        *(pod.get("ephemeralContainers") or []),
    ]
    # baseline
    for f in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(f):
            out.append(f"pod {f}")
    if (psc.get("windowsOptions") or {}).get("hostProcess"):
        out.append("pod hostProcess")
    for s in psc.get("sysctls") or []:
        if s.get("name") not in SAFE_SYSCTLS:
            out.append(f"pod sysctl {s.get('name')}")
    for v in pod.get("volumes") or []:
        types = set(v) - {"name"}
        if not types <= RESTRICTED_VOLUME_TYPES:
            out.append(f"volume {v['name']} type {sorted(types - RESTRICTED_VOLUME_TYPES)}")
    levels = [("pod", psc)]
    for c in containers:
        levels.append((f"container {c['name']}", c.get("securityContext") or {}))
        sc = c.get("securityContext") or {}
        who = f"container {c['name']}"
        if sc.get("privileged"):
            out.append(f"{who} privileged")
        if (sc.get("windowsOptions") or {}).get("hostProcess"):
            out.append(f"{who} hostProcess")
        if sc.get("procMount") not in (None, "Default"):
            out.append(f"{who} procMount")
        for p in c.get("ports") or []:
            if p.get("hostPort"):
                out.append(f"{who} hostPort {p['hostPort']}")
        # restricted
        if sc.get("allowPrivilegeEscalation") is not False:
            out.append(f"{who} allowPrivilegeEscalation != false")
        caps = sc.get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []):
            out.append(f"{who} capabilities.drop lacks ALL")
        extra = set(caps.get("add") or []) - {"NET_BIND_SERVICE"}
        if extra:
            out.append(f"{who} capabilities.add {sorted(extra)}")
        if sc.get("runAsNonRoot") is False or (
            psc.get("runAsNonRoot") is not True and sc.get("runAsNonRoot") is not True
        ):
            out.append(f"{who} runAsNonRoot != true")
        pod_seccomp = (psc.get("seccompProfile") or {}).get("type")
        seccomp = (sc.get("seccompProfile") or {}).get("type") or pod_seccomp
        if seccomp not in ("RuntimeDefault", "Localhost"):
            out.append(f"{who} seccompProfile {seccomp!r}")
    for who, sc in levels:
        if sc.get("runAsUser") == 0:
            out.append(f"{who} runAsUser 0")
        se = sc.get("seLinuxOptions") or {}
        if se.get("type") not in SELINUX_TYPES or se.get("user") or se.get("role"):
            out.append(f"{who} seLinuxOptions {se}")
        aa = (sc.get("appArmorProfile") or {}).get("type")
        if aa not in (None, "RuntimeDefault", "Localhost"):
            out.append(f"{who} appArmorProfile {aa}")
        if (sc.get("seccompProfile") or {}).get("type") == "Unconfined":
            out.append(f"{who} seccompProfile Unconfined")
    return out


# --------------------------------------------------------------- every rendered pod


def _owner(doc: dict[str, Any]) -> Owner:
    md = doc["metadata"]
    return Owner(
        "internlm.io/v1alpha1", doc["kind"], "ns", md["name"], "uid-1", 1, md.get("labels") or {}
    )


def workloads(doc: dict[str, Any]) -> dict[str, Any]:
    """The Job or Deployment the builders render for ``doc`` (upstreams resolved to PVCs)."""
    m = parse(doc)
    o = _owner(doc)
    kind = doc["kind"]
    upstream = "pvc://model-store/upstream"
    if kind in ("TrainJob", "FineTune", "EvalRun"):
        inp = BatchInputs(
            o, m.spec, image="img:1", upstream={"model": upstream, "tokenizer": upstream}
        )
        return build(inp).job
    if kind == "ModelServe":
        return bm.build(
            bm.ServeInputs(owner=o, spec=m.spec, image="serve:1", model_location=upstream)
        ).deployment
    llm = ba.ResolvedLLM("http://chat-ms.ns.svc.cluster.local:23333/v1", "chat")
    return ba.build(ba.AgentInputs(owner=o, spec=m.spec, image="agent:1", llm=llm)).deployment


def sample_docs() -> list[tuple[str, dict[str, Any]]]:
    out = []
    for f in sorted((REPO / "samples").glob("*.yaml")):
        for d in yaml.safe_load_all(f.read_text()):
            if d:
                out.append((f"{f.stem}/{d['kind']}/{d['metadata']['name']}", d))
    return out


SAMPLES = sample_docs()


def test_every_kind_and_an_init_container_are_covered() -> None:
    kinds = {d["kind"] for _, d in SAMPLES}
    assert kinds == {"TrainJob", "FineTune", "EvalRun", "ModelServe", "Agent"}
    inits = [
        c
        for _, d in SAMPLES
        for c in workloads(d)["spec"]["template"]["spec"].get("initContainers") or []
    ]
    assert inits, "a sample with a hub source renders a fetch init container"


@pytest.mark.parametrize("doc", [d for _, d in SAMPLES], ids=[i for i, _ in SAMPLES])
def test_rendered_pod_is_restricted(doc: dict[str, Any]) -> None:
    pod = workloads(doc)["spec"]["template"]["spec"]
    assert restricted_violations(pod) == []
    assert pod["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": WORKLOAD_UID,
        "runAsGroup": WORKLOAD_GID,
        "fsGroup": WORKLOAD_GID,
        "fsGroupChangePolicy": "OnRootMismatch",
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert {"name": "home", "emptyDir": {}} in pod["volumes"]
    for c in [*(pod.get("initContainers") or []), *pod["containers"]]:
        assert c["securityContext"] == {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
        }, c["name"]
        # a HOME the pod's user can write, whatever user the image was built with
        assert {"name": "home", "mountPath": HOME_DIR} in c["volumeMounts"], c["name"]
        assert {"name": "HOME", "value": HOME_DIR} in c["env"], c["name"]


def _first_container(pod: dict[str, Any]) -> dict[str, Any]:
    c: dict[str, Any] = pod["containers"][0]
    return c


MUTATIONS: dict[str, Any] = {
    "pod runs as root": lambda p: p["securityContext"].update(runAsUser=0),
    "no runAsNonRoot": lambda p: p["securityContext"].pop("runAsNonRoot"),
    "container opts out of non-root": lambda p: _first_container(p)["securityContext"].update(
        runAsNonRoot=False
    ),
    "privilege escalation": lambda p: _first_container(p)["securityContext"].pop(
        "allowPrivilegeEscalation"
    ),
    "capabilities kept": lambda p: _first_container(p)["securityContext"].pop("capabilities"),
    "capability added": lambda p: _first_container(p)["securityContext"]["capabilities"].update(
        add=["SYS_ADMIN"]
    ),
    "no seccomp": lambda p: p["securityContext"].pop("seccompProfile"),
    "unconfined container": lambda p: _first_container(p)["securityContext"].update(
        seccompProfile={"type": "Unconfined"}
    ),
    "privileged": lambda p: _first_container(p)["securityContext"].update(privileged=True),
    "host network": lambda p: p.update(hostNetwork=True),
    "host path": lambda p: p["volumes"].append({"name": "h", "hostPath": {"path": "/"}}),
    "host port": lambda p: _first_container(p)["ports"].append({"containerPort": 1, "hostPort": 1}),
    "init container escalates": lambda p: p["initContainers"][0]["securityContext"].clear(),
}


@pytest.mark.parametrize("what", list(MUTATIONS))
def test_the_check_catches_each_violation(what: str) -> None:
    """The check itself can fail: each rule, broken once in a rendered pod, is reported."""
    doc = next(d for i, d in SAMPLES if i.startswith("finetune/"))
    pod = copy.deepcopy(workloads(doc)["spec"]["template"]["spec"])
    assert pod.get("initContainers"), "the finetune sample downloads from the hub"
    MUTATIONS[what](pod)
    assert restricted_violations(pod) != []


def _finetune(**spec: Any) -> dict[str, Any]:
    doc = copy.deepcopy(next(d for i, d in SAMPLES if i.startswith("finetune/")))
    doc["spec"].update(spec)
    return doc


def test_users_ids_win_and_the_rest_stays_restricted() -> None:
    override = {
        "runAsUser": 1000700000,
        "runAsGroup": 0,
        "fsGroup": 1000700000,
        "supplementalGroups": [5000],
        "fsGroupChangePolicy": "Always",
    }
    for doc in (_finetune(podSecurityContext=override), _serve(podSecurityContext=override)):
        pod = workloads(doc)["spec"]["template"]["spec"]
        assert pod["securityContext"] == {
            "runAsNonRoot": True,
            "seccompProfile": {"type": "RuntimeDefault"},
            **override,
        }
        assert restricted_violations(pod) == []


def test_a_partial_override_keeps_the_other_defaults() -> None:
    pod = workloads(_finetune(podSecurityContext={"runAsUser": 1001}))["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsUser"] == 1001
    assert pod["securityContext"]["runAsGroup"] == pod["securityContext"]["fsGroup"] == WORKLOAD_GID


@pytest.mark.parametrize(
    "bad",
    [
        {"runAsUser": 0},
        {"runAsUser": -1},
        {"fsGroup": -5},
        {"runAsNonRoot": False},
        {"privileged": True},
    ],
)
def test_root_or_privileges_are_refused_by_the_api(bad: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        parse(_finetune(podSecurityContext=bad))


def test_a_users_home_env_wins() -> None:
    doc = _finetune(env=[{"name": "HOME", "value": "/scratch"}])
    c = workloads(doc)["spec"]["template"]["spec"]["containers"][0]
    assert [e["value"] for e in c["env"] if e["name"] == "HOME"] == ["/scratch"]


# --------------------------------------------------------------- Kueue labels


def _serve(**spec: Any) -> dict[str, Any]:
    doc = copy.deepcopy(next(d for i, d in SAMPLES if i.startswith("modelserve/")))
    doc["spec"].update(spec)
    return doc


def _with(doc: dict[str, Any], labels: dict[str, str], queue: str | None) -> dict[str, Any]:
    doc = copy.deepcopy(doc)
    doc["metadata"].setdefault("labels", {}).update(labels)
    if queue is not None:
        doc["spec"].setdefault("scheduling", {})["queueName"] = queue
    return doc


@pytest.mark.parametrize("sample", ["trainjob/", "finetune/", "evalrun/"])
@pytest.mark.parametrize(
    "labels,queue,expected",
    [
        ({}, "team-a", "team-a"),
        ({QUEUE: "team-b"}, None, "team-b"),
        ({QUEUE: "team-b"}, "team-a", "team-a"),  # the spec field wins over the label
    ],
)
def test_queue_name_becomes_the_jobs_kueue_label(
    sample: str, labels: dict[str, str], queue: str | None, expected: str
) -> None:
    base = next(d for i, d in SAMPLES if i.startswith(sample))
    job = workloads(_with(base, labels, queue))
    assert job["metadata"]["labels"][QUEUE] == expected
    assert job["spec"]["template"]["metadata"]["labels"][QUEUE] == expected


def test_no_queue_no_kueue_label() -> None:
    job = workloads(next(d for i, d in SAMPLES if i.startswith("finetune/")))
    assert QUEUE not in job["metadata"]["labels"]
    assert QUEUE not in job["spec"]["template"]["metadata"]["labels"]


def test_priority_class_label_is_passed_on_to_the_job() -> None:
    base = next(d for i, d in SAMPLES if i.startswith("trainjob/"))
    doc = _with(base, {PRIORITY: "research-high"}, "team-a")
    job = workloads(doc)
    assert job["metadata"]["labels"][PRIORITY] == "research-high"
    assert job["spec"]["template"]["metadata"]["labels"][PRIORITY] == "research-high"
    assert job["metadata"]["labels"][QUEUE] == "team-a"


def test_hub_cache_pvc_carries_no_kueue_label() -> None:
    base = next(d for i, d in SAMPLES if i.startswith("finetune/"))
    doc = _with(base, {PRIORITY: "high"}, "team-a")
    m = parse(doc)
    job = build(BatchInputs(_owner(doc), m.spec, image="img:1", storage_class="fast")).job
    (vol,) = [v for v in job["spec"]["template"]["spec"]["volumes"] if "ephemeral" in v]
    labels = vol["ephemeral"]["volumeClaimTemplate"]["metadata"]["labels"]
    assert QUEUE not in labels and PRIORITY not in labels


def test_serving_queue_name_reaches_the_deployment_but_not_its_selector() -> None:
    d = workloads(_with(_serve(), {}, "serving"))
    assert d["metadata"]["labels"][QUEUE] == "serving"
    assert d["spec"]["template"]["metadata"]["labels"][QUEUE] == "serving"
    assert QUEUE not in d["spec"]["selector"]["matchLabels"]
