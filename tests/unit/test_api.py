"""The pydantic models: defaults, wire form, helpers and the checks they mirror from CEL."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from internlm_operator.api.v1alpha1 import (
    API_VERSION,
    KINDS,
    DatasetSource,
    EvalRun,
    FineTune,
    ModelServe,
    ModelSource,
    TrainJob,
    TrainJobStatus,
    kind_info,
    parse,
)
from pydantic import ValidationError

HF = {"huggingFace": {"repo": "internlm/internlm2_5-7b-chat"}}
PVC_OUT = {"pvc": {"claimName": "models", "path": "out"}}

MINIMAL: dict[str, dict[str, Any]] = {
    "TrainJob": {
        "model": {"source": HF},
        "data": {"pvc": {"claimName": "corpus"}, "format": "tokenized"},
        "output": PVC_OUT,
    },
    "FineTune": {
        "model": HF,
        "dataset": {"huggingFace": {"repo": "tatsu-lab/alpaca"}},
        "output": PVC_OUT,
    },
    "EvalRun": {"target": {"model": HF}, "datasets": ["gsm8k_gen"]},
    "ModelServe": {"model": HF},
    "Agent": {"llm": {"modelServe": "chat"}},
}


def manifest(kind: str, **spec: Any) -> dict[str, Any]:
    body = copy.deepcopy(MINIMAL[kind])
    body.update(spec)
    return {"apiVersion": API_VERSION, "kind": kind, "metadata": {"name": "x"}, "spec": body}


@pytest.mark.parametrize("kind", list(KINDS))
def test_minimal_manifest_validates(kind: str) -> None:
    obj = parse(manifest(kind))
    assert type(obj) is KINDS[kind].model
    assert obj.to_dict()["kind"] == kind


def test_defaults() -> None:
    tj = TrainJob.model_validate(manifest("TrainJob"))
    assert tj.spec.framework == "deepspeed"
    assert tj.spec.run_policy.backoff_limit == 3
    assert tj.spec.parallelism.zero_stage == 2
    assert tj.spec.optimization.precision == "bf16"
    assert tj.spec.resources.gpus_per_node == 8
    assert tj.spec.suspend is False
    ms = ModelServe.model_validate(manifest("ModelServe"))
    assert ms.spec.port == 23333
    assert ms.spec.engine == "turbomind"
    ft = FineTune.model_validate(manifest("FineTune"))
    assert ft.spec.method == "lora" and ft.spec.template == "internlm2_chat"
    lora = ft.spec.effective_lora()
    assert lora is not None and lora.r == 64


def test_wire_form_is_camel_case_and_omits_unset() -> None:
    wire = TrainJob.model_validate(manifest("TrainJob")).to_dict()
    spec = wire["spec"]
    assert "runPolicy" in spec and "run_policy" not in spec
    assert spec["runPolicy"]["backoffLimit"] == 3
    assert "scheduling" not in spec and "status" not in wire


def test_snake_case_names_are_accepted_too() -> None:
    src = ModelSource.model_validate({"hugging_face": {"repo": "a/b"}})
    assert src.form == "huggingFace"


@pytest.mark.parametrize(
    ("data", "form"),
    [
        ({"huggingFace": {"repo": "a/b", "revision": "v1"}}, "huggingFace"),
        ({"modelScope": {"repo": "Shanghai_AI_Laboratory/internlm2_5-7b"}}, "modelScope"),
        ({"pvc": {"claimName": "models", "path": "x"}}, "pvc"),
        ({"uri": "s3://bucket/models/x"}, "uri"),
        ({"fromResource": {"kind": "FineTune", "name": "ft", "output": "merged"}}, "fromResource"),
    ],
)
def test_model_source_forms(data: dict[str, Any], form: str) -> None:
    assert ModelSource.model_validate(data).form == form


def test_dataset_source_has_no_from_resource() -> None:
    with pytest.raises(ValidationError, match="fromResource"):
        DatasetSource.model_validate({"fromResource": {"kind": "TrainJob", "name": "x"}})


INVALID: list[tuple[str, dict[str, Any], str]] = [
    ("ModelServe", {"model": {}}, "exactly one of"),
    ("ModelServe", {"model": {**HF, "uri": "s3://b/k"}}, "exactly one of"),
    ("ModelServe", {"model": {"huggingFace": {"repo": "no-slash"}}}, "pattern"),
    ("ModelServe", {"model": {"uri": "ftp://x/y"}}, "pattern"),
    ("ModelServe", {"tensorParallel": 3}, "tensorParallel"),
    ("ModelServe", {"tensorParallel": 2}, "multiple of tensorParallel"),
    ("ModelServe", {"autoscaling": {"minReplicas": 5, "maxReplicas": 2}}, "minReplicas"),
    ("ModelServe", {"adapters": [{"name": "a", "source": HF}]}, "engine pytorch"),
    ("ModelServe", {"resources": {"gpusPerNode": 0}}, "multiple of tensorParallel"),
    ("ModelServe", {"engine": "transformers", "sessionLen": 4096}, "sessionLen is an LMDeploy"),
    ("ModelServe", {"engine": "vllm"}, "transformers"),
    ("ModelServe", {"port": 70000}, "less than or equal"),
    ("ModelServe", {"bogus": 1}, "Extra inputs"),
    ("TrainJob", {"nodes": 0}, "greater than or equal"),
    ("TrainJob", {"framework": "megatron"}, "deepspeed"),
    ("TrainJob", {"resources": {"gpusPerNode": 6}, "parallelism": {"tensor": 4}}, "divisible"),
    ("TrainJob", {"parallelism": {"pipeline": 2}}, "internevo"),
    ("TrainJob", {"model": {}}, "exactly one of config or source"),
    ("TrainJob", {"optimization": {"maxSteps": 1, "tokenBudget": 2}}, "at most one"),
    ("TrainJob", {"optimization": {"globalBatchSize": 10, "microBatchSize": 3}}, "multiple"),
    ("TrainJob", {"resources": {"memory": "lots"}}, "quantity"),
    ("TrainJob", {"output": {}}, "exactly one of pvc or uri"),
    ("FineTune", {"method": "full", "lora": {"r": 8}}, "lora or qlora"),
    ("FineTune", {"method": "full", "produce": "adapter"}, "produce adapter"),
    ("FineTune", {"method": "qlora", "deepspeedStage": 3}, "qlora"),
    ("EvalRun", {"datasets": []}, "at least one"),
    ("EvalRun", {"thresholds": [{"dataset": "mmlu", "min": 50}]}, "thresholds may only"),
    ("EvalRun", {"target": {"model": HF, "modelServe": "s"}}, "exactly one of model"),
    ("Agent", {"llm": {"url": "https://x/v1"}}, "model is required"),
    ("Agent", {"llm": {"url": "https://x/v1", "model": "m", "modelServe": "s"}}, "exactly one"),
    ("Agent", {"tools": [{"name": "Calculator"}, {"name": "Calculator"}]}, "unique"),
]


@pytest.mark.parametrize(("kind", "spec", "message"), INVALID)
def test_invalid_specs_are_rejected(kind: str, spec: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as err:
        parse(manifest(kind, **spec))
    assert message in str(err.value)


def test_thresholds_accept_config_prefix_and_custom_names() -> None:
    er = EvalRun.model_validate(
        manifest(
            "EvalRun",
            datasets=["gsm8k_gen"],
            customDatasets=[{"name": "domain-qa", "pvc": {"claimName": "d"}, "format": "qa"}],
            thresholds=[
                {"dataset": "gsm8k", "min": 50},
                {"dataset": "gsm8k_gen", "min": 50},
                {"dataset": "domain-qa", "metric": "score", "min": 0.7},
            ],
        )
    )
    assert er.spec.thresholds is not None and len(er.spec.thresholds) == 3


def test_status_round_trip_and_condition_lookup() -> None:
    status = {
        "phase": "Running",
        "observedGeneration": 2,
        "conditions": [
            {
                "type": "Ready",
                "status": "False",
                "reason": "Running",
                "message": "step 10/100",
                "lastTransitionTime": "2025-01-01T00:00:00Z",
                "observedGeneration": 2,
            }
        ],
        "startTime": "2025-01-01T00:00:00Z",
        "restarts": 1,
        "progress": {"step": 10, "totalSteps": 100, "loss": 2.5, "tokensPerSecond": 1e5},
        "lastCheckpoint": {"step": 10, "path": "/output/checkpoints/step-10"},
        "outputs": {"model": "/output/hf"},
        "lineage": [{"kind": "TrainJob", "name": "a", "namespace": "n", "uid": "u"}],
    }
    st = TrainJobStatus.model_validate(status)
    assert st.to_dict() == status
    ready = st.condition("Ready")
    assert ready is not None and ready.reason == "Running"
    assert st.condition("Complete") is None
    with pytest.raises(ValidationError):
        TrainJobStatus.model_validate({**status, "phase": "Exploded"})


def test_kind_info_lookup() -> None:
    assert kind_info("tj").kind == "TrainJob"
    assert kind_info("modelserves").short_name == "ms"
    assert kind_info("Agent").crd_name == "agents.internlm.io"
    assert [k.batch for k in KINDS.values()] == [True, True, True, False, False]
    with pytest.raises(KeyError):
        kind_info("Pod")
    with pytest.raises(KeyError):
        parse({"kind": "Pod"})


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ({}, "qa"),  # the default
        ({"format": "qa"}, "qa"),
        ({"format": "mcq"}, "mcq"),
    ],
)
def test_custom_dataset_formats_are_what_the_workload_runs(
    entry: dict[str, Any], expected: str
) -> None:
    er = EvalRun.model_validate(
        manifest(
            "EvalRun",
            customDatasets=[
                {"name": "domain", "pvc": {"claimName": "d", "path": "x.jsonl"}, **entry}
            ],
        )
    )
    assert er.spec.custom_datasets is not None
    assert er.spec.custom_datasets[0].format == expected


@pytest.mark.parametrize("fmt", ["alpaca", "openai", "text", "jsonl", "tokenized"])
def test_custom_dataset_training_layouts_are_rejected(fmt: str) -> None:
    """Training record layouts mean nothing to OpenCompass custom datasets (mcq or qa)."""
    with pytest.raises(ValidationError) as err:
        parse(
            manifest(
                "EvalRun",
                customDatasets=[{"name": "domain", "pvc": {"claimName": "d"}, "format": fmt}],
            )
        )
    assert "'mcq' or 'qa'" in str(err.value)
