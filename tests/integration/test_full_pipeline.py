"""The whole ``samples/pipeline.yaml`` (TrainJob -> FineTune -> EvalRun -> ModelServe -> Agent)
applied at once: each stage waits for its upstream, the batch pods are driven to completion as
the workloads would (exit 0 plus the termination-message JSON of docs/workload-contract.md), and
the chain converges to a Ready Agent whose lineage goes back to the TrainJob."""

from __future__ import annotations

import pytest

from tests.conftest import Cluster, wait_until
from tests.integration.conftest import (
    Batch,
    OperatorHandle,
    claims_of,
    make_pvcs,
    samples,
)
from tests.integration.test_modelserve import Serve

pytestmark = pytest.mark.cluster


def test_pipeline_converges_to_ready_agent(
    cluster: Cluster, namespace: str, operator: OperatorHandle
) -> None:
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

    # everything downstream of the TrainJob waits
    for what in (ms, ag):
        st = what.wait("waiting", lambda s: s.get("phase") == "Waiting")
        assert what.cond("Ready", st) == ("False", "WaitingForDependency")
    assert ms.child_obj("deployment") is None and ag.child_obj("deployment") is None

    tj.finish_all(
        2, {"ok": True, "outputs": {"model": "/mnt/pvc/model-store/pipeline/pretrain/hf"}}
    )
    tj.wait_phase("Succeeded", timeout=60)
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

    # the model exists now, but the gate (the EvalRun) has not passed: still not served
    st = ms.wait(
        "waiting for the gate",
        lambda s: (
            "EvalRun pipeline-eval"
            in next(c["message"] for c in s["conditions"] if c["type"] == "Ready")
        ),
    )
    assert st["phase"] == "Waiting"
    assert ms.child_obj("deployment") is None

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

    ms_st = ms.wait_ready(timeout=90)
    assert ms_st["modelSource"] == "pvc://model-store/pipeline/sft/merged"
    assert ms_st["servedModelName"] == "internlm2_5-7b-domain-chat"

    st = wait_until(
        "the Agent Ready",
        lambda: (s := ag.status()).get("phase") == "Ready" and s,
        timeout=90,
    )
    assert st["llm"] == {"endpoint": ms_st["endpoint"], "model": "internlm2_5-7b-domain-chat"}
    assert st["endpoint"] == (f"http://pipeline-agent-ag.{namespace}.svc.cluster.local:8000/v1")
    chain = [(e["kind"], e["name"]) for e in st["lineage"]]
    assert chain == [
        ("TrainJob", "pipeline-pretrain"),
        ("FineTune", "pipeline-sft"),
        ("EvalRun", "pipeline-eval"),
        ("ModelServe", "pipeline-serve"),
    ]
    outputs = {e["kind"]: e.get("output") for e in st["lineage"]}
    assert outputs["FineTune"] == "pvc://model-store/pipeline/sft/merged"
    assert outputs["ModelServe"] == ms_st["endpoint"]
    env = {
        e["name"]: e.get("value")
        for e in ag.deployment()["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env["OPENAI_BASE_URL"] == ms_st["endpoint"]
