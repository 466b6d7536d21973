"""TrainJob -> FineTune -> EvalRun chained by reference runs to the end by itself; an upstream
failure stalls the downstream with a clear message."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import Cluster, wait_until
from tests.integration.conftest import Batch, OperatorHandle, claims_of, make_pvcs, samples

pytestmark = pytest.mark.cluster
BATCH = ("TrainJob", "FineTune", "EvalRun")


def pipeline(cluster: Cluster, ns: str) -> dict[str, Batch]:
    docs = [d for d in samples("pipeline") if d["kind"] in BATCH]
    make_pvcs(cluster, ns, *set().union(*(claims_of(d) for d in docs)))
    for d in docs:
        cluster.apply(d, namespace=ns)
    return {d["kind"]: Batch(cluster, ns, d["kind"], d["metadata"]["name"]) for d in docs}


def waiting_on(b: Batch, upstream: str) -> dict[str, Any]:
    return wait_until(
        f"{b.name} waiting for {upstream}",
        lambda: (
            (c := b.condition("Ready"))
            and c["reason"] == "WaitingForDependency"
            and upstream in c["message"]
            and c
        ),
    )


def test_pipeline_runs_to_the_end(
    cluster: Cluster, namespace: str, operator: OperatorHandle
) -> None:
    p = pipeline(cluster, namespace)
    tj, ft, er = p["TrainJob"], p["FineTune"], p["EvalRun"]
    waiting_on(ft, "TrainJob pipeline-pretrain")
    waiting_on(er, "FineTune pipeline-sft")
    assert ft.job() is None and er.job() is None

    tj.finish_all(
        2, {"ok": True, "outputs": {"model": "/mnt/pvc/model-store/pipeline/pretrain/hf"}}
    )
    tj.wait_phase("Succeeded")
    pods = ft.wait_running(1)
    cfg_path = next(
        e["value"]
        for e in pods[0]["spec"]["containers"][0]["env"]
        if e["name"] == "INTERNLM_CONFIG"
    )
    assert cfg_path == "/etc/internlm/config.json"
    cm = cluster.get("configmap", f"{ft.job_name}-config", "-n", namespace)
    assert '"modelPath": "/mnt/pvc/model-store/pipeline/pretrain/hf"' in cm["data"]["config.json"]
    lineage = ft.status()["lineage"]
    assert [(x["kind"], x["name"]) for x in lineage] == [("TrainJob", "pipeline-pretrain")]
    assert lineage[0]["output"] == "pvc://model-store/pipeline/pretrain/hf"

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
    ft.wait_phase("Succeeded")
    er.wait_running(1)
    er.finish_all(
        1,
        {
            "ok": True,
            "scores": [
                {"dataset": "gsm8k", "metric": "accuracy", "value": 60.5},
                {"dataset": "mmlu", "metric": "accuracy", "value": 64.0},
            ],
        },
    )
    st = er.wait_phase("Succeeded")
    assert st["passed"] is True
    assert [(x["kind"], x["name"]) for x in st["lineage"]] == [
        ("TrainJob", "pipeline-pretrain"),
        ("FineTune", "pipeline-sft"),
    ]
    assert st["lineage"][1]["output"] == "pvc://model-store/pipeline/sft/merged"


def test_upstream_failure_stalls_downstream(
    cluster: Cluster, namespace: str, operator: OperatorHandle
) -> None:
    p = pipeline(cluster, namespace)
    tj, ft, er = p["TrainJob"], p["FineTune"], p["EvalRun"]
    pod = tj.wait_running(2)[0]
    tj.end_pod(pod, 1, {"ok": False, "reason": "tokenizer mismatch"})
    tj.wait_phase("Failed")
    stalled = wait_until(
        "FineTune stalled", lambda: (c := ft.condition("Stalled")) and c["status"] == "True" and c
    )
    assert stalled["reason"] == "UpstreamFailed"
    assert "TrainJob pipeline-pretrain failed" in stalled["message"]
    assert "tokenizer mismatch" in stalled["message"]
    assert ft.job() is None
    # The EvalRun is still waiting for the FineTune, which will never succeed.
    waiting_on(er, "FineTune pipeline-sft")
