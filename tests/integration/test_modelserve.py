"""ModelServe against the local cluster with the operator in-process: the sample becomes Ready
with the children and lmdeploy arguments its spec implies; ``kubectl scale`` works; a spec change
rolls out without the ready count dropping; a crashed server shows Degraded then recovers; a
gated ModelServe waits for its EvalRun."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest

from tests.conftest import Cluster, wait_until
from tests.integration.conftest import OperatorHandle, make_pvcs, sample

pytestmark = pytest.mark.cluster


class Serve:
    """One ModelServe (or Agent) and its Deployment in one namespace."""

    def __init__(self, cluster: Cluster, ns: str, name: str, kind: str = "ModelServe") -> None:
        self.cluster, self.ns, self.name, self.kind = cluster, ns, name, kind
        self.child = f"{name}-{'ms' if kind == 'ModelServe' else 'ag'}"

    def get(self) -> dict[str, Any]:
        return self.cluster.get(self.kind.lower(), self.name, "-n", self.ns)

    def status(self) -> dict[str, Any]:
        return self.get().get("status") or {}

    def cond(self, type_: str, st: dict[str, Any] | None = None) -> tuple[str, str] | None:
        for c in (st if st is not None else self.status()).get("conditions") or []:
            if c["type"] == type_:
                return c["status"], c["reason"]
        return None

    def wait(self, what: str, pred: Any, timeout: float = 60) -> dict[str, Any]:
        return wait_until(
            f"{self.kind} {self.name}: {what}",
            lambda: (s := self.status()) and pred(s) and s,
            timeout=timeout,
        )

    def wait_ready(self, timeout: float = 60) -> dict[str, Any]:
        gen = self.get()["metadata"]["generation"]
        return self.wait(
            "phase Ready",
            lambda s: s.get("phase") == "Ready" and s.get("observedGeneration") == gen,
            timeout,
        )

    def child_obj(self, kind: str, name: str | None = None) -> dict[str, Any] | None:
        res = self.cluster.kubectl(
            "get", kind, name or self.child, "-n", self.ns, "-o", "json", check=False
        )
        return json.loads(res.stdout) if res.returncode == 0 else None

    def deployment(self) -> dict[str, Any]:
        d = self.child_obj("deployment")
        assert d is not None
        return d

    def pods(self) -> list[dict[str, Any]]:
        items = self.cluster.get(
            "pods", "-n", self.ns, "-l", f"app.kubernetes.io/instance={self.name}"
        )["items"]
        return [
            p
            for p in items
            if not p["metadata"].get("deletionTimestamp")
            and p["status"].get("phase") in ("Pending", "Running")
        ]


def secret(cluster: Cluster, ns: str, name: str, key: str, value: str = "sk-test") -> None:
    cluster.kubectl("create", "secret", "generic", name, "-n", ns, f"--from-literal={key}={value}")


def config_of(s: Serve) -> dict[str, Any]:
    cm = s.child_obj("configmap", f"{s.child}-config")
    assert cm is not None
    doc: dict[str, Any] = json.loads(cm["data"]["config.json"])
    return doc


def flag(args: list[str], name: str) -> str | None:
    return args[args.index(name) + 1] if name in args else None


def test_sample_ready_scale_rollout_crash(
    cluster: Cluster, namespace: str, operator: OperatorHandle
) -> None:
    doc = sample("modelserve")
    name = doc["metadata"]["name"]
    secret(cluster, namespace, "lmdeploy-api-key", "api-key")
    cluster.apply(doc, namespace=namespace)
    ms = Serve(cluster, namespace, name)

    st = ms.wait_ready(timeout=90)
    uid = ms.get()["metadata"]["uid"]
    assert st["endpoint"] == f"http://{name}-ms.{namespace}.svc.cluster.local:23333/v1"
    assert st["servedModelName"] == "internlm2_5-7b-chat"
    assert st["modelSource"] == "hf://internlm/internlm2_5-7b-chat"
    assert st["replicas"] == st["readyReplicas"] == 2
    assert st["selector"] == (
        f"app.kubernetes.io/component=server,app.kubernetes.io/instance={name},"
        "app.kubernetes.io/name=modelserve"
    )
    assert ms.cond("Ready", st) == ("True", "Serving")
    assert ms.cond("Degraded", st) == ("False", "AsExpected")
    assert ms.cond("Stalled", st)[0] == "False"  # type: ignore[index]
    assert ms.cond("Reconciling", st)[0] == "False"  # type: ignore[index]

    # children: owned, labelled, with the arguments the spec implies
    d = ms.deployment()
    for obj in (
        d,
        ms.child_obj("service"),
        ms.child_obj("hpa"),
        ms.child_obj("pdb"),
        ms.child_obj("configmap", f"{ms.child}-config"),
    ):
        assert obj is not None
        ref = obj["metadata"]["ownerReferences"][0]
        assert ref["uid"] == uid and ref["controller"] is True
        assert obj["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "internlm-operator"
    assert d["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}
    pod = d["spec"]["template"]["spec"]
    c = pod["containers"][0]
    assert c["resources"]["limits"]["nvidia.com/gpu"] == "2"
    env = {e["name"]: e for e in c["env"]}
    assert env["LMDEPLOY_API_KEYS"]["valueFrom"]["secretKeyRef"]["name"] == "lmdeploy-api-key"
    assert any(v.get("emptyDir", {}).get("medium") == "Memory" for v in pod["volumes"])
    init = pod["initContainers"][0]
    assert init["command"] == ["python", "-m", "internlm_workloads", "fetch"]
    init_env = {e["name"]: e for e in init["env"]}
    assert json.loads(init_env["INTERNLM_INPUTS"]["value"])[0]["source"] == (
        "hf://internlm/internlm2_5-7b-chat"
    )
    assert c["startupProbe"]["failureThreshold"] * c["startupProbe"]["periodSeconds"] >= 600
    assert "tcpSocket" in c["livenessProbe"]
    args = config_of(ms)["spec"]["args"]
    assert flag(args, "--backend") == "turbomind"
    assert flag(args, "--tp") == "2"
    assert flag(args, "--quant-policy") == "8"
    assert flag(args, "--max-batch-size") == "128"
    assert flag(args, "--session-len") == "32768"
    assert flag(args, "--cache-max-entry-count") == "0.8"
    assert flag(args, "--model-name") == "internlm2_5-7b-chat"
    hpa = ms.child_obj("hpa")
    assert hpa is not None
    assert hpa["spec"]["scaleTargetRef"]["kind"] == "ModelServe"
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 4)
    pdb = ms.child_obj("pdb")
    assert pdb is not None and pdb["spec"]["maxUnavailable"] == 1
    svc = ms.child_obj("service")
    assert svc is not None and svc["spec"]["ports"][0]["port"] == 23333

    # kubectl scale goes through the scale subresource to the Deployment
    cluster.kubectl("scale", "modelserve", name, "-n", namespace, "--replicas=3")
    wait_until("Deployment at 3 replicas", lambda: ms.deployment()["spec"]["replicas"] == 3)
    st = ms.wait("3 ready", lambda s: s.get("readyReplicas") == 3 and s.get("phase") == "Ready")
    scale = json.loads(
        cluster.kubectl(
            "get",
            "--raw",
            f"/apis/internlm.io/v1alpha1/namespaces/{namespace}/modelserves/{name}/scale",
        ).stdout
    )
    assert scale["status"]["replicas"] == 3 and "instance=" in scale["status"]["selector"]

    # a spec change rolls out with surge; the ready count never drops below 3
    old_rs_hash = ms.deployment()["spec"]["template"]["metadata"]["annotations"]
    low: list[int] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            ready = int(ms.deployment().get("status", {}).get("readyReplicas") or 0)
            low.append(ready)
            time.sleep(0.1)

    t = threading.Thread(target=watch, daemon=True)
    t.start()
    try:
        cluster.merge_patch("modelserve", name, namespace, {"spec": {"maxBatchSize": 64}})

        def rolled() -> bool:
            dd = ms.deployment()
            s = dd.get("status", {})
            return (
                dd["spec"]["template"]["metadata"]["annotations"] != old_rs_hash
                and s.get("observedGeneration") == dd["metadata"]["generation"]
                and s.get("updatedReplicas") == 3
                and s.get("replicas") == 3
                and s.get("readyReplicas") == 3
            )

        wait_until("rollout of the new spec", rolled, timeout=90)
    finally:
        stop.set()
        t.join()
    assert low and min(low) >= 3, f"ready count dropped during the rollout: {min(low)}"
    assert flag(config_of(ms)["spec"]["args"], "--max-batch-size") == "64"
    ms.wait_ready()

    # a crashed server: Degraded, then recovered once the ReplicaSet replaced it
    victim = ms.pods()[0]["metadata"]["name"]
    cluster.kubectl(
        "annotate",
        "pod",
        victim,
        "-n",
        namespace,
        "e2e.internlm.io/exit-code=139",
        "e2e.internlm.io/reason=Error",
    )
    st = ms.wait("Degraded", lambda s: s.get("phase") == "Degraded", timeout=30)
    reason = ms.cond("Degraded", st)
    assert reason is not None and reason[0] == "True"
    assert victim in next(c["message"] for c in st["conditions"] if c["type"] == "Degraded")
    st = ms.wait(
        "recovered",
        lambda s: s.get("phase") == "Ready" and s.get("readyReplicas") == 3,
        timeout=90,
    )
    assert ms.cond("Degraded", st) == ("False", "AsExpected")
    events = cluster.get(
        "events", "-n", namespace, "--field-selector", f"involvedObject.name={name}"
    )["items"]
    assert ("Warning", "ServerCrashed") in {(e["type"], e["reason"]) for e in events}


def test_gated_modelserve_waits_for_passing_evalrun(
    cluster: Cluster, namespace: str, operator: OperatorHandle
) -> None:
    make_pvcs(cluster, namespace, "models")

    def evalrun(name: str) -> dict[str, Any]:
        return {
            "apiVersion": "internlm.io/v1alpha1",
            "kind": "EvalRun",
            "metadata": {"name": name},
            "spec": {
                "target": {"model": {"pvc": {"claimName": "models", "path": "chat-v2"}}},
                "datasets": ["gsm8k_gen"],
                "thresholds": [{"dataset": "gsm8k", "metric": "accuracy", "min": 50}],
                "resources": {"gpusPerNode": 1},
            },
        }

    def finish_eval(name: str, score: float) -> None:
        job = f"{name}-er"
        pods = wait_until(
            f"pod of {job}",
            lambda: [
                p
                for p in cluster.get(
                    "pods", "-n", namespace, "-l", f"batch.kubernetes.io/job-name={job}"
                )["items"]
                if p["status"].get("phase") == "Running"
            ],
        )
        msg = json.dumps(
            {"ok": True, "scores": [{"dataset": "gsm8k", "metric": "accuracy", "value": score}]}
        )
        cluster.kubectl(
            "annotate",
            "pod",
            pods[0]["metadata"]["name"],
            "-n",
            namespace,
            "e2e.internlm.io/exit-code=0",
            f"e2e.internlm.io/message={msg}",
        )

    cluster.apply(evalrun("eval-bad"), namespace=namespace)
    ms_doc = {
        "apiVersion": "internlm.io/v1alpha1",
        "kind": "ModelServe",
        "metadata": {"name": "gated"},
        "spec": {
            "model": {"pvc": {"claimName": "models", "path": "chat-v2"}},
            "gate": {"evalRun": "eval-bad"},
            "resources": {"gpusPerNode": 1},
        },
    }
    cluster.apply(ms_doc, namespace=namespace)
    ms = Serve(cluster, namespace, "gated")

    st = ms.wait("waiting on its gate", lambda s: s.get("phase") == "Waiting")
    assert ms.cond("Ready", st) == ("False", "WaitingForDependency")
    assert "EvalRun eval-bad" in next(
        c["message"] for c in st["conditions"] if c["type"] == "Ready"
    )
    assert ms.child_obj("deployment") is None

    finish_eval("eval-bad", 12.0)  # below the threshold: the EvalRun fails
    st = ms.wait("gate failed", lambda s: (ms.cond("Stalled", s) or ("",))[0] == "True")
    assert ms.cond("Stalled", st) == ("True", "GateFailed")
    assert st["phase"] == "Waiting"
    time.sleep(2)
    assert ms.child_obj("deployment") is None, "a failed gate must not serve the model"

    # a passing EvalRun exists and the gate points at it: the model is served
    cluster.apply(evalrun("eval-good"), namespace=namespace)
    finish_eval("eval-good", 71.5)
    cluster.merge_patch(
        "modelserve", "gated", namespace, {"spec": {"gate": {"evalRun": "eval-good"}}}
    )
    st = ms.wait_ready(timeout=90)
    assert st["modelSource"] == "pvc://models/chat-v2"
    assert ms.cond("Stalled", st)[0] == "False"  # type: ignore[index]
    assert any(e["kind"] == "EvalRun" and e["name"] == "eval-good" for e in st["lineage"])
    assert ms.child_obj("hpa") is None and ms.child_obj("pdb") is None  # one replica

    # a model change on a running server waits for its gate; the old model keeps serving
    cluster.apply(evalrun("eval-v3"), namespace=namespace)
    cluster.merge_patch(
        "modelserve",
        "gated",
        namespace,
        {
            "spec": {
                "model": {"pvc": {"claimName": "models", "path": "chat-v3"}},
                "gate": {"evalRun": "eval-v3"},
            }
        },
    )
    st = ms.wait(
        "holding the new model",
        lambda s: (
            (ms.cond("Reconciling", s) or ("",))[0] == "True"
            and s.get("observedGeneration") == ms.get()["metadata"]["generation"]
        ),
    )
    assert st["phase"] == "Ready" and st["modelSource"] == "pvc://models/chat-v2"
    assert (
        ms.deployment()["metadata"]["annotations"]["internlm.io/model-source"]
        == "pvc://models/chat-v2"
    )
    finish_eval("eval-v3", 80.0)
    wait_until(
        "rolled to the new model",
        lambda: ms.status().get("modelSource") == "pvc://models/chat-v3",
        timeout=60,
    )
    ms.wait_ready()
