"""finetune: XTuner 0.2.0 LoRA SFT on CPU, `xtuner convert pth_to_hf` and `convert merge`.
The XTuner config is always the operator's (internlm_operator.runtimes.xtuner, rendered here
through its runtime as the builders do), so what is tested is what ships. The stage's own CPU
adaptations (internlm_workloads/cpu_shims, added by the stage when there is no CUDA) are what
lets XTuner run here, as on the real node."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from .conftest import REPO, free_port, make_stage, operator_rendered, py

pytestmark = pytest.mark.workload


def ft_doc(**over: Any) -> dict[str, Any]:
    """A FineTune manifest sized for a CPU and the tiny Llama model: the sample's, with
    ``over`` merged into its spec (hyperparameters merged key by key)."""
    doc: dict[str, Any] = yaml.safe_load((REPO / "samples" / "finetune.yaml").read_text())
    spec = doc["spec"]
    spec.update(
        lora={"r": 8, "alpha": 16, "dropout": 0.05},  # Llama: every linear layer
        deepspeedStage=0,  # CPU
        produce="both",
    )
    spec["hyperparameters"].update(
        epochs=1,
        learningRate=1e-3,
        maxLength=256,
        batchSize=2,
        gradientAccumulation=1,
        packing=True,
        # a few iterations in all: a warmup of a fraction of them would round to zero
        warmupRatio=0,
    )
    for k, v in over.items():
        if k == "hyperparameters":
            spec[k].update(v)
        elif v is None:
            spec.pop(k, None)
        else:
            spec[k] = v
    return doc


def ft_config(
    tiny: Path, workdir: Path, dataset: Path | None = None, model: Path | None = None, **over: Any
) -> dict[str, Any]:
    """config.json of the operator's rendering (its xtuner_config.py written next to it)."""
    paths = {
        "model": str(model or tiny / "model"),
        "dataset": str(dataset or tiny / "alpaca.json"),
    }
    return operator_rendered(ft_doc(**over), paths, workdir)


def ft_spec(tiny: Path, **over: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "modelPath": str(tiny / "model"),
        "method": "lora",
        "lora": {"r": 8, "alpha": 16, "dropout": 0.05, "targetModules": None},
        "datasetPath": str(tiny / "alpaca.json"),
        "datasetFormat": "alpaca",
        "template": "internlm2_chat",
        "epochs": 1,
        "learningRate": 1e-3,
        "maxLength": 256,
        "batchSize": 2,
        "gradientAccumulation": 1,
        "packing": True,
        "deepspeedStage": None,
        "produce": "both",
        "xtunerConfigPath": None,
    }
    spec.update(over)
    return spec


CPU = {"INTERNLM_CPU_SHIMS": "1", "NPROC_PER_NODE": "1"}


def two_procs() -> dict[str, str]:
    return {**CPU, "NPROC_PER_NODE": "2", "MASTER_PORT": str(free_port())}


@pytest.mark.timeout(900)
def test_finetune_lora_2_procs_adapter_and_merged_model_load(tiny: Path, tmp_path: Path) -> None:
    """2 processes (torchrun, gloo, DDP); conversions then run in one process."""
    cfg = ft_config(tiny, tmp_path)
    run = make_stage("finetune", "finetune", {}, tmp_path, env=two_procs(), raw_config=cfg)
    rc = run.run(timeout=850)
    assert rc == 0, run.log()[-4000:]
    result = run.termination()
    out = tmp_path / "output"
    assert result["ok"] is True
    assert result["outputs"] == {
        "adapter": str(out / "adapter"),
        "merged": str(out / "merged"),
        "model": str(out / "merged"),
    }
    assert Path(result["checkpoint"]["path"]).is_file() and result["checkpoint"]["step"] > 0
    prog = run.progress()
    assert prog["step"] == prog["totalSteps"] == result["checkpoint"]["step"] and prog["loss"] > 0
    cfg = json.loads((out / "adapter" / "adapter_config.json").read_text())
    assert cfg["r"] == 8 and cfg["lora_alpha"] == 16
    # the adapter applies to the base model, and the merged model loads on its own and equals
    # base + adapter
    out_s = py(
        "finetune",
        "import torch, transformers, peft\n"
        f"base = transformers.AutoModelForCausalLM.from_pretrained({str(tiny / 'model')!r})\n"
        f"m = peft.PeftModel.from_pretrained(base, {str(out / 'adapter')!r}).merge_and_unload()\n"
        f"merged = transformers.AutoModelForCausalLM.from_pretrained({str(out / 'merged')!r},"
        " torch_dtype=torch.float32)\n"
        "ids = torch.tensor([[1, 5, 9, 12, 40]])\n"
        "a, b = m(ids).logits, merged(ids).logits\n"
        "print(float((a - b).abs().max()))\n",
    )
    assert float(out_s.split()[-1]) < 5e-2  # the merged model is saved in fp16


@pytest.mark.timeout(900)
def test_finetune_xtuner_failure_exit_zero_is_caught(tiny: Path, tmp_path: Path) -> None:
    """`xtuner train` exits 0 when training crashes; the stage must fail with the reason."""
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"prompt": "no alpaca fields", "completion": "x"}] * 8))
    cfg = ft_config(tiny, tmp_path / "run", dataset=bad)
    run = make_stage("finetune", "finetune", {}, tmp_path / "run", env=CPU, raw_config=cfg)
    rc = run.run(timeout=850)
    result = run.termination()
    assert rc == 1, run.log()[-4000:]
    assert result["ok"] is False
    assert result["reason"].startswith("XTuner training produced no checkpoint: "), result
    assert "Error" in result["reason"]


@pytest.mark.parametrize(
    ("over", "reason"),
    [
        ({"method": "qlora"}, "method qlora needs a CUDA GPU"),
        ({"template": "nope"}, "template 'nope' is not an XTuner prompt template"),
        ({"model": "/nope"}, "modelPath /nope does not exist"),
    ],
)
def test_finetune_bad_config_fails_with_reason(
    tiny: Path, tmp_path: Path, over: dict[str, Any], reason: str
) -> None:
    """Specs the operator accepts but the pod cannot run, rendered by the operator."""
    model = Path(over.pop("model")) if "model" in over else None
    cfg = ft_config(tiny, tmp_path, model=model, **over)
    run = make_stage("finetune", "finetune", {}, tmp_path, env=CPU, raw_config=cfg)
    rc = run.run(timeout=300)
    result = run.termination()
    assert rc == 1 and result["ok"] is False and reason in result["reason"], result


@pytest.mark.parametrize(
    ("over", "reason"),
    [
        ({"lora": {"r": 0}}, "spec.lora.r: must be > 0"),
        ({"produce": "everything"}, "spec.produce: must be one of"),
        ({}, "xtunerConfigPath is not set"),
    ],
)
def test_finetune_bad_config_json_fails_with_reason(
    tiny: Path, tmp_path: Path, over: dict[str, Any], reason: str
) -> None:
    """config.json the operator would never write (version skew): the workload's parser."""
    run = make_stage("finetune", "finetune", ft_spec(tiny, **over), tmp_path, env=CPU)
    rc = run.run(timeout=300)
    result = run.termination()
    assert rc == 1 and result["ok"] is False and reason in result["reason"], result


@pytest.mark.timeout(900)
def test_finetune_full_from_a_dataset_directory(tiny: Path, tmp_path: Path) -> None:
    """method full (no adapter: the converted model is the output) on a dataset directory, as a
    Hugging Face Hub snapshot arrives (the operator's config lets `datasets` pick the format)."""
    dataset_dir = tmp_path / "inputs" / "dataset"
    dataset_dir.mkdir(parents=True)
    (dataset_dir / "train.json").write_text((tiny / "alpaca.json").read_text())
    cfg = ft_config(tiny, tmp_path, dataset=dataset_dir, method="full", lora=None, produce="merged")
    xcfg = Path(cfg["spec"]["xtunerConfigPath"]).read_text()
    assert "lora=None" in xcfg and f"data_path = {json.dumps(str(dataset_dir))}" in xcfg
    run = make_stage("finetune", "finetune", {}, tmp_path, env=CPU, raw_config=cfg)
    rc = run.run(timeout=850)
    assert rc == 0, run.log()[-4000:]
    result = run.termination()
    out = tmp_path / "output"
    assert result["ok"] and result["outputs"] == {
        "merged": str(out / "merged"),
        "model": str(out / "merged"),
    }
    assert not (out / "adapter").exists()
    py(
        "finetune",
        "import transformers\n"
        f"transformers.AutoModelForCausalLM.from_pretrained({str(out / 'merged')!r})\n",
    )
