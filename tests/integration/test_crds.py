"""The generated CRDs judged by a real API server: they install, the samples apply, bad
manifests are rejected with a message naming the field, immutable fields stay put, and
``kubectl explain`` shows the descriptions."""

# ruff: noqa: E501

from __future__ import annotations

import copy
import json
import re
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from internlm_operator.api.v1alpha1 import KINDS, parse

from tests.conftest import Cluster, wait_until

pytestmark = pytest.mark.cluster

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
SAMPLE_OF = {
    "TrainJob": "trainjob",
    "FineTune": "finetune",
    "EvalRun": "evalrun",
    "ModelServe": "modelserve",
    "Agent": "agent",
}
DELETE = object()


def sample(kind: str) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((SAMPLES / f"{SAMPLE_OF[kind]}.yaml").read_text())
    return doc


def mutate(obj: dict[str, Any], ops: dict[str, Any]) -> dict[str, Any]:
    """Apply ``{"spec.a.b[0].c": value | DELETE}`` to a copy of ``obj``."""
    obj = copy.deepcopy(obj)
    for path, value in ops.items():
        keys: list[str | int] = []
        for part in path.split("."):
            m = re.fullmatch(r"(\w+)((?:\[\d+\])*)", part)
            assert m, part
            keys.append(m.group(1))
            keys.extend(int(i) for i in re.findall(r"\[(\d+)\]", m.group(2)))
        node: Any = obj
        for key in keys[:-1]:
            if isinstance(key, str) and key not in node:
                node[key] = {}
            node = node[key]
        if value is DELETE:
            del node[keys[-1]]
        else:
            node[keys[-1]] = value
    return obj


@pytest.fixture(scope="module")
def ns(cluster: Cluster, crds: list[str]) -> Iterator[str]:
    """One namespace for the whole module (rejected objects never land in it)."""
    name = f"crd-{secrets.token_hex(3)}"
    cluster.kubectl("create", "namespace", name)
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


def apply(cluster: Cluster, ns: str, obj: dict[str, Any] | str, check: bool = True) -> Any:
    text = obj if isinstance(obj, str) else json.dumps(obj)
    return cluster.kubectl(
        "apply",
        "--server-side",
        "--field-manager=crd-tests",
        "-n",
        ns,
        "-f",
        "-",
        input=text,
        check=check,
    )


# ------------------------------------------------------------------------------------------------


def test_all_crds_established(cluster: Cluster, crds: list[str]) -> None:
    assert sorted(crds) == sorted(info.crd_name for info in KINDS.values())
    for name in crds:
        crd = cluster.get("crd", name)
        conds = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
        assert conds.get("Established") == "True", conds
        assert conds.get("NamesAccepted") == "True", conds
        # The API server reports structural problems as a NonStructuralSchema condition.
        assert "NonStructuralSchema" not in conds


@pytest.mark.parametrize("name", [*SAMPLE_OF.values(), "pipeline"])
def test_sample_applies(cluster: Cluster, ns: str, name: str) -> None:
    text = (SAMPLES / f"{name}.yaml").read_text()
    apply(cluster, ns, text)
    for doc in yaml.safe_load_all(text):
        info = KINDS[doc["kind"]]
        stored = cluster.get(info.plural, doc["metadata"]["name"], "-n", ns)
        # What the server stored (defaults applied) is still valid for the models.
        model = parse(stored)
        assert model.metadata["name"] == doc["metadata"]["name"]


def test_server_applies_defaults(cluster: Cluster, ns: str) -> None:
    obj = {
        "apiVersion": "internlm.io/v1alpha1",
        "kind": "TrainJob",
        "metadata": {"name": "defaults"},
        "spec": {
            "model": {"source": {"huggingFace": {"repo": "internlm/internlm2_5-7b"}}},
            "data": {"uri": "s3://corpus/tokenized", "format": "tokenized"},
            "output": {"uri": "s3://models/defaults"},
        },
    }
    apply(cluster, ns, obj)
    spec = cluster.get("trainjobs", "defaults", "-n", ns)["spec"]
    assert spec["framework"] == "deepspeed"
    assert spec["nodes"] == 1
    assert spec["resources"]["gpusPerNode"] == 8
    assert spec["parallelism"]["zeroStage"] == 2
    assert spec["optimization"]["precision"] == "bf16"
    assert spec["runPolicy"]["backoffLimit"] == 3
    assert spec["suspend"] is False


def test_category_and_printer_columns(cluster: Cluster, ns: str) -> None:
    apply(cluster, ns, (SAMPLES / "pipeline.yaml").read_text())
    out = cluster.kubectl("get", "internlm", "-n", ns).stdout
    for info in KINDS.values():
        assert f"{info.singular}.internlm.io/pipeline-" in out, out
    header = cluster.kubectl("get", "tj", "-n", ns).stdout.splitlines()[0]
    assert header.split()[:3] == ["NAME", "PHASE", "NODES"], header
    header = cluster.kubectl("get", "ms", "-n", ns).stdout.splitlines()[0]
    assert "READY" in header and "MODEL" in header, header


def test_scale_subresource(cluster: Cluster, ns: str) -> None:
    apply(cluster, ns, (SAMPLES / "agent.yaml").read_text())
    cluster.kubectl("scale", "agent/research-assistant", "--replicas=3", "-n", ns)
    assert cluster.get("agent", "research-assistant", "-n", ns)["spec"]["replicas"] == 3


def test_status_subresource_accepts_model_status(cluster: Cluster, ns: str) -> None:
    apply(cluster, ns, (SAMPLES / "evalrun.yaml").read_text())
    status = {
        "phase": "Succeeded",
        "observedGeneration": 1,
        "conditions": [
            {
                "type": "Ready",
                "status": "True",
                "reason": "Succeeded",
                "message": "all thresholds met",
                "lastTransitionTime": "2025-01-01T00:00:00Z",
                "observedGeneration": 1,
            }
        ],
        "scores": [
            {
                "dataset": "gsm8k",
                "metric": "accuracy",
                "value": 71.2,
                "threshold": 60.0,
                "passed": True,
            }
        ],
        "passed": True,
    }
    name = "internlm2-5-7b-chat-eval"
    cluster.merge_patch("evalrun", name, ns, {"status": status}, subresource="status")
    got = cluster.get("evalrun", name, "-n", ns)["status"]
    assert got["scores"][0]["value"] == 71.2
    bad = cluster.merge_patch(
        "evalrun", name, ns, {"status": {"phase": "Exploded"}}, subresource="status", check=False
    )
    assert bad.returncode != 0 and "status.phase" in bad.stderr


# ------------------------------------------------------------------------------------------------
# The catalogue of invalid manifests: (id, kind, mutation of the kind's sample, expected parts
# of the API server's message: the field path and what is wrong).

HF = {"huggingFace": {"repo": "internlm/internlm2_5-7b"}}

# fmt: off
INVALID: list[tuple[str, str, dict[str, Any], tuple[str, ...]]] = [
    # TrainJob
    ("tj-nodes-zero", "TrainJob", {"spec.nodes": 0}, ("spec.nodes", "greater than or equal to 1")),
    ("tj-nodes-absurd", "TrainJob", {"spec.nodes": 100000}, ("spec.nodes", "less than or equal to 128")),
    ("tj-nodes-string", "TrainJob", {"spec.nodes": "two"}, ("spec.nodes", "expected numeric")),
    ("tj-framework-unknown", "TrainJob", {"spec.framework": "megatron"}, ("spec.framework", "Unsupported value", "megatron")),
    ("tj-model-missing", "TrainJob", {"spec.model": DELETE}, ("spec.model", "Required value")),
    ("tj-two-sources", "TrainJob", {"spec.model.source.uri": "s3://b/m"}, ("spec.model.source", "exactly one of huggingFace, modelScope, pvc, uri or fromResource")),
    ("tj-no-source", "TrainJob", {"spec.model.source": {}}, ("spec.model.source", "exactly one of huggingFace")),
    ("tj-config-and-source", "TrainJob", {"spec.model.config": {"hidden_size": 4096}}, ("spec.model", "exactly one of config")),
    ("tj-gpus-not-divisible-by-tp", "TrainJob", {"spec.resources.gpusPerNode": 6, "spec.parallelism.tensor": 4}, ("spec.parallelism.tensor", "must be divisible by parallelism.tensor")),
    ("tj-world-not-divisible", "TrainJob", {"spec.nodes": 1, "spec.resources.gpusPerNode": 4, "spec.parallelism.sequence": 8}, ("spec.resources.gpusPerNode", "must be divisible by parallelism.tensor * parallelism.pipeline")),
    ("tj-gpus-absurd", "TrainJob", {"spec.resources.gpusPerNode": 64}, ("spec.resources.gpusPerNode", "less than or equal to 16")),
    ("tj-pipeline-deepspeed", "TrainJob", {"spec.parallelism.pipeline": 2}, ("spec.parallelism.pipeline", "requires framework internevo")),
    ("tj-zero-stage", "TrainJob", {"spec.parallelism.zeroStage": 5}, ("spec.parallelism.zeroStage", "less than or equal to 3")),
    ("tj-negative-lr", "TrainJob", {"spec.optimization.learningRate": -0.1}, ("spec.optimization.learningRate", "greater than 0")),
    ("tj-precision-unknown", "TrainJob", {"spec.optimization.precision": "int3"}, ("spec.optimization.precision", "Unsupported value")),
    ("tj-steps-and-tokens", "TrainJob", {"spec.optimization.tokenBudget": 1000000}, ("spec.optimization", "at most one of maxSteps or tokenBudget")),
    ("tj-batch-not-multiple", "TrainJob", {"spec.optimization.globalBatchSize": 511}, ("spec.optimization.globalBatchSize", "multiple of microBatchSize")),
    ("tj-memory-not-quantity", "TrainJob", {"spec.resources.memory": "lots"}, ("spec.resources.memory", "should match")),
    ("tj-output-two-forms", "TrainJob", {"spec.output.uri": "s3://b/out"}, ("spec.output", "exactly one of pvc or uri")),
    ("tj-backoff-negative", "TrainJob", {"spec.runPolicy.backoffLimit": -1}, ("spec.runPolicy.backoffLimit", "greater than or equal to 0")),
    ("tj-claim-name-invalid", "TrainJob", {"spec.data.pvc.claimName": "Bad_Name"}, ("spec.data.pvc.claimName", "should match")),
    ("tj-suspend-string", "TrainJob", {"spec.suspend": "yes"}, ("spec.suspend", "expected boolean")),
    ("tj-queue-name-oversize", "TrainJob", {"spec.scheduling.queueName": "q" * 100}, ("spec.scheduling.queueName", "Too long")),
    ("tj-unknown-field", "TrainJob", {"spec.bogus": 1}, ("spec.bogus", "field not declared in schema")),
    # FineTune
    ("ft-method-unknown", "FineTune", {"spec.method": "dpo"}, ("spec.method", "Unsupported value", "dpo")),
    ("ft-lora-with-full", "FineTune", {"spec.method": "full", "spec.produce": "merged"}, ("spec.lora", "lora parameters may only be set when method is lora or qlora")),
    ("ft-full-adapter", "FineTune", {"spec.method": "full", "spec.lora": DELETE, "spec.produce": "adapter"}, ("spec.produce", "produce adapter requires method lora or qlora")),
    ("ft-lora-rank-zero", "FineTune", {"spec.lora.r": 0}, ("spec.lora.r", "greater than or equal to 1")),
    ("ft-dropout-absurd", "FineTune", {"spec.lora.dropout": 1.5}, ("spec.lora.dropout", "less than 1")),
    ("ft-template-oversize", "FineTune", {"spec.template": "x" * 100}, ("spec.template", "Too long")),
    ("ft-dataset-format-unknown", "FineTune", {"spec.dataset.format": "csv"}, ("spec.dataset.format", "Unsupported value")),
    ("ft-from-resource-kind", "FineTune", {"spec.model": {"fromResource": {"kind": "Pod", "name": "x"}}}, ("spec.model.fromResource.kind", "Unsupported value")),
    ("ft-qlora-zero3", "FineTune", {"spec.method": "qlora", "spec.deepspeedStage": 3}, ("spec.deepspeedStage", "qlora does not support deepspeedStage 3")),
    # EvalRun
    ("er-threshold-unlisted", "EvalRun", {"spec.thresholds[0].dataset": "humaneval"}, ("spec.thresholds", "thresholds may only name datasets listed")),
    ("er-no-datasets", "EvalRun", {"spec.datasets": [], "spec.thresholds": DELETE}, ("spec.datasets", "at least one of datasets or customDatasets")),
    ("er-two-targets", "EvalRun", {"spec.target.modelServe": "chat"}, ("spec.target", "exactly one of model, modelServe or endpoint")),
    ("er-temperature-absurd", "EvalRun", {"spec.generation.temperature": 5}, ("spec.generation.temperature", "less than or equal to 2")),
    ("er-dataset-name-invalid", "EvalRun", {"spec.datasets[0]": "gsm8k gen"}, ("spec.datasets[0]", "should match")),
    ("er-custom-format-training", "EvalRun", {"spec.customDatasets": [{"name": "domain", "pvc": {"claimName": "d"}, "format": "alpaca"}]}, ("spec.customDatasets[0].format", "Unsupported value", "mcq", "qa")),
    ("er-too-many-datasets", "EvalRun", {"spec.datasets": [f"d{i}_gen" for i in range(65)], "spec.thresholds": DELETE}, ("spec.datasets", "must have at most 64 items")),
    # ModelServe
    ("ms-tp-unknown", "ModelServe", {"spec.tensorParallel": 3}, ("spec.tensorParallel", "Unsupported value")),
    ("ms-gpus-not-multiple", "ModelServe", {"spec.resources.gpusPerNode": 3}, ("spec.resources.gpusPerNode", "multiple of tensorParallel")),
    ("ms-autoscaling-bounds", "ModelServe", {"spec.autoscaling.minReplicas": 5}, ("spec.autoscaling.minReplicas", "must not exceed maxReplicas")),
    ("ms-port-absurd", "ModelServe", {"spec.port": 70000}, ("spec.port", "less than or equal to 65535")),
    ("ms-cache-ratio-zero", "ModelServe", {"spec.cacheMaxEntryCount": 0}, ("spec.cacheMaxEntryCount", "greater than 0")),
    ("ms-kv-bits", "ModelServe", {"spec.quantization.kvCacheBits": 2}, ("spec.quantization.kvCacheBits", "Unsupported value")),
    ("ms-replicas-negative", "ModelServe", {"spec.replicas": -1}, ("spec.replicas", "greater than or equal to 0")),
    ("ms-adapters-turbomind", "ModelServe", {"spec.adapters": [{"name": "domain", "source": HF}]}, ("spec.adapters", "adapters require engine pytorch")),
    ("ms-repo-invalid", "ModelServe", {"spec.model.huggingFace.repo": "no-slash"}, ("spec.model.huggingFace.repo", "should match")),
    ("ms-no-gpu-lmdeploy", "ModelServe", {"spec.resources.gpusPerNode": 0}, ("spec.resources.gpusPerNode", "non-zero multiple of tensorParallel")),
    ("ms-cpu-tensor-parallel", "ModelServe", {"spec.engine": "transformers"}, ("spec.tensorParallel", "tensorParallel > 1 is an LMDeploy option")),
    ("ms-cpu-quantization", "ModelServe", {"spec.engine": "transformers", "spec.tensorParallel": 1}, ("spec.quantization", "quantization (AWQ/GPTQ, KV cache bits) is an LMDeploy option")),
    ("ms-cpu-session-len", "ModelServe", {"spec.engine": "transformers", "spec.sessionLen": 4096}, ("spec.sessionLen", "sessionLen is an LMDeploy option")),
    ("ms-cpu-batch-size", "ModelServe", {"spec.engine": "transformers", "spec.maxBatchSize": 8}, ("spec.maxBatchSize", "maxBatchSize is an LMDeploy option")),
    ("ms-cpu-cache-ratio", "ModelServe", {"spec.engine": "transformers", "spec.cacheMaxEntryCount": 0.5}, ("spec.cacheMaxEntryCount", "cacheMaxEntryCount is an LMDeploy option")),
    ("ms-cpu-api-keys", "ModelServe", {"spec.engine": "transformers"}, ("spec.apiKeySecret", "apiKeySecret (API keys) is an LMDeploy option")),
    # Agent
    ("ag-two-llms", "Agent", {"spec.llm.modelServe": "chat"}, ("spec.llm", "exactly one of modelServe or url")),
    ("ag-url-without-model", "Agent", {"spec.llm.model": DELETE}, ("spec.llm.model", "model is required when url is set")),
    ("ag-type-unknown", "Agent", {"spec.agentType": "autogpt"}, ("spec.agentType", "Unsupported value")),
    ("ag-url-scheme", "Agent", {"spec.llm.url": "ftp://models.example.com"}, ("spec.llm.url", "should match")),
    ("ag-prompt-oversize", "Agent", {"spec.systemPrompt": "x" * 20000}, ("spec.systemPrompt", "Too long")),
    ("ag-max-turns-absurd", "Agent", {"spec.maxTurns": 1000}, ("spec.maxTurns", "less than or equal to 100")),
    ("ag-duplicate-tools", "Agent", {"spec.tools[1].name": "ArxivSearch"}, ("spec.tools", "ArxivSearch")),
]
# fmt: on


def test_catalogue_is_large_enough() -> None:
    assert len(INVALID) >= 30
    assert len({case[0] for case in INVALID}) == len(INVALID)


@pytest.mark.parametrize(
    ("kind", "ops", "expected"), [c[1:] for c in INVALID], ids=[c[0] for c in INVALID]
)
def test_invalid_manifest_rejected(
    cluster: Cluster, ns: str, kind: str, ops: dict[str, Any], expected: tuple[str, ...]
) -> None:
    obj = mutate(sample(kind), ops)
    obj["metadata"]["name"] = "invalid"
    res = apply(cluster, ns, obj, check=False)
    assert res.returncode != 0, f"accepted: {json.dumps(obj['spec'])}"
    for part in expected:
        assert part in res.stderr, f"{part!r} not in:\n{res.stderr}"


IMMUTABLE: list[tuple[str, dict[str, Any], str]] = [
    ("TrainJob", {"spec.nodes": 4}, "spec.nodes"),
    ("TrainJob", {"spec.framework": "internevo"}, "spec.framework"),
    ("TrainJob", {"spec.model.source.huggingFace.repo": "internlm/internlm2_5-20b"}, "spec.model"),
    ("TrainJob", {"spec.parallelism.zeroStage": 3}, "spec.parallelism"),
    ("FineTune", {"spec.method": "qlora"}, "spec.method"),
    ("FineTune", {"spec.output.pvc.path": "elsewhere"}, "spec.output"),
    (
        "EvalRun",
        {"spec.target.model.huggingFace.repo": "internlm/internlm2_5-20b-chat"},
        "spec.target",
    ),
]


@pytest.mark.parametrize(
    ("kind", "ops", "field"), IMMUTABLE, ids=[i[2] + "-" + i[0] for i in IMMUTABLE]
)
def test_immutable_field_update_rejected(
    cluster: Cluster, ns: str, kind: str, ops: dict[str, Any], field: str
) -> None:
    obj = sample(kind)
    obj["metadata"]["name"] = f"immutable-{secrets.token_hex(2)}"
    apply(cluster, ns, obj)
    res = apply(cluster, ns, mutate(obj, ops), check=False)
    assert res.returncode != 0
    name = field.split(".")[-1]
    assert field in res.stderr and f"{name} is immutable" in res.stderr, res.stderr


def test_mutable_fields_can_change(cluster: Cluster, ns: str) -> None:
    obj = sample("TrainJob")
    obj["metadata"]["name"] = "mutable"
    apply(cluster, ns, obj)
    apply(
        cluster,
        ns,
        mutate(
            obj, {"spec.suspend": True, "spec.runPolicy.backoffLimit": 5, "spec.checkpoint.keep": 5}
        ),
    )
    spec = cluster.get("tj", "mutable", "-n", ns)["spec"]
    assert spec["suspend"] is True and spec["runPolicy"]["backoffLimit"] == 5


@pytest.mark.parametrize(
    ("resource", "expected"),
    [
        (
            "trainjob.spec.parallelism",
            "ZeRO stage and tensor, pipeline and sequence parallel sizes",
        ),
        ("trainjob.spec.parallelism.zeroStage", "DeepSpeed ZeRO stage"),
        ("finetune.spec.method", "lora, qlora (4-bit base + LoRA) or full"),
        ("evalrun.spec.thresholds", "Minimum scores"),
        ("modelserve.spec.tensorParallel", "GPUs one server splits the model over"),
        ("agent.spec.llm", "The model the agent uses"),
    ],
)
def test_kubectl_explain_shows_descriptions(
    cluster: Cluster, crds: list[str], resource: str, expected: str
) -> None:
    def explained() -> str | None:
        res = cluster.kubectl("explain", resource, check=False)
        text = " ".join(res.stdout.split())
        return text if res.returncode == 0 and expected in text else None

    wait_until(f"kubectl explain {resource}", explained, timeout=60, interval=1)
