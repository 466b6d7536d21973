"""finetune: XTuner 0.2.0 LoRA SFT on CPU, `xtuner convert pth_to_hf` and `convert merge`.
CPU-only shims (shims/sitecustomize.py) are test setup, not part of the image."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from .conftest import REPO, free_port, make_stage, py

pytestmark = pytest.mark.workload


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
    run = make_stage("finetune", "finetune", ft_spec(tiny), tmp_path, env=two_procs(), shims=True)
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
    run = make_stage(
        "finetune",
        "finetune",
        ft_spec(tiny, datasetPath=str(bad)),
        tmp_path / "run",
        env=CPU,
        shims=True,
    )
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
        ({"modelPath": "/nope"}, "modelPath /nope does not exist"),
        ({"lora": {"r": 0}}, "spec.lora.r: must be > 0"),
        ({"produce": "everything"}, "spec.produce: must be one of"),
    ],
)
def test_finetune_bad_config_fails_with_reason(
    tiny: Path, tmp_path: Path, over: dict[str, Any], reason: str
) -> None:
    run = make_stage("finetune", "finetune", ft_spec(tiny, **over), tmp_path, env=CPU, shims=True)
    rc = run.run(timeout=300)
    result = run.termination()
    assert rc == 1 and result["ok"] is False and reason in result["reason"], result


@pytest.mark.timeout(900)
def test_finetune_runs_what_the_operator_renders(tiny: Path, tmp_path: Path) -> None:
    """The operator's own ConfigMap for samples/finetune.yaml (config.json + xtuner_config.py),
    with its mount paths pointed at the tiny model and a dataset directory, and the sizes cut
    for a CPU: the stage accepts it and produces adapter and merged model."""
    import sys

    import yaml

    sys.path.insert(0, str(REPO / "tests" / "unit"))
    from test_batch_builders import children  # the operator's builders, as its tests call them

    doc = yaml.safe_load((REPO / "samples" / "finetune.yaml").read_text())
    data = children(doc).config_map["data"]
    mount = tmp_path / "etc-internlm"
    mount.mkdir()
    (mount / "xtuner_config.py").write_text(data["xtuner_config.py"])
    cfg = json.loads(data["config.json"])
    dataset_dir = tmp_path / "inputs" / "dataset"
    dataset_dir.mkdir(parents=True)
    (dataset_dir / "train.json").write_text((tiny / "alpaca.json").read_text())
    cfg["outputDir"] = str(tmp_path / "output")
    cfg["spec"].update(
        modelPath=str(tiny / "model"),
        datasetPath=str(dataset_dir),
        xtunerConfigPath=str(mount / "xtuner_config.py"),
        deepspeedStage=None,  # CPU
        maxLength=256,
        epochs=1,
        gradientAccumulation=1,
        lora={**cfg["spec"]["lora"], "r": 8, "targetModules": None},  # Llama, not InternLM2
    )
    run = make_stage("finetune", "finetune", {}, tmp_path, env=CPU, shims=True, raw_config=cfg)
    rc = run.run(timeout=850)
    assert rc == 0, run.log()[-4000:]
    result = run.termination()
    assert result["ok"] and set(result["outputs"]) == {"adapter", "merged", "model"}
