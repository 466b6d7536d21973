"""XTuner supervised fine-tuning (stage ``finetune``): renders the XTuner Python config."""

from __future__ import annotations

from typing import Any

from .base import (
    CONFIG_DIR,
    InvalidSpec,
    RenderContext,
    Rendered,
    py_literal,
    rendered,
)

FORMATS = ("alpaca", "openai")


def finetune_spec(ctx: RenderContext) -> dict[str, Any]:
    s = ctx.spec
    h = s.hyperparameters
    if s.dataset.format not in FORMATS:
        raise InvalidSpec(
            f"dataset.format {s.dataset.format!r} is not supported for fine-tuning "
            f"(use one of {', '.join(FORMATS)})"
        )
    lora = s.effective_lora()
    return {
        "modelPath": ctx.paths["model"],
        "method": s.method,
        "lora": None
        if lora is None
        else {
            "r": lora.r,
            "alpha": lora.alpha,
            "dropout": lora.dropout,
            "targetModules": lora.target_modules,
        },
        "datasetPath": ctx.paths["dataset"],
        "datasetFormat": s.dataset.format,
        "template": s.template,
        "epochs": h.epochs,
        "learningRate": h.learning_rate,
        "maxLength": h.max_length,
        "batchSize": h.batch_size,
        "gradientAccumulation": h.gradient_accumulation,
        "packing": h.packing,
        "deepspeedStage": s.deepspeed_stage,
        "produce": "merged" if s.method == "full" else s.produce,
        "xtunerConfigPath": f"{CONFIG_DIR}/xtuner_config.py",
    }


# The dataset map function of each dataset format (xtuner.dataset.map_fns).
MAP_FNS = {"alpaca": "alpaca_map_fn", "openai": "openai_map_fn"}
WORK_DIR = "work_dirs"  # under the output dir; the workload passes the same to --work-dir
SAVE_STEPS = 500
SAVE_TOTAL_LIMIT = 2


# Dataset files by suffix -> the ``datasets`` builder that reads them; any other path is a
# dataset directory (e.g. a Hugging Face Hub snapshot) and ``load_dataset`` picks the format.
FILE_LOADERS = {".json": "json", ".jsonl": "json", ".parquet": "parquet", ".csv": "csv"}


def hf_dataset(path: str) -> str:
    """The ``datasets.load_dataset`` call (as a config dict) for a dataset file or directory."""
    suffix = "." + path.rsplit(".", 1)[-1].lower() if "." in path.rsplit("/", 1)[-1] else ""
    if suffix in FILE_LOADERS:
        return (
            f"dict(type=load_dataset, path={py_literal(FILE_LOADERS[suffix])}, "
            "data_files=dict(train=data_path))"
        )
    return "dict(type=load_dataset, path=data_path)"


def xtuner_config(ctx: RenderContext, spec: dict[str, Any]) -> str:
    """A complete mmengine-style XTuner 0.2.0 config (what ``xtuner train`` and ``xtuner convert
    pth_to_hf`` load), modelled on XTuner's own ``*_alpaca_e3`` configs.

    One thing is decided when the config is loaded, not here, so the one file runs in the pod
    and on a CPU test machine alike: whether CUDA is present (bf16 weights, AMP optimiser
    wrapper and NCCL; else fp32, plain wrapper and gloo).
    DeepSpeed is not part of an XTuner config: the workload passes ``--deepspeed
    deepspeed_zero<N>`` from ``config.json``; the stage is recorded here for the reader."""
    s = ctx.spec
    lora = s.effective_lora()
    qlora = s.method == "qlora"
    map_fn = MAP_FNS[spec["datasetFormat"]]
    warmup = float(s.hyperparameters.warmup_ratio)
    ds = spec["deepspeedStage"]
    lit = py_literal
    imports = [
        "import torch",
        "from datasets import load_dataset",
        "from mmengine.dataset import DefaultSampler",
        "from mmengine.hooks import (CheckpointHook, DistSamplerSeedHook, IterTimerHook,",
        "                            LoggerHook, ParamSchedulerHook)",
        "from mmengine.optim import AmpOptimWrapper, CosineAnnealingLR, LinearLR, OptimWrapper",
        "from torch.optim import AdamW",
        "from transformers import AutoModelForCausalLM, AutoTokenizer",
        "from xtuner.dataset import process_hf_dataset",
        "from xtuner.dataset.collate_fns import default_collate_fn",
        f"from xtuner.dataset.map_fns import {map_fn}, template_map_fn_factory",
        "from xtuner.engine.hooks import DatasetInfoHook",
        "from xtuner.engine.runner import TrainLoop",
        "from xtuner.model import SupervisedFinetune",
        "from xtuner.utils import PROMPT_TEMPLATE",
    ]
    if lora is not None:
        imports.append("from peft import LoraConfig")
    if qlora:
        imports.append("from transformers import BitsAndBytesConfig")
    llm_extra = ""
    if qlora:
        llm_extra = (
            "\n    quantization_config=dict(type=BitsAndBytesConfig, load_in_4bit=True, "
            "load_in_8bit=False,\n        llm_int8_threshold=6.0, llm_int8_has_fp16_weight=False, "
            "bnb_4bit_compute_dtype=torch.bfloat16,\n        bnb_4bit_use_double_quant=True, "
            "bnb_4bit_quant_type='nf4'),"
        )
    lora_block = "None"
    if lora is not None:
        lora_block = (
            f"dict(type=LoraConfig, r={lora.r}, lora_alpha={lora.alpha}, "
            f"lora_dropout={lit(lora.dropout)}, bias='none',\n"
            f"            task_type='CAUSAL_LM'"
            + (
                f", target_modules={lit(lora.target_modules)}"
                if lora.target_modules
                else ""  # PEFT then adapts every linear layer but the output head
            )
            + ")"
        )
    if warmup > 0:
        schedule = (
            "param_scheduler = [\n"
            "    dict(type=LinearLR, start_factor=1e-5, by_epoch=True, begin=0,\n"
            "         end=warmup_ratio * max_epochs, convert_to_iter_based=True),\n"
            "    dict(type=CosineAnnealingLR, eta_min=0.0, by_epoch=True,\n"
            "         begin=warmup_ratio * max_epochs, end=max_epochs, "
            "convert_to_iter_based=True),\n"
            "]"
        )
    else:
        schedule = (
            "param_scheduler = [\n"
            "    dict(type=CosineAnnealingLR, eta_min=0.0, by_epoch=True, begin=0, "
            "end=max_epochs,\n"
            "         convert_to_iter_based=True),\n"
            "]"
        )
    dataset = hf_dataset(spec["datasetPath"])
    body = f"""
# --- from the spec -------------------------------------------------------------------------
pretrained_model_name_or_path = {lit(spec["modelPath"])}
data_path = {lit(spec["datasetPath"])}
dataset_format = {lit(spec["datasetFormat"])}
prompt_template = PROMPT_TEMPLATE.{s.template}
method = {lit(s.method)}
max_length = {int(spec["maxLength"])}
pack_to_max_length = {lit(bool(spec["packing"]))}
batch_size = {int(spec["batchSize"])}  # per device
accumulative_counts = {int(spec["gradientAccumulation"])}
max_epochs = {int(spec["epochs"])}
lr = {lit(float(spec["learningRate"]))}
warmup_ratio = {lit(warmup)}
# DeepSpeed ZeRO stage (None: plain DDP); applied by the workload as `xtuner train --deepspeed`
deepspeed_stage = {lit(ds or None)}
work_dir = {lit(ctx.output_dir.rstrip("/") + "/" + WORK_DIR)}
save_steps = {SAVE_STEPS}
save_total_limit = {SAVE_TOTAL_LIMIT}

# --- decided when loaded (a lazy-import config: plain imports are lazy, so __import__) ------
use_cuda = __import__('torch').cuda.is_available()

# --- model -----------------------------------------------------------------------------------
tokenizer = dict(type=AutoTokenizer.from_pretrained,
                 pretrained_model_name_or_path=pretrained_model_name_or_path,
                 trust_remote_code=True, padding_side='right')

model = dict(
    type=SupervisedFinetune,
    use_varlen_attn=False,
    llm=dict(type=AutoModelForCausalLM.from_pretrained,
             pretrained_model_name_or_path=pretrained_model_name_or_path,
             trust_remote_code=True,
             torch_dtype=torch.bfloat16 if use_cuda else torch.float32,{llm_extra}),
    lora={lora_block})

# --- data ------------------------------------------------------------------------------------
train_dataset = dict(
    type=process_hf_dataset,
    dataset={dataset},
    tokenizer=tokenizer,
    max_length=max_length,
    dataset_map_fn={map_fn},
    template_map_fn=dict(type=template_map_fn_factory, template=prompt_template),
    remove_unused_columns=True,
    shuffle_before_pack=True,
    pack_to_max_length=pack_to_max_length,
    use_varlen_attn=False)

train_dataloader = dict(
    batch_size=batch_size,
    num_workers=0,
    dataset=train_dataset,
    sampler=dict(type=DefaultSampler, shuffle=True),
    collate_fn=dict(type=default_collate_fn, use_varlen_attn=False))

# --- schedule --------------------------------------------------------------------------------
optim_wrapper = dict(
    type=AmpOptimWrapper if use_cuda else OptimWrapper,
    optimizer=dict(type=AdamW, lr=lr, betas=(0.9, 0.999), weight_decay=0),
    clip_grad=dict(max_norm=1, error_if_nonfinite=False),
    accumulative_counts=accumulative_counts,
    **(dict(loss_scale='dynamic', dtype='bfloat16') if use_cuda else dict()))

# linear warmup over warmup_ratio of the run (left out when 0), then cosine decay
{schedule}
train_cfg = dict(type=TrainLoop, max_epochs=max_epochs)

# --- runtime ---------------------------------------------------------------------------------
custom_hooks = [dict(type=DatasetInfoHook, tokenizer=tokenizer)]
default_hooks = dict(
    timer=dict(type=IterTimerHook),
    logger=dict(type=LoggerHook, log_metric_by_epoch=False, interval=1),
    param_scheduler=dict(type=ParamSchedulerHook),
    checkpoint=dict(type=CheckpointHook, by_epoch=False, interval=save_steps,
                    max_keep_ckpts=save_total_limit, save_last=True),
    sampler_seed=dict(type=DistSamplerSeedHook))
env_cfg = dict(cudnn_benchmark=False,
               mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
               dist_cfg=dict(backend='nccl' if use_cuda else 'gloo'))
visualizer = None
log_level = 'INFO'
load_from = None
resume = False  # the workload passes --resume <last checkpoint> on a restarted pod
randomness = dict(seed=0, deterministic=False)
log_processor = dict(by_epoch=False)
"""
    head = (
        f"# Rendered by internlm-operator from {ctx.kind} {ctx.namespace}/{ctx.name} for "
        "XTuner 0.2.0; do not edit.\n"
        "# `xtuner train` runs it as is; `xtuner convert pth_to_hf` loads it again.\n"
    )
    return head + "\n".join(imports) + "\n" + body


class XTuner:
    name = "xtuner"
    stage = "finetune"

    def render(self, ctx: RenderContext) -> Rendered:
        spec = finetune_spec(ctx)
        return rendered(ctx, self.stage, spec, {"xtuner_config.py": xtuner_config(ctx, spec)})


RUNTIME = XTuner()
