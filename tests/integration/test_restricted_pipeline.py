"""The whole ``samples/pipeline.yaml`` (TrainJob -> FineTune -> EvalRun -> ModelServe -> Agent)
in a namespace that enforces the Pod Security Standard ``restricted``: the API server's own
PodSecurity admission checks every pod the Jobs and ReplicaSets create, so one refused pod
shows up as a ``FailedCreate`` event and a stage that never gets its pods."""

from __future__ import annotations

import json
from typing import Any

import pytest
from internlm_operator.builders.security import WORKLOAD_UID

from tests.conftest import Cluster, wait_until
from tests.integration.conftest import Batch, OperatorHandle, claims_of, make_pvcs, samples
from tests.integration.test_modelserve import Serve

pytestmark = pytest.mark.cluster

ENFORCE = "pod-security.kubernetes.io/enforce"


def failed_creates(cluster: Cluster, ns: str) -> list[str]:
    events = cluster.get("events", "-n", ns)["items"]
    return [
        f"{e['involvedObject']['kind']}/{e['involvedObject']['name']}: {e.get('message')}"
        for e in events
        if e.get("reason") == "FailedCreate"
    ]


def restrict(cluster: Cluster, ns: str) -> None:
    cluster.kubectl(
        "label",
        "namespace",
        ns,
        f"{ENFORCE}=restricted",
        "pod-security.kubernetes.io/enforce-version=latest",
        "--overwrite",
    )
    # PodSecurity is really enforced here: a pod without the restricted settings is refused.
    bare = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "bare", "namespace": ns},
        "spec": {"containers": [{"name": "c", "image": "registry.local/bare:1"}]},
    }
    res = cluster.kubectl(
        "create", "--dry-run=server", "-f", "-", input=json.dumps(bare), check=False
    )
    assert res.returncode != 0 and "violates PodSecurity" in res.stderr, res.stderr


def test_pipeline_runs_in_a_restricted_namespace(
    cluster: Cluster, namespace: str, operator: OperatorHandle
) -> None:
    restrict(cluster, namespace)
    docs = samples("pipeline")
    claims: set[str] = set()
    for d in docs:
        claims |= claims_of(d)
    make_pvcs(cluster, namespace, *sorted(claims))
    for d in docs:
        cluster.apply(d, namespace=namespace)

    tj = Batch(cluster, namespace, "TrainJob", "pipeline-pretrain")
    ft = Batch(cluster, namespace, "FineTune", "pipeline-sft")
    ev = Batch(cluster, namespace, "EvalRun", "pipeline-eval")
    ms = Serve(cluster, namespace, "pipeline-serve")
    ag = Serve(cluster, namespace, "pipeline-agent", kind="Agent")

    def no_refusals() -> None:
        assert failed_creates(cluster, namespace) == []

    def admitted(b: Batch) -> None:
        """The Job's pods exist, or the refusal is what the test reports."""
        wait_until(
            f"pods of {b.job_name} or a FailedCreate",
            lambda: b.pods() or failed_creates(cluster, namespace),
            timeout=120,
        )
        no_refusals()

    # each stage's pods are admitted (Running), then driven to success as the workload would
    admitted(tj)
    tj.finish_all(
        2, {"ok": True, "outputs": {"model": "/mnt/pvc/model-store/pipeline/pretrain/hf"}}
    )
    tj.wait_phase("Succeeded", timeout=60)
    no_refusals()
    admitted(ft)
    ft.finish_all(
        1,
        {
            "ok": True,
            "outputs": {
                "adapter": "/mnt/pvc/model-store/pipeline/sft/adapter",
                "merged": "/mnt/pvc/model-store/pipeline/sft/merged",
            },
        },
    )
    ft.wait_phase("Succeeded", timeout=60)
    admitted(ev)
    ev.finish_all(
        1,
        {
            "ok": True,
            "scores": [
                {"dataset": "gsm8k", "metric": "accuracy", "value": 58.2},
                {"dataset": "mmlu", "metric": "accuracy", "value": 63.0},
            ],
        },
    )
    ev.wait_phase("Succeeded", timeout=60)
    no_refusals()

    ms_st = ms.wait_ready(timeout=90)
    assert ms_st["modelSource"] == "pvc://model-store/pipeline/sft/merged"
    st = wait_until(
        "the Agent Ready", lambda: (s := ag.status()).get("phase") == "Ready" and s, timeout=90
    )
    assert [e["kind"] for e in st["lineage"]] == ["TrainJob", "FineTune", "EvalRun", "ModelServe"]
    no_refusals()

    # every Deployment's pods exist and are ready; every pod ran as the images' non-root user
    for what in (ms, ag):
        d = what.deployment()
        want = d["spec"]["replicas"]
        assert d["status"].get("readyReplicas") == want, (what.kind, d["status"])
    pods: list[dict[str, Any]] = cluster.get("pods", "-n", namespace)["items"]
    owners = {(p["metadata"].get("ownerReferences") or [{}])[0].get("kind") for p in pods}
    assert owners == {"Job", "ReplicaSet"}, owners
    for p in pods:
        sc = p["spec"]["securityContext"]
        assert sc["runAsNonRoot"] is True and sc["runAsUser"] == WORKLOAD_UID, p["metadata"]
        assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert cluster.get("namespace", namespace)["metadata"]["labels"][ENFORCE] == "restricted"
