"""torchrun + DeepSpeed ZeRO pretraining (stage ``pretrain``, framework ``deepspeed``)."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from typing import Any

from .base import CONFIG_DIR, InvalidSpec, RenderContext, Rendered, rendered

SCHEDULERS = {"cosine": "WarmupCosineLR", "linear": "WarmupDecayLR", "constant": "WarmupLR"}


def check_parallelism(ctx: RenderContext) -> None:
    """The DeepSpeed runtime trains Hugging Face model classes with ZeRO data parallelism only:
    tensor, pipeline or sequence parallelism would leave the batch sizes DeepSpeed checks
    inconsistent with the processes it runs."""
    p = ctx.spec.parallelism
    for name in ("tensor", "pipeline", "sequence"):
        if getattr(p, name) != 1:
            raise InvalidSpec(
                f"parallelism.{name} {getattr(p, name)} is not supported by framework deepspeed "
                "(ZeRO data parallelism only: tensor, pipeline and sequence must be 1; "
                "use framework internevo for model parallelism)"
            )
    if p.weight != 1 or p.zero1 is not None:
        raise InvalidSpec(
            "parallelism.zero1 and parallelism.weight are InternEvo's (framework internevo); "
            "framework deepspeed shards with parallelism.zeroStage"
        )


def data_parallel(ctx: RenderContext) -> int:
    """Data-parallel size: the job's processes (one per GPU, or one per node without GPUs, as
    NPROC_PER_NODE says) over the model-parallel size."""
    p = ctx.spec.parallelism
    world = ctx.nodes * max(1, ctx.gpus_per_node)
    return max(1, int(world // (p.tensor * p.pipeline * p.sequence)))


def gradient_accumulation(ctx: RenderContext) -> int:
    o = ctx.spec.optimization
    dp = data_parallel(ctx)
    per_step = o.micro_batch_size * dp
    if o.global_batch_size % per_step:
        raise InvalidSpec(
            f"optimization.globalBatchSize {o.global_batch_size} is not a multiple of "
            f"microBatchSize {o.micro_batch_size} x data-parallel size {dp} "
            f"({ctx.nodes} node(s) x {max(1, ctx.gpus_per_node)} process(es) / model-parallel size)"
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
    # DeepSpeed's schedulers refuse warmup_num_steps 0 (and use at least 2); linear warmup as in
    # the workload's own schedule
    warmup = max(1, o.warmup_steps)
    sched: dict[str, Any] = {
        "warmup_num_steps": warmup,
        "warmup_max_lr": o.learning_rate,
        "warmup_type": "linear",
    }
    if o.lr_schedule == "cosine":
        sched = {
            "total_num_steps": steps,
            "warmup_num_steps": warmup,
            "warmup_type": "linear",
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
            "onStop": s.checkpoint.on_stop,
            "stopGraceSeconds": s.checkpoint.stop_grace_period_seconds,
        },
        "dsConfigPath": tool_config,
    }


class DeepSpeed:
    name = "deepspeed"
    stage = "pretrain"

    def render(self, ctx: RenderContext) -> Rendered:
        check_parallelism(ctx)
        ds = ds_config(ctx)
        spec = pretrain_spec(ctx, f"{CONFIG_DIR}/ds_config.json")
        ds_json = json.dumps(ds, indent=2, sort_keys=True) + "\n"
        out = rendered(ctx, self.stage, spec, {"ds_config.json": ds_json})
        if not ctx.spec.checkpoint.on_stop:
            return out
        return replace(out, stop_grace_seconds=ctx.spec.checkpoint.stop_grace_period_seconds)


RUNTIME = DeepSpeed()
