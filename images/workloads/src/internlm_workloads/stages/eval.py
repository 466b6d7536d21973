"""eval: run OpenCompass on the listed datasets against weights or an OpenAI-compatible
endpoint, read the summary it wrote, report the scores.

OpenCompass exits 0 even when inference or evaluation tasks failed: a dataset whose score is
missing ('-') in the summary, or no summary at all, fails the stage with the reason taken from
the failed task's log. Thresholds below their ``min`` fail the stage too (scores still reported).
"""

from __future__ import annotations

import csv
import json
import os
import sys
from pathlib import Path
from typing import Any

from ..config import EvalSpec, StageConfig
from ..report import StageError, log, output_dir, run_tool, write_progress

MODEL_ABBR = "target"


def _named_dataset_modules(names: list[str]) -> list[str]:
    """OpenCompass dataset config names (e.g. ``gsm8k_gen``) -> importable module paths."""
    try:
        import opencompass
    except ImportError as e:  # pragma: no cover - the eval image has it
        raise StageError("opencompass is not installed in this image") from e
    root = Path(opencompass.__file__).parent / "configs"
    mods = []
    for name in names:
        hits = sorted(root.glob(f"datasets/**/{name}.py")) + sorted(
            root.glob(f"dataset_collections/**/{name}.py")
        )
        if not hits:
            raise StageError(f"dataset {name!r} is not an OpenCompass dataset config")
        rel = hits[0].relative_to(root.parent.parent).with_suffix("")
        mods.append(".".join(rel.parts))
    return mods


def render_config(spec: EvalSpec, path: Path) -> None:
    """Write an OpenCompass Python config for the spec (when the operator did not render one)."""
    gen = spec.generation
    lines = ["from mmengine.config import read_base", ""]
    mods = _named_dataset_modules(spec.datasets)
    if mods:
        lines.append("with read_base():")
        lines += [f"    from {m} import *  # noqa" for m in mods]
        lines.append("")
        lines.append(
            "datasets = sum((v for k, v in list(locals().items()) "
            "if k.endswith('_datasets') and isinstance(v, list)), [])"
        )
    else:
        lines.append("datasets = []")
    for ds in spec.custom_datasets:
        entry = {"path": ds.path, "abbr": ds.name, "data_type": ds.format, "infer_method": "gen"}
        lines.append(f"datasets.append({entry!r})")
    lines.append("")
    generation_kwargs: dict[str, Any] = {"do_sample": gen.temperature > 0}
    if gen.temperature > 0:
        generation_kwargs["temperature"] = gen.temperature
    t = spec.target
    if t.type == "weights":
        lines.append("from opencompass.models import HuggingFacewithChatTemplate")
        lines.append(
            "models = [dict(type=HuggingFacewithChatTemplate, "
            f"abbr={MODEL_ABBR!r}, path={t.path!r}, tokenizer_path={t.tokenizer_path or t.path!r}, "
            f"model_kwargs=dict(trust_remote_code=True), "
            f"tokenizer_kwargs=dict(trust_remote_code=True), "
            f"generation_kwargs={generation_kwargs!r}, max_out_len={gen.max_out_len}, "
            f"batch_size={gen.batch_size}, run_cfg=dict(num_gpus={_gpus()}))]"
        )
    else:
        url = t.url or ""
        lines.append("from opencompass.models import OpenAISDK")
        lines.append(
            "models = [dict(type=OpenAISDK, "
            f"abbr={MODEL_ABBR!r}, path={t.model!r}, openai_api_base={url!r}, "
            # 'ENV': OpenCompass reads OPENAI_API_KEY at run time; never written to a file
            "key='ENV', "
            f"tokenizer_path={t.tokenizer_path!r}, "
            "meta_template=dict(round=[dict(role='HUMAN', api_role='HUMAN'), "
            "dict(role='BOT', api_role='BOT', generate=True)]), "
            f"temperature={gen.temperature}, query_per_second=8, retry=2, "
            f"max_out_len={gen.max_out_len}, max_seq_len=4096, batch_size={gen.batch_size})]"
        )
    path.write_text("\n".join(lines) + "\n")


def _gpus() -> int:
    try:
        import torch

        return 1 if torch.cuda.is_available() else 0
    except ImportError:
        return 0


def check_inputs(spec: EvalSpec) -> None:
    t = spec.target
    if t.type == "weights" and not Path(t.path or "").exists():
        raise StageError(f"target.path {t.path} does not exist")
    if t.tokenizer_path and not Path(t.tokenizer_path).exists():
        raise StageError(f"target.tokenizerPath {t.tokenizer_path} does not exist")
    for ds in spec.custom_datasets:
        if not Path(ds.path).is_file():
            raise StageError(f"customDatasets {ds.name}: {ds.path} does not exist")
        if Path(ds.path).suffix not in (".jsonl", ".csv"):
            raise StageError(f"customDatasets {ds.name}: {ds.path} must be .jsonl or .csv")
    if spec.opencompass_config_path and not Path(spec.opencompass_config_path).is_file():
        raise StageError(f"opencompassConfigPath {spec.opencompass_config_path} does not exist")


def read_summary(work: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """Scores from the newest summary csv; and the datasets whose score is missing."""
    runs = sorted(p for p in work.iterdir() if p.is_dir()) if work.is_dir() else []
    csvs = sorted(runs[-1].glob("summary/summary_*.csv")) if runs else []
    if not csvs:
        raise StageError(f"OpenCompass wrote no summary under {work}: {_failed_task_reason(work)}")
    scores, missing = [], []
    with csvs[-1].open() as f:
        for row in csv.DictReader(f):
            value = row.get(MODEL_ABBR) or next(
                (v for k, v in row.items() if k not in ("dataset", "version", "metric", "mode")),
                "-",
            )
            try:
                scores.append(
                    {"dataset": row["dataset"], "metric": row["metric"], "value": float(value)}
                )
            except (TypeError, ValueError):
                missing.append(row["dataset"])
    return scores, missing


def _failed_task_reason(work: Path) -> str:
    """The most telling line of a failed OpenCompass task's log."""
    # inference failures are the root cause of evaluation failures: look there first
    logs = sorted(work.glob("*/logs/eval/**/*.out"), key=lambda p: p.stat().st_mtime)
    logs += sorted(work.glob("*/logs/infer/**/*.out"), key=lambda p: p.stat().st_mtime)
    for p in reversed(logs):
        text = p.read_text(errors="replace").splitlines()
        for line in reversed(text):
            s = line.strip()
            if ("Error" in s or "Exception" in s) and not s.startswith("File "):
                return f"{p.parent.name}/{p.name}: {s[:300]}"
    return "no task log explains it"


def run(cfg: StageConfig) -> dict[str, Any]:
    spec: EvalSpec = cfg.spec
    out = output_dir(cfg.output_dir)
    check_inputs(spec)
    work = out / "results"
    work.mkdir(parents=True, exist_ok=True)
    if spec.opencompass_config_path:
        oc_cfg = Path(spec.opencompass_config_path)
    else:
        oc_cfg = out / "opencompass_config.py"
        render_config(spec, oc_cfg)
    env = dict(os.environ)
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("OPENAI_API_KEY", "EMPTY")  # OpenAI-compatible servers without auth
    if spec.data_dir:
        env["COMPASS_DATA_CACHE"] = spec.data_dir
    write_progress({"phase": "running", "datasets": len(spec.datasets) + len(spec.custom_datasets)})
    argv = [sys.executable, "-m", "opencompass.cli.main", str(oc_cfg), "--work-dir", str(work)]
    run_tool(argv, "OpenCompass", env=env, log_path=out / "opencompass.log")
    scores, missing = read_summary(work)
    if missing:
        raise StageError(
            f"OpenCompass produced no score for {', '.join(missing)}: {_failed_task_reason(work)}",
            scores=scores,
        )
    if not scores:
        raise StageError("OpenCompass produced no scores")
    failed = []
    for th in spec.thresholds:
        hits = [
            s
            for s in scores
            if s["dataset"] == th.dataset and (th.metric is None or s["metric"] == th.metric)
        ]
        if not hits:
            raise StageError(f"threshold on {th.dataset}: no such score", scores=scores)
        failed += [
            f"{s['dataset']} {s['metric']} {s['value']} < {th.min}"
            for s in hits
            if s["value"] < th.min
        ]
    write_progress({"phase": "done", "scores": scores})
    (out / "scores.json").write_text(json.dumps(scores, indent=1))
    if failed:
        raise StageError("below threshold: " + "; ".join(failed), scores=scores)
    log(f"scores: {scores}")
    return {"outputs": {"results": str(work)}, "scores": scores}
