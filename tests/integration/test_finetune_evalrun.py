"""FineTune and EvalRun samples against the local cluster with the operator in-process."""

from __future__ import annotations

import json

import pytest

from tests.conftest import Cluster
from tests.integration.conftest import (
    Batch,
    OperatorHandle,
    claims_of,
    make_pvcs,
    sample,
)

pytestmark = pytest.mark.cluster


def test_finetune_sample_completes(
    cluster: Cluster, namespace: str, operator: OperatorHandle
) -> None:
    doc = sample("finetune")
    make_pvcs(cluster, namespace, *claims_of(doc))
    cluster.apply(doc, namespace=namespace)
    ft = Batch(cluster, namespace, "FineTune", doc["metadata"]["name"])
    pods = ft.wait_running(1)
    pod = pods[0]["spec"]
    c = pod["containers"][0]
    assert c["resources"]["limits"]["nvidia.com/gpu"] == "4"
    assert c["command"] == ["python", "-m", "internlm_workloads", "finetune"]
    assert [i["name"] for i in pod["initContainers"]] == ["fetch-model", "fetch-dataset"]
    assert "subdomain" not in pod  # one node: no rendezvous service
    cm = cluster.get("configmap", f"{ft.job_name}-config", "-n", namespace)
    cfg = json.loads(cm["data"]["config.json"])["spec"]
    assert cfg["method"] == "lora" and cfg["lora"]["r"] == 64 and cfg["deepspeedStage"] == 2
    assert cfg["lora"]["targetModules"] == ["wqkv", "wo", "w1", "w2", "w3"]
    xcfg = cm["data"]["xtuner_config.py"]  # the complete XTuner config the pod runs as is
    assert "lora=dict(type=LoraConfig, r=64, lora_alpha=16" in xcfg
    assert (
        "train_dataloader = dict(" in xcfg
        and "prompt_template = PROMPT_TEMPLATE.internlm2_chat" in xcfg
    )
    ft.finish_all(
        1,
        {
            "ok": True,
            "outputs": {
                "adapter": "/mnt/pvc/model-store/finetunes/internlm2-5-7b-chat-lora/adapter",
                "merged": "/mnt/pvc/model-store/finetunes/internlm2-5-7b-chat-lora/merged",
            },
        },
    )
    st = ft.wait_phase("Succeeded")
    assert st["outputs"] == {
        "adapter": "pvc://model-store/finetunes/internlm2-5-7b-chat-lora/adapter",
        "merged": "pvc://model-store/finetunes/internlm2-5-7b-chat-lora/merged",
    }


SCORES = [
    {"dataset": "gsm8k", "metric": "accuracy", "value": 71.2},
    {"dataset": "mmlu", "metric": "accuracy", "value": 66.0},
    {"dataset": "ceval", "metric": "accuracy", "value": 70.1},
]


@pytest.mark.parametrize("gsm8k,passed", [(71.2, True), (41.0, False)])
def test_evalrun_sample_scores_and_passed(
    cluster: Cluster, namespace: str, operator: OperatorHandle, gsm8k: float, passed: bool
) -> None:
    doc = sample("evalrun")
    make_pvcs(cluster, namespace, *claims_of(doc))
    cluster.apply(doc, namespace=namespace)
    er = Batch(cluster, namespace, "EvalRun", doc["metadata"]["name"])
    pod = er.wait_running(1)[0]["spec"]
    c = pod["containers"][0]
    assert c["resources"]["limits"]["nvidia.com/gpu"] == "2"
    cm = cluster.get("configmap", f"{er.job_name}-config", "-n", namespace)
    cfg = json.loads(cm["data"]["config.json"])["spec"]
    assert cfg["datasets"] == ["gsm8k_gen", "mmlu_gen", "ceval_gen"]
    assert cfg["thresholds"] == [{"dataset": "gsm8k", "metric": "accuracy", "min": 60.0}]
    assert cfg["target"]["type"] == "weights"
    assert cfg["dataDir"] == "/mnt/pvc/opencompass-data/data"
    oc = cm["data"]["opencompass_config.py"]  # the OpenCompass config the pod runs as is
    assert (
        "from opencompass.configs.datasets.mmlu.mmlu_gen import mmlu_datasets as _datasets_1" in oc
    )
    assert "type=HuggingFacewithChatTemplate" in oc and "run_cfg=dict(num_gpus=2)" in oc
    scores = [dict(s) for s in SCORES]
    scores[0]["value"] = gsm8k
    er.finish_all(1, {"ok": True, "scores": scores})
    st = er.wait_phase("Succeeded" if passed else "Failed")
    assert st["passed"] is passed
    rows = {s["dataset"]: s for s in st["scores"]}
    assert rows["gsm8k"]["value"] == gsm8k and rows["gsm8k"]["threshold"] == 60
    assert rows["gsm8k"]["passed"] is passed
    assert "threshold" not in rows["mmlu"]
    cond = next(c for c in st["conditions"] if c["type"] == "Passed")
    assert cond["status"] == ("True" if passed else "False")
    if not passed:
        failed = next(c for c in st["conditions"] if c["type"] == "Failed")
        assert failed["reason"] == "ThresholdsNotMet" and "gsm8k" in failed["message"]
