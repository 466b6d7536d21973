"""The workload side of config.json (docs/workload-contract.md): parse_config accepts each
stage's documented shape and rejects skew with a one-line reason naming the key. Standard
library only, so it runs in the repo's venv."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "images" / "workloads" / "src"))

from internlm_workloads.config import (
    ConfigError,
    EvalSpec,
    FinetuneSpec,
    PretrainSpec,
    parse_config,
)
from internlm_workloads.stages.serve import build_args

pytestmark = pytest.mark.workload

SPECS: dict[str, dict[str, Any]] = {
    "pretrain": {
        "framework": "deepspeed",
        "model": {"config": {"model_type": "llama", "hidden_size": 64}},
        "dataPath": "/data",
        "seqLength": 2048,
        "globalBatchSize": 512,
        "microBatchSize": 1,
        "gradientAccumulation": 8,
        "learningRate": 3e-4,
        "minLearningRate": 3e-5,
        "lrSchedule": "cosine",
        "warmupSteps": 100,
        "maxSteps": 1000,
        "precision": "bf16",
        "checkpoint": {"interval": 100, "keep": 3, "resume": True},
        "dsConfigPath": "/etc/internlm/ds_config.json",
    },
    "finetune": {
        "modelPath": "/models/base",
        "method": "lora",
        "lora": {"r": 64, "alpha": 16, "dropout": 0.1, "targetModules": ["wqkv"]},
        "datasetPath": "/data/sft.json",
        "datasetFormat": "openai",
        "template": "internlm2_chat",
        "epochs": 3,
        "learningRate": 2e-4,
        "maxLength": 2048,
        "batchSize": 1,
        "gradientAccumulation": 16,
        "packing": True,
        "deepspeedStage": 2,
        "produce": "both",
        "xtunerConfigPath": "/etc/internlm/xtuner_config.py",
    },
    "eval": {
        "target": {
            "type": "endpoint",
            "url": "http://ms:23333/v1",
            "model": "internlm2",
            "tokenizerPath": "/models/tok",
        },
        "datasets": ["gsm8k_gen"],
        "customDatasets": [{"name": "mine", "path": "/d/m.jsonl", "format": "mcq"}],
        "generation": {"maxOutLen": 512, "batchSize": 16, "temperature": 0},
        "thresholds": [{"dataset": "gsm8k", "metric": "accuracy", "min": 50}],
        "dataDir": "/data/opencompass",
        "opencompassConfigPath": None,
    },
    "serve": {"modelPath": "/models/m", "args": ["--tp", "2"], "port": 23333},
    "agent": {
        "llm": {"url": "http://ms:23333/v1", "model": "internlm2"},
        "agentType": "internlm2",
        "tools": [{"name": "IPythonInterpreter", "params": {}}],
        "systemPrompt": None,
        "port": 8080,
        "maxTurns": 4,
    },
}


def doc(stage: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "workloads.internlm.io/v1",
        "stage": stage,
        "resource": {"kind": "X", "namespace": "ns", "name": "n", "uid": "u"},
        "outputDir": "/output/x",
        "spec": spec,
    }


@pytest.mark.parametrize("stage", sorted(SPECS))
def test_documented_shape_parses(stage: str) -> None:
    cfg = parse_config(doc(stage, SPECS[stage]), stage)
    assert cfg.stage == stage and cfg.output_dir == "/output/x"
    assert cfg.resource is not None and cfg.resource.name == "n"


def test_typed_values_and_defaults() -> None:
    p = parse_config(doc("pretrain", SPECS["pretrain"])).spec
    assert isinstance(p, PretrainSpec) and p.checkpoint.interval == 100 and p.seq_length == 2048
    minimal = {"model": {"path": "/m"}, "dataPath": "/d", "seqLength": 8, "maxSteps": 1}
    p = parse_config(doc("pretrain", minimal)).spec
    assert p.framework == "deepspeed" and p.checkpoint.resume is True and p.precision == "bf16"
    f = parse_config(doc("finetune", SPECS["finetune"])).spec
    assert isinstance(f, FinetuneSpec) and f.lora.target_modules == ["wqkv"]
    full = parse_config(doc("finetune", {**SPECS["finetune"], "method": "full"})).spec
    assert full.produce == "merged"
    e = parse_config(doc("eval", SPECS["eval"])).spec
    assert isinstance(e, EvalSpec) and e.custom_datasets[0].format == "mcq"
    assert e.thresholds[0].min == 50.0 and e.target.tokenizer_path == "/models/tok"


@pytest.mark.parametrize(
    ("stage", "mutate", "message"),
    [
        ("pretrain", {"seqLen": 1}, "spec: unknown key(s) seqLen"),
        ("pretrain", {"maxSteps": "10"}, "spec.maxSteps: must be an integer"),
        ("pretrain", {"maxSteps": None}, "spec.maxSteps: required"),
        ("pretrain", {"precision": "fp8"}, "spec.precision: must be one of"),
        ("pretrain", {"model": {"path": "/a", "config": {"model_type": "x"}}}, "exactly one"),
        ("pretrain", {"checkpoint": {"interval": 0}}, "spec.checkpoint.interval: must be > 0"),
        ("finetune", {"lora": {"r": 8, "rank": 8}}, "spec.lora: unknown key(s) rank"),
        ("finetune", {"deepspeedStage": 4}, "spec.deepspeedStage: must be 0-3"),
        ("eval", {"customDatasets": [{"name": "a b", "path": "/x"}]}, "customDatasets[0].name"),
        ("eval", {"thresholds": [{"dataset": "x"}]}, "spec.thresholds[0].min: required"),
        ("serve", {"args": "--tp 2"}, "spec.args: must be a list"),
        ("agent", {"maxTurns": True}, "spec.maxTurns: must be an integer"),
    ],
)
def test_skew_and_bad_values_are_rejected(stage: str, mutate: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as e:
        parse_config(doc(stage, {**SPECS[stage], **mutate}))
    assert message in str(e.value)
    assert "\n" not in str(e.value)


def test_envelope_is_checked() -> None:
    with pytest.raises(ConfigError, match="apiVersion"):
        parse_config({**doc("serve", SPECS["serve"]), "apiVersion": "v0"})
    with pytest.raises(ConfigError, match="entry point is 'eval'"):
        parse_config(doc("serve", SPECS["serve"]), "eval")
    with pytest.raises(ConfigError, match="unknown key"):
        parse_config({**doc("serve", SPECS["serve"]), "extra": 1})
    with pytest.raises(ConfigError, match="stage: must be one of"):
        parse_config(doc("train", {}))


def test_serve_argument_list() -> None:
    spec = parse_config(doc("serve", SPECS["serve"])).spec
    assert build_args(spec) == [
        "/models/m",
        "--tp",
        "2",
        "--server-port",
        "23333",
        "--server-name",
        "0.0.0.0",
    ]
    spec.args = ["/models/m", "--server-port", "9000", "--server-name", "127.0.0.1"]
    assert build_args(spec) == spec.args
