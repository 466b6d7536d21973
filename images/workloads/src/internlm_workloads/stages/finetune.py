"""finetune: XTuner 0.2.0 SFT (LoRA, QLoRA or full), then ``xtuner convert pth_to_hf`` and,
when asked, ``xtuner convert merge``.

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

ITER_RE = re.compile(r"Iter\(train\)\s*\[\s*(\d+)/\s*(\d+)\].*?\bloss:\s*([0-9.eE+-]+|nan)")


def _cuda() -> bool:
    try:
        import torch

        return bool(torch.cuda.is_available())
    except ImportError:
        return False


def render_config(spec: FinetuneSpec, path: Path, cuda: bool) -> None:
    """An XTuner (mmengine) config for the spec, modelled on XTuner's own alpaca configs."""
    fmt_map = {"alpaca": "alpaca_map_fn", "openai": "openai_map_fn"}[spec.dataset_format]
    if Path(spec.dataset_path).is_dir():
        # a dataset directory (e.g. a Hub dataset snapshot): datasets picks the file format
        dataset = f"dict(type=load_dataset, path={spec.dataset_path!r})"
    else:
        dataset = (
            f"dict(type=load_dataset, path='json', data_files=dict(train={spec.dataset_path!r}))"
        )
    lora = spec.lora
    targets = lora.target_modules
    dtype = "torch.bfloat16" if cuda else "torch.float32"
    quant = ""
    if spec.method == "qlora":
        quant = (
            "quantization_config=dict(type=BitsAndBytesConfig, load_in_4bit=True, "
            "load_in_8bit=False, llm_int8_threshold=6.0, llm_int8_has_fp16_weight=False, "
            "bnb_4bit_compute_dtype=torch.bfloat16, bnb_4bit_use_double_quant=True, "
            "bnb_4bit_quant_type='nf4'),"
        )
    lora_block = ""
    if spec.method in ("lora", "qlora"):
        lora_block = (
            f"lora=dict(type=LoraConfig, r={lora.r}, lora_alpha={lora.alpha}, "
            f"lora_dropout={lora.dropout}, bias='none', task_type='CAUSAL_LM'"
            + (f", target_modules={targets!r}" if targets else "")
            + "),"
        )
    if cuda:
        optim = (
            "dict(type=AmpOptimWrapper, optimizer=dict(type=AdamW, lr=lr, betas=(0.9, 0.999), "
            "weight_decay=0), clip_grad=dict(max_norm=1, error_if_nonfinite=False), "
            "accumulative_counts=accumulative_counts, loss_scale='dynamic', dtype='bfloat16')"
        )
    else:
        optim = (
            "dict(type=OptimWrapper, optimizer=dict(type=AdamW, lr=lr, betas=(0.9, 0.999), "
            "weight_decay=0), clip_grad=dict(max_norm=1, error_if_nonfinite=False), "
            "accumulative_counts=accumulative_counts)"
        )
    text = f"""# Rendered by internlm_workloads from the FineTune spec.
import torch
from datasets import load_dataset
from mmengine.dataset import DefaultSampler
from mmengine.hooks import (CheckpointHook, DistSamplerSeedHook, IterTimerHook, LoggerHook,
                            ParamSchedulerHook)
from mmengine.optim import AmpOptimWrapper, CosineAnnealingLR, OptimWrapper
from peft import LoraConfig
from torch.optim import AdamW
from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig
from xtuner.dataset import process_hf_dataset
from xtuner.dataset.collate_fns import default_collate_fn
from xtuner.dataset.map_fns import {fmt_map}, template_map_fn_factory
from xtuner.engine.hooks import DatasetInfoHook
from xtuner.engine.runner import TrainLoop
from xtuner.model import SupervisedFinetune
from xtuner.utils import PROMPT_TEMPLATE

pretrained_model_name_or_path = {spec.model_path!r}
prompt_template = PROMPT_TEMPLATE.{spec.template}
max_length = {spec.max_length}
pack_to_max_length = {spec.packing!r}
batch_size = {spec.batch_size}
accumulative_counts = {spec.gradient_accumulation}
max_epochs = {spec.epochs}
lr = {spec.learning_rate!r}

tokenizer = dict(type=AutoTokenizer.from_pretrained,
                 pretrained_model_name_or_path=pretrained_model_name_or_path,
                 trust_remote_code=True, padding_side='right')

model = dict(
    type=SupervisedFinetune,
    use_varlen_attn=False,
    llm=dict(type=AutoModelForCausalLM.from_pretrained,
             pretrained_model_name_or_path=pretrained_model_name_or_path,
             trust_remote_code=True, torch_dtype={dtype}, {quant}),
    {lora_block}
)

train_dataset = dict(
    type=process_hf_dataset,
    dataset={dataset},
    tokenizer=tokenizer,
    max_length=max_length,
    dataset_map_fn={fmt_map},
    template_map_fn=dict(type=template_map_fn_factory, template=prompt_template),
    remove_unused_columns=True,
    shuffle_before_pack=True,
    pack_to_max_length=pack_to_max_length,
    use_varlen_attn=False)

train_dataloader = dict(
    batch_size=batch_size, num_workers=0, dataset=train_dataset,
    sampler=dict(type=DefaultSampler, shuffle=True),
    collate_fn=dict(type=default_collate_fn, use_varlen_attn=False))

optim_wrapper = {optim}

# cosine decay over the whole run; no warmup scheduler: XTuner's ratio-of-an-epoch warmup
# becomes 0 iterations on small datasets and mmengine then refuses to build it
param_scheduler = [
    dict(type=CosineAnnealingLR, eta_min=0.0, by_epoch=True, begin=0, end=max_epochs,
         convert_to_iter_based=True),
]
train_cfg = dict(type=TrainLoop, max_epochs=max_epochs)
custom_hooks = [dict(type=DatasetInfoHook, tokenizer=tokenizer)]
default_hooks = dict(
    timer=dict(type=IterTimerHook),
    logger=dict(type=LoggerHook, log_metric_by_epoch=False, interval=1),
    param_scheduler=dict(type=ParamSchedulerHook),
    checkpoint=dict(type=CheckpointHook, by_epoch=False, interval=500, max_keep_ckpts=2,
                    save_last=True),
    sampler_seed=dict(type=DistSamplerSeedHook))
env_cfg = dict(cudnn_benchmark=False,
               mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
               dist_cfg=dict(backend={"nccl" if cuda else "gloo"!r}))
visualizer = None
log_level = 'INFO'
load_from = None
resume = False
randomness = dict(seed=0, deterministic=False)
log_processor = dict(by_epoch=False)
"""
    path.write_text(text)


def is_runnable_config(path: Path) -> bool:
    """A full XTuner/mmengine config defines the model and the training data loader; a file of
    plain parameters does not (``xtuner train`` would fail on it)."""
    text = path.read_text(errors="replace")
    return bool(
        re.search(r"^model\s*=", text, re.M) and re.search(r"^train_dataloader\s*=", text, re.M)
    )


def check_inputs(spec: FinetuneSpec, cuda: bool) -> None:
    if not Path(spec.model_path).exists():
        raise StageError(f"modelPath {spec.model_path} does not exist")
    if not Path(spec.dataset_path).exists():
        raise StageError(f"datasetPath {spec.dataset_path} does not exist")
    if spec.xtuner_config_path and not Path(spec.xtuner_config_path).is_file():
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
    xcfg = out / "xtuner_config.py"
    if spec.xtuner_config_path and is_runnable_config(Path(spec.xtuner_config_path)):
        xcfg = Path(spec.xtuner_config_path)
    else:
        if spec.xtuner_config_path:
            log(
                f"{spec.xtuner_config_path} is not a runnable XTuner config (no model / "
                "train_dataloader): rendering the XTuner config from the spec instead"
            )
        render_config(spec, xcfg, cuda)

    env = dict(os.environ)
    # XTuner's launcher reads ADDR/PORT (not MASTER_ADDR/MASTER_PORT)
    if "MASTER_ADDR" in env:
        env.setdefault("ADDR", env["MASTER_ADDR"])
    if "MASTER_PORT" in env:
        env.setdefault("PORT", env["MASTER_PORT"])
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
