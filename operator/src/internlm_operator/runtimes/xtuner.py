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


def xtuner_config(ctx: RenderContext, spec: dict[str, Any]) -> str:
    s = ctx.spec
    h = s.hyperparameters
    lora = s.effective_lora()
    lines = [
        "# Rendered by internlm-operator for XTuner; do not edit.",
        f"pretrained_model_name_or_path = {py_literal(spec['modelPath'])}",
        f"data_path = {py_literal(spec['datasetPath'])}",
        f"dataset_format = {py_literal(spec['datasetFormat'])}",
        f"prompt_template = {py_literal(s.template)}",
        f"max_length = {h.max_length}",
        f"pack_to_max_length = {h.packing}",
        f"batch_size = {h.batch_size}",
        f"accumulative_counts = {h.gradient_accumulation}",
        f"max_epochs = {h.epochs}",
        f"lr = {h.learning_rate}",
        f"warmup_ratio = {h.warmup_ratio}",
        "optim_type = 'AdamW'",
        "weight_decay = 0",
        "max_norm = 1",
        f"quantization = {py_literal('nf4' if s.method == 'qlora' else None)}",
        f"deepspeed = {py_literal(f'deepspeed_zero{s.deepspeed_stage}' if s.deepspeed_stage else None)}",  # noqa: E501
        f"work_dir = {py_literal(ctx.output_dir)}",
    ]
    if lora is not None:
        lines.append(
            f"lora = dict(type='LoraConfig', r={lora.r}, lora_alpha={lora.alpha}, lora_dropout={lora.dropout}, "  # noqa: E501
            f"target_modules={py_literal(lora.target_modules)}, bias='none', task_type='CAUSAL_LM')"
        )
    else:
        lines.append("lora = None")
    return "\n".join(lines) + "\n"


class XTuner:
    name = "xtuner"
    stage = "finetune"

    def render(self, ctx: RenderContext) -> Rendered:
        spec = finetune_spec(ctx)
        return rendered(ctx, self.stage, spec, {"xtuner_config.py": xtuner_config(ctx, spec)})


RUNTIME = XTuner()
