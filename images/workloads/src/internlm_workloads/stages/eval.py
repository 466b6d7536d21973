"""eval: run OpenCompass on the listed datasets against weights or an OpenAI-compatible
endpoint, read the summary it wrote, report the scores.

OpenCompass exits 0 even when inference or evaluation tasks failed: a dataset whose score is
missing ('-') in the summary, or no summary at all, fails the stage with the reason taken from
the failed task's log. Thresholds are not checked here: the summary names rows by each dataset
config's abbreviation (``lukaemon_mmlu_<subject>``, ``ARC-c``), not as users name datasets, and
the operator matches the two (``internlm_operator.status.score_match``) and gates the EvalRun.

The OpenCompass config is the operator's (``opencompassConfigPath``, rendered by
``internlm_operator.runtimes.opencompass``) and runs as is; its model abbreviation is
``target`` (``MODEL_ABBR``), the column this stage reads from the summary.
"""

from __future__ import annotations

import csv
import json
import os
import re
import sys
from pathlib import Path
from typing import Any

from ..config import EvalSpec, StageConfig
from ..report import StageError, log, output_dir, run_tool, write_progress

MODEL_ABBR = "target"


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
    if not spec.opencompass_config_path:
        raise StageError(
            "opencompassConfigPath is not set (the operator renders the OpenCompass config)"
        )
    if not Path(spec.opencompass_config_path).is_file():
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


def visible_gpus() -> int:
    try:
        import torch
    except ImportError:
        return 0
    return int(torch.cuda.device_count()) if torch.cuda.is_available() else 0


# OpenCompass's LocalRunner asserts that each task's run_cfg.num_gpus GPUs are visible. The
# operator renders the pod's GPU request, which a node may not back with devices (a CPU-only
# node advertising nvidia.com/gpu, as the real test node does): the pod then runs on what it has.
FIT_GPUS = """

# added by the eval stage: this pod sees {visible} GPU(s)
for _m in models:
    if _m.get("run_cfg", {{}}).get("num_gpus", 0) > {visible}:
        _m["run_cfg"]["num_gpus"] = {visible}
"""


def fit_to_visible_gpus(oc_cfg: Path, work: Path, visible: int) -> Path:
    """The config as is, or a copy asking for no more GPUs than the pod sees."""
    text = oc_cfg.read_text()
    asked = [int(n) for n in re.findall(r"num_gpus=(\d+)", text)]
    if not asked or max(asked) <= visible:
        return oc_cfg
    log(f"the config asks for {max(asked)} GPU(s) per task, this pod sees {visible}: {visible}")
    fitted = work / oc_cfg.name
    fitted.write_text(text + FIT_GPUS.format(visible=int(visible)))
    return fitted


def run(cfg: StageConfig) -> dict[str, Any]:
    spec: EvalSpec = cfg.spec
    out = output_dir(cfg.output_dir)
    check_inputs(spec)
    work = out / "results"
    work.mkdir(parents=True, exist_ok=True)
    assert spec.opencompass_config_path  # check_inputs
    oc_cfg = Path(spec.opencompass_config_path)  # the operator's rendering, run as is
    env = dict(os.environ)
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("OPENAI_API_KEY", "EMPTY")  # OpenAI-compatible servers without auth
    if spec.data_dir:
        env["COMPASS_DATA_CACHE"] = spec.data_dir
    write_progress({"phase": "running", "datasets": len(spec.datasets) + len(spec.custom_datasets)})
    oc_cfg = fit_to_visible_gpus(oc_cfg, work, visible_gpus())
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
    write_progress({"phase": "done", "scores": scores})
    (out / "scores.json").write_text(json.dumps(scores, indent=1))
    log(f"scores: {scores}")
    return {"outputs": {"results": str(work)}, "scores": scores}
