"""TrainJob against the local cluster with the operator in-process: the sample runs to the end
with the children its spec implies; failures restart the gang or fail it; suspend, delete,
spec changes, node loss and invalid specs behave as docs/operator.md says."""

from __future__ import annotations

import copy
import json
from typing import Any

import localcluster
import pytest

from tests.conftest import Cluster, wait_until
from tests.integration.conftest import (
    Batch,
    OperatorHandle,
    claims_of,
    make_pvcs,
    sample,
)

pytestmark = pytest.mark.cluster


def small(name: str, **spec: Any) -> dict[str, Any]:
    """A one-node TrainJob with tight retry settings."""
    doc = sample("trainjob")
    doc["metadata"] = {"name": name}
    doc["spec"]["nodes"] = 1
    doc["spec"]["optimization"]["globalBatchSize"] = 16
    doc["spec"].pop("hubTokens", None)
    doc["spec"]["runPolicy"] = {"backoffLimit": 2}
    doc["spec"].update(spec)
    return doc


def apply(cluster: Cluster, ns: str, doc: dict[str, Any]) -> Batch:
    make_pvcs(cluster, ns, *claims_of(doc))
    cluster.apply(doc, namespace=ns)
    return Batch(cluster, ns, doc["kind"], doc["metadata"]["name"])


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def events(cluster: Cluster, ns: str, name: str) -> list[tuple[str, str]]:
    items = cluster.get("events", "-n", ns, "--field-selector", f"involvedObject.name={name}")
    return [(e["type"], e["reason"]) for e in items["items"]]


def test_sample_completes_with_children(
    cluster: Cluster, namespace: str, operator: OperatorHandle
) -> None:
    doc = sample("trainjob")
    # The hub token Secret the sample names (the operator checks it exists before creating).
    cluster.kubectl(
        "create", "secret", "generic", "hf-token", "-n", namespace, "--from-literal=token=t"
    )
    tj = apply(cluster, namespace, doc)
    name = doc["metadata"]["name"]
    job = wait_until("the Job", tj.job, timeout=60)
    uid = tj.get()["metadata"]["uid"]

    # Indexed Job, one pod per node, gang semantics, owned and labelled.
    assert job["spec"]["completionMode"] == "Indexed"
    assert job["spec"]["completions"] == job["spec"]["parallelism"] == 2
    assert job["spec"]["backoffLimit"] == 0
    md = job["metadata"]
    assert md["ownerReferences"][0]["uid"] == uid and md["ownerReferences"][0]["controller"]
    for k, v in {
        "app.kubernetes.io/name": "trainjob",
        "app.kubernetes.io/instance": name,
        "app.kubernetes.io/component": "worker",
        "app.kubernetes.io/managed-by": "internlm-operator",
    }.items():
        assert md["labels"][k] == v
    pod = job["spec"]["template"]["spec"]
    c = pod["containers"][0]
    assert c["resources"]["limits"]["nvidia.com/gpu"] == "8"
    assert c["resources"]["requests"]["memory"] == "800Gi"
    assert pod["nodeSelector"]["nvidia.com/gpu.product"] == "NVIDIA-H200"
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod[
        "tolerations"
    ]
    assert pod["subdomain"] == tj.job_name
    assert pod["automountServiceAccountToken"] is False
    env = env_of(c)
    assert env["NNODES"] == "2" and env["NPROC_PER_NODE"] == "8"
    assert env["MASTER_ADDR"] == f"{tj.job_name}-0.{tj.job_name}"
    assert env["MASTER_PORT"] == "29500"
    assert "job-completion-index" in env["NODE_RANK"]["fieldRef"]["fieldPath"]
    assert env["HF_TOKEN"] == {"secretKeyRef": {"name": "hf-token", "key": "token"}}
    assert env["NCCL_DEBUG"] == "WARN"
    assert c["command"] == ["python", "-m", "internlm_workloads", "pretrain"]
    vols = {v["name"]: v for v in pod["volumes"]}
    assert vols["dshm"]["emptyDir"] == {"medium": "Memory", "sizeLimit": "64Gi"}
    assert [i["name"] for i in pod["initContainers"]] == ["fetch-model"]

    svc = cluster.get("service", tj.job_name, "-n", namespace)
    assert svc["spec"]["clusterIP"] == "None"
    cm = cluster.get("configmap", f"{tj.job_name}-config", "-n", namespace)
    ds = json.loads(cm["data"]["ds_config.json"])
    assert ds["zero_optimization"]["stage"] == 2
    assert ds["train_batch_size"] == 512 and ds["train_micro_batch_size_per_gpu"] == 2
    assert ds["gradient_accumulation_steps"] == 512 // (2 * 16)
    assert ds["bf16"]["enabled"] is True
    cfg = json.loads(cm["data"]["config.json"])
    assert cfg["stage"] == "pretrain" and cfg["spec"]["maxSteps"] == 5000

    # Both pods scheduled on distinct GPU nodes -> Running.
    pods = tj.wait_running(2)
    assert len({p["spec"]["nodeName"] for p in pods}) == 2
    st = tj.wait_phase("Running")
    assert st["startTime"] and st["observedGeneration"] == 1

    result = {
        "ok": True,
        "outputs": {"model": "/mnt/pvc/model-store/trainjobs/internlm2-5-7b-cpt/hf"},
        "checkpoint": {"step": 5000, "path": "/mnt/pvc/model-store/x/checkpoints/step-5000"},
    }
    tj.finish_all(2, result)
    st = tj.wait_phase("Succeeded")
    assert st["outputs"]["model"] == "pvc://model-store/trainjobs/internlm2-5-7b-cpt/hf"
    assert st["lastCheckpoint"]["step"] == 5000
    assert st["completionTime"]
    conds = {c["type"]: c for c in st["conditions"]}
    assert conds["Complete"]["status"] == "True" and conds["Ready"]["status"] == "True"
    assert conds["Reconciling"]["status"] == "False" and conds["Stalled"]["status"] == "False"
    assert all(c["observedGeneration"] == 1 for c in st["conditions"])
    evs = events(cluster, namespace, name)
    assert ("Normal", "JobCreated") in evs and ("Normal", "Succeeded") in evs


def test_retryable_failure_restarts_gang(
    cluster: Cluster, namespace: str, operator: OperatorHandle
) -> None:
    tj = apply(cluster, namespace, small("retry"))
    first = wait_until("Job", tj.job)
    pod = tj.wait_running(1)[0]
    tj.end_pod(pod, 137, reason="OOMKilled")
    st = wait_until("a restart", lambda: (s := tj.status()).get("restarts") == 1 and s)
    wait_until(
        "a new Job",
        lambda: (j := tj.job()) and j["metadata"]["uid"] != first["metadata"]["uid"] and j,
    )
    assert tj.job()["metadata"]["labels"]["internlm.io/attempt"] == "1"
    tj.finish_all(1)
    st = tj.wait_phase("Succeeded")
    assert st["restarts"] == 1
    assert ("Warning", "OOMKilled") in events(cluster, namespace, "retry")


def test_nonretryable_exit_fails_fast(
    cluster: Cluster, namespace: str, operator: OperatorHandle
) -> None:
    tj = apply(cluster, namespace, small("badcfg"))
    pod = tj.wait_running(1)[0]
    tj.end_pod(pod, 2, {"ok": False, "reason": "dataPath /data does not exist"})
    st = tj.wait_phase("Failed")
    failed = next(c for c in st["conditions"] if c["type"] == "Failed")
    assert failed["status"] == "True" and failed["reason"] == "ExitCode"
    assert "exited 2" in failed["message"] and "dataPath /data does not exist" in failed["message"]
    assert not st.get("restarts")
    assert next(c for c in st["conditions"] if c["type"] == "Stalled")["status"] == "True"


def test_backoff_limit_exhausted(
    cluster: Cluster, namespace: str, operator: OperatorHandle
) -> None:
    doc = small("exhaust")
    doc["spec"]["runPolicy"] = {"backoffLimit": 1}
    tj = apply(cluster, namespace, doc)
    tj.end_pod(tj.wait_running(1)[0], 143)
    wait_until("restart 1", lambda: tj.status().get("restarts") == 1)
    wait_until(
        "attempt 1 running",
        lambda: (
            (j := tj.job())
            and j["metadata"]["labels"]["internlm.io/attempt"] == "1"
            and tj.wait_running(1)
        ),
    )
    tj.end_pod(tj.wait_running(1)[0], 143)
    st = tj.wait_phase("Failed")
    failed = next(c for c in st["conditions"] if c["type"] == "Failed")
    assert failed["reason"] == "BackoffLimitExceeded"
    assert "signal 15" in failed["message"]


def test_suspend_and_resume(cluster: Cluster, namespace: str, operator: OperatorHandle) -> None:
    tj = apply(cluster, namespace, small("pause"))
    tj.wait_running(1)
    tj.wait_phase("Running")
    cluster.merge_patch("trainjob", "pause", namespace, {"spec": {"suspend": True}})
    st = tj.wait_phase("Suspended")
    assert next(c for c in st["conditions"] if c["type"] == "Suspended")["status"] == "True"
    assert tj.job()["spec"]["suspend"] is True
    wait_until("pods gone", lambda: not tj.pods())
    cluster.merge_patch("trainjob", "pause", namespace, {"spec": {"suspend": False}})
    tj.wait_running(1)
    tj.wait_phase("Running")
    tj.finish_all(1)
    st = tj.wait_phase("Succeeded")
    assert not st.get("restarts")


def test_delete_cleans_up_children(
    cluster: Cluster, namespace: str, operator: OperatorHandle
) -> None:
    tj = apply(cluster, namespace, small("gone"))
    tj.wait_running(1)
    cluster.kubectl("delete", "trainjob", "gone", "-n", namespace, "--wait=true")

    def children() -> list[str]:
        out = []
        for kind in ("job", "service", "configmap", "pod"):
            items = cluster.get(kind, "-n", namespace, "-l", "app.kubernetes.io/instance=gone")
            out += [f"{kind}/{i['metadata']['name']}" for i in items["items"]]
        return out

    wait_until("no children left", lambda: not children(), timeout=60)


def test_spec_change_restarts_with_new_spec(
    cluster: Cluster, namespace: str, operator: OperatorHandle
) -> None:
    tj = apply(cluster, namespace, small("change"))
    first = wait_until("Job", tj.job)
    tj.wait_running(1)
    cluster.merge_patch(
        "trainjob", "change", namespace, {"spec": {"optimization": {"learningRate": 0.0002}}}
    )
    wait_until(
        "a Job with the new spec",
        lambda: (j := tj.job()) and j["metadata"]["uid"] != first["metadata"]["uid"] and j,
    )
    cm = cluster.get("configmap", f"{tj.job_name}-config", "-n", namespace)
    assert json.loads(cm["data"]["ds_config.json"])["optimizer"]["params"]["lr"] == 0.0002
    tj.wait_running(1)
    st = wait_until(
        "observedGeneration 2",
        lambda: (
            (s := tj.status()).get("observedGeneration") == 2 and s.get("phase") == "Running" and s
        ),
    )
    assert not st.get("restarts")  # a spec change does not count against the backoff limit
    tj.finish_all(1)
    tj.wait_phase("Succeeded")


def test_node_lost_mid_run_restarts(
    cluster: Cluster, namespace: str, operator: OperatorHandle
) -> None:
    node_name = f"{namespace}-node"
    node = localcluster.node(
        node_name,
        {"internlm.io/test-node": node_name, "nvidia.com/gpu.product": "NVIDIA-H200"},
        {"cpu": "192", "memory": "2048Gi", "pods": "110", "nvidia.com/gpu": "8"},
    )
    cluster.kubectl("apply", "-f", "-", input=json.dumps(node))
    try:
        wait_until(
            "node Ready",
            lambda: any(
                c["type"] == "Ready" and c["status"] == "True"
                for c in cluster.get("node", node_name).get("status", {}).get("conditions", [])
            ),
        )
        fast = [
            {"key": k, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 1}
            for k in ("node.kubernetes.io/unreachable", "node.kubernetes.io/not-ready")
        ]
        tj = apply(
            cluster,
            namespace,
            small(
                "nodeloss",
                scheduling={
                    "nodeSelector": {"internlm.io/test-node": node_name},
                    "tolerations": fast,
                },
            ),
        )
        tj.wait_running(1)
        cluster.kubectl("annotate", "node", node_name, "e2e.internlm.io/not-ready=true")
        st = wait_until(
            "a restart after node loss",
            lambda: (s := tj.status()).get("restarts") == 1 and s,
            timeout=120,
        )
        reason = next(c for c in st["conditions"] if c["type"] == "Restarting")["reason"]
        assert reason in ("NodeLost", "PodLost", "Evicted"), reason
        cluster.kubectl("annotate", "node", node_name, "e2e.internlm.io/not-ready-")
        tj.wait_running(1, timeout=120)
        tj.finish_all(1)
        assert tj.wait_phase("Succeeded")["restarts"] == 1
    finally:
        cluster.kubectl("delete", "node", node_name, "--wait=false", check=False)


def test_invalid_and_unresolvable_reported_while_others_proceed(
    cluster: Cluster, namespace: str, operator: OperatorHandle
) -> None:
    bad = small("badbatch")
    bad["spec"]["nodes"] = 2
    bad["spec"]["optimization"]["globalBatchSize"] = 8  # < micro x 16 data-parallel ranks
    bad["spec"]["optimization"]["microBatchSize"] = 1
    good = small("fine")
    orphan = copy.deepcopy(sample("finetune"))
    orphan["metadata"] = {"name": "orphan"}
    orphan["spec"]["model"] = {"fromResource": {"kind": "TrainJob", "name": "missing"}}
    for d in (bad, good, orphan):
        apply(cluster, namespace, d)
    b = Batch(cluster, namespace, "TrainJob", "badbatch")
    g = Batch(cluster, namespace, "TrainJob", "fine")
    o = Batch(cluster, namespace, "FineTune", "orphan")
    stalled = wait_until(
        "badbatch Stalled", lambda: (c := b.condition("Stalled")) and c["status"] == "True" and c
    )
    assert stalled["reason"] == "InvalidSpec" and "globalBatchSize" in stalled["message"]
    assert b.job() is None
    assert ("Warning", "InvalidSpec") in events(cluster, namespace, "badbatch")
    ready = wait_until(
        "orphan waiting",
        lambda: (c := o.condition("Ready")) and c["reason"] == "WaitingForDependency" and c,
    )
    assert "TrainJob missing" in ready["message"]
    assert o.status()["phase"] == "Waiting" and o.job() is None
    g.wait_running(1)
    g.wait_phase("Running")
