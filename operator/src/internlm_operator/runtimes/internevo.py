"""InternEvo pretraining (stage ``pretrain``, framework ``internevo``): renders its Python config."""  # noqa: E501

from __future__ import annotations

from .base import RenderContext, Rendered, py_literal, rendered
from .deepspeed import data_parallel, gradient_accumulation, max_steps, pretrain_spec


def internevo_config(ctx: RenderContext) -> str:
    s = ctx.spec
    o, p = s.optimization, s.parallelism
    model = s.model.config or {}
    lines = [
        "# Rendered by internlm-operator for InternEvo; do not edit.",
        f"JOB_NAME = {py_literal(ctx.name)}",
        f"SEQ_LEN = {o.seq_length}",
        f"TOTAL_STEP = {max_steps(ctx)}",
        f"model = dict({', '.join(f'{k}={py_literal(v)}' for k, v in sorted(model.items()))})",
        "data = dict(",
        f"    seq_len={o.seq_length},",
        f"    micro_num={gradient_accumulation(ctx)},",
        f"    micro_bsz={o.micro_batch_size},",
        f"    total_steps={max_steps(ctx)},",
        f"    train_folder={py_literal(ctx.paths['data'])},",
        ")",
        "ckpt = dict(",
        f"    enable_save_ckpt=True, checkpoint_every={s.checkpoint.interval},",
        f"    save_ckpt_folder={py_literal(ctx.output_dir + '/checkpoints')},",
        f"    auto_resume={s.checkpoint.resume},",
        f"    load_ckpt_folder={py_literal(ctx.paths.get('model'))},",
        ")",
        f"adam = dict(lr={o.learning_rate}, adam_beta1=0.9, adam_beta2=0.95, weight_decay={o.weight_decay})",  # noqa: E501
        f"lr_scheduler = dict(total_steps={max_steps(ctx)}, init_steps=0, warmup_ratio={round(o.warmup_steps / max(1, max_steps(ctx)), 6)}, eta_min={o.min_learning_rate})",  # noqa: E501
        f"hybrid_zero_optimizer = dict(overlap_sync_grad=True, clip_grad_norm={o.gradient_clipping})",  # noqa: E501
        "parallel = dict(",
        f"    zero1=dict(size={data_parallel(ctx) if p.zero_stage else 1}),",
        f"    tensor=dict(size={p.tensor}), pipeline=dict(size={p.pipeline}),",
        f"    weight=dict(size=1), sequence_parallel={p.sequence > 1},",
        ")",
        f"model_type = {py_literal(model.get('model_type', 'INTERNLM2'))}",
        f"dtype = {py_literal({'bf16': 'torch.bfloat16', 'fp16': 'torch.float16'}.get(o.precision, 'torch.float32'))}",  # noqa: E501
        "",
    ]
    return "\n".join(lines)


class InternEvo:
    name = "internevo"
    stage = "pretrain"

    def render(self, ctx: RenderContext) -> Rendered:
        spec = pretrain_spec(ctx, None)
        return rendered(ctx, self.stage, spec, {"internevo_config.py": internevo_config(ctx)})


RUNTIME = InternEvo()
