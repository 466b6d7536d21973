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

# OpenCompass dataset config names this operator knows -> (package under
# opencompass.configs.datasets, the list of dataset configs that module defines), as in
# OpenCompass 0.5.4 (the eval image). Module and variable names do not follow from the config
# name (IFEval_gen defines ifeval_datasets, livecodebench_gen LCB_datasets), so they are looked
# up here, never guessed; an unknown name is a permanent error in the EvalRun's status.
OPENCOMPASS_DATASETS: dict[str, tuple[str, str]] = {
    "gsm8k_gen": ("gsm8k", "gsm8k_datasets"),
    "mmlu_gen": ("mmlu", "mmlu_datasets"),
    "ceval_gen": ("ceval", "ceval_datasets"),
    "cmmlu_gen": ("cmmlu", "cmmlu_datasets"),
    "ARC_c_gen": ("ARC_c", "ARC_c_datasets"),
    "ARC_e_gen": ("ARC_e", "ARC_e_datasets"),
    "hellaswag_gen": ("hellaswag", "hellaswag_datasets"),
    "humaneval_gen": ("humaneval", "humaneval_datasets"),
    "mbpp_gen": ("mbpp", "mbpp_datasets"),
    "math_gen": ("math", "math_datasets"),
    "bbh_gen": ("bbh", "bbh_datasets"),
    "triviaqa_gen": ("triviaqa", "triviaqa_datasets"),
    "nq_gen": ("nq", "nq_datasets"),
    "race_gen": ("race", "race_datasets"),
    "winogrande_gen": ("winogrande", "winogrande_datasets"),
    "piqa_gen": ("piqa", "piqa_datasets"),
    "siqa_gen": ("siqa", "siqa_datasets"),
    "commonsenseqa_gen": ("commonsenseqa", "commonsenseqa_datasets"),
    "truthfulqa_gen": ("truthfulqa", "truthfulqa_datasets"),
    "gpqa_gen": ("gpqa", "gpqa_datasets"),
    "IFEval_gen": ("IFEval", "ifeval_datasets"),
    "drop_gen": ("drop", "drop_datasets"),
    "agieval_gen": ("agieval", "agieval_datasets"),
    "lambada_gen": ("lambada", "lambada_datasets"),
    "storycloze_gen": ("storycloze", "storycloze_datasets"),
    "obqa_gen": ("obqa", "obqa_datasets"),
    "tydiqa_gen": ("tydiqa", "tydiqa_datasets"),
    "flores_gen": ("flores", "flores_datasets"),
    "mmlu_pro_gen": ("mmlu_pro", "mmlu_pro_datasets"),
    "GaokaoBench_gen": ("GaokaoBench", "GaokaoBench_datasets"),
    "humaneval_plus_gen": ("humaneval_plus", "humaneval_plus_datasets"),
    "aime2024_gen": ("aime2024", "aime2024_datasets"),
    "livecodebench_gen": ("livecodebench", "LCB_datasets"),
    "mmlu_ppl": ("mmlu", "mmlu_datasets"),
    "ceval_ppl": ("ceval", "ceval_datasets"),
    "cmmlu_ppl": ("cmmlu", "cmmlu_datasets"),
    "hellaswag_ppl": ("hellaswag", "hellaswag_datasets"),
    "ARC_c_ppl": ("ARC_c", "ARC_c_datasets"),
    "ARC_e_ppl": ("ARC_e", "ARC_e_datasets"),
    "piqa_ppl": ("piqa", "piqa_datasets"),
    "siqa_ppl": ("siqa", "siqa_datasets"),
    "race_ppl": ("race", "race_datasets"),
    "commonsenseqa_ppl": ("commonsenseqa", "commonsenseqa_datasets"),
}

# The model abbreviation in OpenCompass' outputs (predictions/<abbr>/, the summary's column),
# which the workload reads back.
MODEL_ABBR = "target"

# An endpoint target without a tokenizer: OpenAISDK with its token counting replaced by an
# estimate (UTF-8 bytes / 3), from the eval image's workload package; OpenCompass' own fallback
# (tiktoken's gpt-4 encoding) is downloaded on first use, which fails offline.
ESTIMATING_API_MODEL = ("internlm_workloads.opencompass_models", "OpenAISDKEstimatedTokens")


def dataset_module(name: str) -> tuple[str, str]:
    """(module, variable) of an OpenCompass dataset config name; InvalidSpec when unknown."""
    try:
        package, variable = OPENCOMPASS_DATASETS[name]
    except KeyError:
        raise InvalidSpec(
            f"datasets: {name!r} is not an OpenCompass dataset config this operator knows "
            f"(known: {', '.join(sorted(OPENCOMPASS_DATASETS))}); evaluate other data as "
            "customDatasets"
        ) from None
    return f"opencompass.configs.datasets.{package}.{name}", variable


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
        target = {
            "type": "endpoint",
            "url": url,
            "model": model,
            "tokenizerPath": ctx.paths.get("tokenizer"),
        }
    for d in s.datasets or []:
        dataset_module(d)
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
    """A runnable OpenCompass 0.5.4 config: the named datasets imported from their real
    modules, the custom ones from their local files (OpenCompass fills in the rest from
    ``data_type``), and one model: the weights through ``HuggingFacewithChatTemplate`` with local
    paths, or the endpoint through ``OpenAISDK`` (its API key read from ``OPENAI_API_KEY`` at run
    time, never written here) with a local tokenizer for counting tokens."""
    t = spec["target"]
    g = spec["generation"]
    lit = py_literal
    lines = [
        f"# Rendered by internlm-operator from {ctx.kind} {ctx.namespace}/{ctx.name} for "
        "OpenCompass 0.5.4; do not edit.",
        "from mmengine.config import read_base",
        "",
    ]
    names = []
    if spec["datasets"]:
        lines.append("with read_base():")
        for i, d in enumerate(spec["datasets"]):
            module, variable = dataset_module(d)
            lines.append(f"    from {module} import {variable} as _datasets_{i}")
            names.append(f"*_datasets_{i}")
        lines.append("")
    temperature = float(g["temperature"])
    if t["type"] == "weights":
        lines.append("from opencompass.models import HuggingFacewithChatTemplate")
    elif t.get("tokenizerPath"):
        lines.append("from opencompass.models import OpenAISDK")
    else:
        module, cls = ESTIMATING_API_MODEL
        lines.append(f"from {module} import {cls} as OpenAISDK")
    lines += ["", f"datasets = [{', '.join(names)}]"]
    for c in spec["customDatasets"]:
        entry = {
            "path": c["path"],
            "abbr": c["name"],
            "data_type": c["format"],
            "infer_method": "gen",
        }
        lines.append(f"datasets.append({lit(entry)})")
    lines.append("")
    if t["type"] == "weights":
        generation_kwargs: dict[str, Any] = {"do_sample": temperature > 0}
        if temperature > 0:
            generation_kwargs["temperature"] = temperature
        lines += [
            "models = [dict(",
            "    type=HuggingFacewithChatTemplate,",
            f"    abbr={lit(MODEL_ABBR)},",
            f"    path={lit(t['path'])},",
            f"    tokenizer_path={lit(t.get('tokenizerPath') or t['path'])},",
            "    model_kwargs=dict(trust_remote_code=True),",
            "    tokenizer_kwargs=dict(trust_remote_code=True),",
            f"    generation_kwargs={lit(generation_kwargs)},",
            f"    max_out_len={int(g['maxOutLen'])},",
            f"    batch_size={int(g['batchSize'])},",
            f"    run_cfg=dict(num_gpus={int(ctx.gpus_per_node)}),",
            ")]",
        ]
    else:
        lines += [
            "models = [dict(",
            "    type=OpenAISDK,",
            f"    abbr={lit(MODEL_ABBR)},",
            f"    path={lit(t['model'])},",
            f"    openai_api_base={lit(t['url'])},",
            "    key='ENV',  # the API key: read from the environment at run time",
            f"    tokenizer_path={lit(t.get('tokenizerPath'))},",
            "    meta_template=dict(round=[dict(role='HUMAN', api_role='HUMAN'),",
            "                              dict(role='BOT', api_role='BOT', generate=True)]),",
            f"    temperature={lit(temperature)},",
            "    query_per_second=8,",
            "    retry=2,",
            f"    max_out_len={int(g['maxOutLen'])},",
            "    max_seq_len=4096,",
            f"    batch_size={int(g['batchSize'])},",
            ")]",
        ]
    lines += [f"work_dir = {lit(ctx.output_dir.rstrip('/') + '/results')}", ""]
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
