"""OpenCompass evaluation (stage ``eval``): renders the OpenCompass Python config."""

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

# The record layouts of custom datasets the workload runs (OpenCompass' data_type); the API
# allows exactly these, and they pass through unchanged.
CUSTOM_FORMATS = ("mcq", "qa")


def eval_spec(ctx: RenderContext) -> dict[str, Any]:
    s = ctx.spec
    if "model" in ctx.paths:
        target: dict[str, Any] = {
            "type": "weights",
            "path": ctx.paths["model"],
            "tokenizerPath": ctx.paths.get("tokenizer"),
        }
    else:
        url, model = ctx.extra.get("endpointUrl"), ctx.extra.get("endpointModel")
        if not url or not model:
            raise InvalidSpec("the evaluation target has no endpoint URL and model name")
        target = {"type": "endpoint", "url": url, "model": model}
    customs = []
    for c in s.custom_datasets or []:
        if c.format not in CUSTOM_FORMATS:
            raise InvalidSpec(f"customDatasets[{c.name}].format {c.format!r} is not supported")
        customs.append(
            {
                "name": c.name,
                "path": ctx.paths[f"custom:{c.name}"],
                "format": c.format,
            }
        )
    g = s.generation
    return {
        "target": target,
        "datasets": list(s.datasets or []),
        "customDatasets": customs,
        "generation": {
            "maxOutLen": g.max_out_len,
            "batchSize": g.batch_size,
            "temperature": g.temperature,
        },
        "thresholds": [
            {"dataset": t.dataset, "metric": t.metric, "min": t.min} for t in s.thresholds or []
        ],
        "dataDir": ctx.paths.get("evalData"),
        "opencompassConfigPath": f"{CONFIG_DIR}/opencompass_config.py",
    }


def opencompass_config(ctx: RenderContext, spec: dict[str, Any]) -> str:
    t = spec["target"]
    g = spec["generation"]
    lines = [
        "# Rendered by internlm-operator for OpenCompass; do not edit.",
        "from mmengine.config import read_base",
        "",
        "with read_base():",
    ]
    for d in spec["datasets"]:
        lines.append(
            f"    from opencompass.configs.datasets.{d.split('_')[0]}.{d} import "
            f"{d.split('_')[0]}_datasets as _{d.replace('.', '_').replace('-', '_')}"
        )
    if not spec["datasets"]:
        lines.append("    pass")
    lines.append("")
    lines.append(
        "datasets = sum((v for k, v in list(locals().items()) if k.startswith('_') "
        "and isinstance(v, list)), [])"
    )
    # Custom datasets as OpenCompass takes them without a config of their own (it fills in
    # the rest from data_type: mcq or qa), exactly as the workload renders them itself.
    for c in spec["customDatasets"]:
        entry = {
            "path": c["path"],
            "abbr": c["name"],
            "data_type": c["format"],
            "infer_method": "gen",
        }
        lines.append(f"datasets.append({py_literal(entry)})")
    if t["type"] == "weights":
        model = (
            "dict(type='HuggingFaceCausalLM', abbr={name}, path={path}, tokenizer_path={tok}, "
            "max_out_len={mol}, batch_size={bs}, run_cfg=dict(num_gpus={gpus}))"
        ).format(
            name=py_literal(ctx.name),
            path=py_literal(t["path"]),
            tok=py_literal(t.get("tokenizerPath") or t["path"]),
            mol=g["maxOutLen"],
            bs=g["batchSize"],
            gpus=max(ctx.gpus_per_node, 1),
        )
    else:
        model = (
            "dict(type='OpenAISDK', abbr={name}, path={model}, openai_api_base={url}, "
            "key='ENV', max_out_len={mol}, batch_size={bs}, temperature={temp})"
        ).format(
            name=py_literal(ctx.name),
            model=py_literal(t["model"]),
            url=py_literal(t["url"]),
            mol=g["maxOutLen"],
            bs=g["batchSize"],
            temp=g["temperature"],
        )
    lines += [f"models = [{model}]", f"work_dir = {py_literal(ctx.output_dir + '/results')}", ""]
    return "\n".join(lines)


class OpenCompass:
    name = "opencompass"
    stage = "eval"

    def render(self, ctx: RenderContext) -> Rendered:
        spec = eval_spec(ctx)
        return rendered(
            ctx, self.stage, spec, {"opencompass_config.py": opencompass_config(ctx, spec)}
        )


RUNTIME = OpenCompass()
