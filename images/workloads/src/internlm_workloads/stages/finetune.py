"""finetune: XTuner 0.2.0 SFT (LoRA, QLoRA or full), then ``xtuner convert pth_to_hf`` and,
when asked, ``xtuner convert merge``.

The XTuner config is the operator's (``xtunerConfigPath``, rendered by
``internlm_operator.runtimes.xtuner``) and runs as is; this stage only adds what is known at
run time: ``--work-dir`` under the output dir, ``--deepspeed`` from ``deepspeedStage`` and
``--resume`` from the last checkpoint.

The ``xtuner`` CLI exits 0 even when training crashed (it runs the trainer with an unchecked
``subprocess.run``), so every step is checked by what it produced: a checkpoint named by
``last_checkpoint``, an adapter with its config and weights, a merged model that has weights.
On restart the run resumes from the work dir's last checkpoint.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Any

from ..config import FinetuneSpec, StageConfig
from ..report import StageError, last_error_line, log, output_dir, run_tool, write_progress

# sitecustomize for the tools' processes on a CPU-only node (see cpu_shims/sitecustomize.py)
CPU_SHIMS = Path(__file__).resolve().parent.parent / "cpu_shims"

ITER_RE = re.compile(r"Iter\(train\)\s*\[\s*(\d+)/\s*(\d+)\].*?\bloss:\s*([0-9.eE+-]+|nan)")


def _cuda() -> bool:
    try:
        import torch

        return bool(torch.cuda.is_available())
    except ImportError:
        return False


def check_inputs(spec: FinetuneSpec, cuda: bool) -> None:
    if not Path(spec.model_path).exists():
        raise StageError(f"modelPath {spec.model_path} does not exist")
    if not Path(spec.dataset_path).exists():
        raise StageError(f"datasetPath {spec.dataset_path} does not exist")
    if not spec.xtuner_config_path:
        raise StageError("xtunerConfigPath is not set (the operator renders the XTuner config)")
    if not Path(spec.xtuner_config_path).is_file():
        raise StageError(f"xtunerConfigPath {spec.xtuner_config_path} does not exist")
    if spec.method == "qlora" and not cuda:
        raise StageError("method qlora needs a CUDA GPU (bitsandbytes 4-bit)")
    if spec.deepspeed_stage and not cuda:
        raise StageError("deepspeedStage needs a CUDA GPU with XTuner")
    try:
        from xtuner.utils import PROMPT_TEMPLATE
    except ImportError as e:
        raise StageError("xtuner is not installed in this image") from e
    if spec.template not in PROMPT_TEMPLATE:
        raise StageError(
            f"template {spec.template!r} is not an XTuner prompt template "
            f"(one of {', '.join(sorted(PROMPT_TEMPLATE))})"
        )


def _checkpoint(work: Path) -> Path | None:
    marker = work / "last_checkpoint"
    if not marker.exists():
        return None
    p = Path(marker.read_text().strip())
    return p if p.exists() else None


def _has_weights(d: Path, stem: str) -> bool:
    return any(d.glob(f"{stem}*.safetensors")) or any(d.glob(f"{stem}*.bin"))


def run(cfg: StageConfig) -> dict[str, Any]:
    spec: FinetuneSpec = cfg.spec
    out = output_dir(cfg.output_dir)
    cuda = _cuda()
    check_inputs(spec, cuda)
    work = out / "work_dirs"
    work.mkdir(parents=True, exist_ok=True)
    assert spec.xtuner_config_path  # check_inputs
    xcfg = Path(spec.xtuner_config_path)  # the operator's rendering, run as is

    env = dict(os.environ)
    # XTuner's launcher reads ADDR/PORT (not MASTER_ADDR/MASTER_PORT)
    if "MASTER_ADDR" in env:
        env.setdefault("ADDR", env["MASTER_ADDR"])
    if "MASTER_PORT" in env:
        env.setdefault("PORT", env["MASTER_PORT"])
    if not cuda:
        # XTuner and mmengine assume CUDA; without it they crash before the first step
        log(f"no CUDA GPU: XTuner runs on CPU with the adaptations in {CPU_SHIMS}")
        env["INTERNLM_CPU_SHIMS"] = "1"
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(CPU_SHIMS), env.get("PYTHONPATH", "")) if p
        )
    argv = ["xtuner", "train", str(xcfg), "--work-dir", str(work)]
    if spec.deepspeed_stage:
        argv += ["--deepspeed", f"deepspeed_zero{spec.deepspeed_stage}"]
    resume = _checkpoint(work)
    if resume:
        log(f"resuming from {resume}")
        argv += ["--resume", str(resume)]
    train_log = out / "xtuner_train.log"
    state: dict[str, Any] = {}

    def on_line(line: str) -> None:
        m = ITER_RE.search(line)
        if m:
            state.update(step=int(m.group(1)), totalSteps=int(m.group(2)), loss=m.group(3))
            loss = float(state["loss"]) if state["loss"] != "nan" else float("nan")
            write_progress({"step": state["step"], "totalSteps": state["totalSteps"], "loss": loss})

    run_tool(argv, "xtuner train", env=env, log_path=train_log, on_line=on_line)
    if state.get("loss") == "nan":
        raise StageError("XTuner training diverged: loss is nan")
    ckpt = _checkpoint(work)
    if ckpt is None:
        why = last_error_line(train_log) or "see the log"
        raise StageError(f"XTuner training produced no checkpoint: {why}")
    if int(os.environ.get("NODE_RANK", "0")) != 0:
        return {"checkpoint": {"path": str(ckpt)}}  # rank-0 node converts

    outputs: dict[str, str] = {}
    lora = spec.method in ("lora", "qlora")
    # conversions run in one process: XTuner's CLI would wrap them in torchrun (and pass them a
    # --launcher flag they reject) when NPROC_PER_NODE/NNODES say otherwise
    env = {**env, "NPROC_PER_NODE": "1", "NNODES": "1", "NODE_RANK": "0"}
    hf_dir = out / ("adapter" if lora else "merged")
    shutil.rmtree(hf_dir, ignore_errors=True)
    run_tool(
        ["xtuner", "convert", "pth_to_hf", str(xcfg), str(ckpt), str(hf_dir)],
        "xtuner convert pth_to_hf",
        env=env,
        log_path=out / "xtuner_convert.log",
    )
    if lora:
        if not (hf_dir / "adapter_config.json").exists() or not _has_weights(
            hf_dir, "adapter_model"
        ):
            why = last_error_line(out / "xtuner_convert.log") or "no adapter files"
            raise StageError(f"xtuner convert pth_to_hf produced no adapter in {hf_dir}: {why}")
        outputs["adapter"] = str(hf_dir)
        if spec.produce in ("merged", "both"):
            merged = out / "merged"
            shutil.rmtree(merged, ignore_errors=True)
            run_tool(
                [
                    "xtuner",
                    "convert",
                    "merge",
                    spec.model_path,
                    str(hf_dir),
                    str(merged),
                    "--device",
                    "cuda" if cuda else "cpu",
                ],
                "xtuner convert merge",
                env=env,
                log_path=out / "xtuner_merge.log",
            )
            if not (merged / "config.json").exists() or not _has_weights(merged, ""):
                why = last_error_line(out / "xtuner_merge.log") or "no model files"
                raise StageError(f"xtuner convert merge produced no model in {merged}: {why}")
            outputs["merged"] = str(merged)
            outputs["model"] = str(merged)
    else:
        if not (hf_dir / "config.json").exists() or not _has_weights(hf_dir, ""):
            why = last_error_line(out / "xtuner_convert.log") or "no model files"
            raise StageError(f"xtuner convert pth_to_hf produced no model in {hf_dir}: {why}")
        outputs["merged"] = outputs["model"] = str(hf_dir)
    result: dict[str, Any] = {"outputs": outputs, "checkpoint": {"path": str(ckpt)}}
    if "step" in state:
        result["checkpoint"]["step"] = state["step"]
    return result
