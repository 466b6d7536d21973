"""torchrun + DeepSpeed ZeRO pretraining (stage ``pretrain``, framework ``deepspeed``)."""

from __future__ import annotations

import json
import math
from typing import Any

from .base import CONFIG_DIR, InvalidSpec, RenderContext, Rendered, rendered

SCHEDULERS = {"cosine": "WarmupCosineLR", "linear": "WarmupDecayLR", "constant": "WarmupLR"}


def data_parallel(ctx: RenderContext) -> int:
    p = ctx.spec.parallelism
    world = ctx.nodes * ctx.gpus_per_node
    return max(1, int(world // (p.tensor * p.pipeline * p.sequence)))


def gradient_accumulation(ctx: RenderContext) -> int:
    o = ctx.spec.optimization
    dp = data_parallel(ctx)
    per_step = o.micro_batch_size * dp
    if o.global_batch_size % per_step:
        raise InvalidSpec(
            f"optimization.globalBatchSize {o.global_batch_size} is not a multiple of "
            f"microBatchSize {o.micro_batch_size} x data-parallel size {dp} "
            f"({ctx.nodes} node(s) x {ctx.gpus_per_node} GPU(s) / model-parallel size)"
        )
    return int(o.global_batch_size // per_step)


def max_steps(ctx: RenderContext) -> int:
    o = ctx.spec.optimization
    if o.max_steps:
        return int(o.max_steps)
    if o.token_budget:
        steps: int = math.ceil(o.token_budget / (o.global_batch_size * o.seq_length))
        return max(1, steps)
    raise InvalidSpec("set optimization.maxSteps or optimization.tokenBudget")


def ds_config(ctx: RenderContext) -> dict[str, Any]:
    o, p = ctx.spec.optimization, ctx.spec.parallelism
    steps = max_steps(ctx)
    sched: dict[str, Any] = {"warmup_num_steps": o.warmup_steps, "warmup_max_lr": o.learning_rate}
    if o.lr_schedule == "cosine":
        sched = {
            "total_num_steps": steps,
            "warmup_num_steps": o.warmup_steps,
            "warmup_min_ratio": 0.0,
            "cos_min_ratio": o.min_learning_rate / o.learning_rate,
        }
    elif o.lr_schedule == "linear":
        sched.update({"total_num_steps": steps, "warmup_min_lr": 0.0})
    else:
        sched.update({"warmup_min_lr": 0.0})
    return {
        "train_batch_size": o.global_batch_size,
        "train_micro_batch_size_per_gpu": o.micro_batch_size,
        "gradient_accumulation_steps": gradient_accumulation(ctx),
        "gradient_clipping": o.gradient_clipping,
        "zero_optimization": {
            "stage": p.zero_stage,
            "overlap_comm": True,
            "contiguous_gradients": True,
            "reduce_bucket_size": 5e8,
        },
        "bf16": {"enabled": o.precision == "bf16"},
        "fp16": {"enabled": o.precision == "fp16"},
        "optimizer": {
            "type": "AdamW",
            "params": {
                "lr": o.learning_rate,
                "betas": [0.9, 0.95],
                "eps": 1e-8,
                "weight_decay": o.weight_decay,
            },
        },
        "scheduler": {"type": SCHEDULERS[o.lr_schedule], "params": sched},
        "steps_per_print": 10,
        "wall_clock_breakdown": False,
    }


def pretrain_spec(ctx: RenderContext, tool_config: str | None) -> dict[str, Any]:
    s = ctx.spec
    o = s.optimization
    model: dict[str, Any] = {"tokenizer": ctx.paths.get("tokenizer")}
    if s.model.config is not None:
        model["config"] = s.model.config
    else:
        model["path"] = ctx.paths["model"]
    return {
        "framework": s.framework,
        "model": model,
        "dataPath": ctx.paths["data"],
        "seqLength": o.seq_length,
        "globalBatchSize": o.global_batch_size,
        "microBatchSize": o.micro_batch_size,
        "gradientAccumulation": gradient_accumulation(ctx),
        "learningRate": o.learning_rate,
        "minLearningRate": o.min_learning_rate,
        "lrSchedule": o.lr_schedule,
        "warmupSteps": o.warmup_steps,
        "maxSteps": max_steps(ctx),
        "precision": o.precision,
        "checkpoint": {
            "interval": s.checkpoint.interval,
            "keep": s.checkpoint.keep,
            "resume": s.checkpoint.resume,
        },
        "dsConfigPath": tool_config,
    }


class DeepSpeed:
    name = "deepspeed"
    stage = "pretrain"

    def render(self, ctx: RenderContext) -> Rendered:
        ds = ds_config(ctx)
        spec = pretrain_spec(ctx, f"{CONFIG_DIR}/ds_config.json")
        ds_json = json.dumps(ds, indent=2, sort_keys=True) + "\n"
        return rendered(ctx, self.stage, spec, {"ds_config.json": ds_json})


RUNTIME = DeepSpeed()
