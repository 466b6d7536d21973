"""Pure: the workload's final JSON result -> status fields (outputs, scores, Passed)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .conditions import FALSE, TRUE, UNKNOWN, Cond, merge

OUTPUT_KEYS = ("model", "adapter", "merged", "results")


def outputs(
    result: Mapping[str, Any] | None,
    output_dir: str,
    defaults: Mapping[str, str],
    translate: Callable[[str], str | None],
) -> dict[str, str]:
    """status.outputs: what the workload reported, else the documented default sub-directories;
    every path translated into a location other pods can mount (``pvc://...`` or a URI)."""
    reported = dict((result or {}).get("outputs") or {})
    out: dict[str, str] = {}
    for key in OUTPUT_KEYS:
        raw = reported.get(key)
        if not raw and key in defaults:
            raw = f"{output_dir.rstrip('/')}/{defaults[key]}"
        if raw:
            loc = translate(str(raw))
            if loc:
                out[key] = loc[:2048]
    return out


def _matches(threshold_dataset: str, dataset: str) -> bool:
    return dataset == threshold_dataset or dataset.startswith(threshold_dataset + "_")


def scores(
    result: Mapping[str, Any] | None, thresholds: Sequence[Mapping[str, Any]]
) -> tuple[list[dict[str, Any]], bool | None, list[str]]:
    """(scores with threshold/passed, all-passed (None without thresholds), missed messages)."""
    rows: list[dict[str, Any]] = []
    for s in (result or {}).get("scores") or []:
        if not isinstance(s, Mapping):
            continue
        try:
            row: dict[str, Any] = {
                "dataset": str(s["dataset"])[:128],
                "metric": str(s.get("metric") or "accuracy")[:128],
                "value": float(s["value"]),
            }
        except (KeyError, TypeError, ValueError):
            continue
        rows.append(row)
    missed: list[str] = []
    for t in thresholds:
        hits = [
            r
            for r in rows
            if _matches(t["dataset"], r["dataset"]) and r["metric"] == t.get("metric", "accuracy")
        ]
        if not hits:
            missed.append(f"no {t.get('metric', 'accuracy')} score for {t['dataset']}")
        for r in hits:
            r["threshold"] = float(t["min"])
            r["passed"] = r["value"] >= float(t["min"])
            if not r["passed"]:
                missed.append(f"{r['dataset']} {r['metric']} {r['value']:g} < {t['min']:g}")
    passed = None if not thresholds else not missed
    return rows, passed, missed


def with_passed(
    status: dict[str, Any],
    passed: bool | None,
    message: str,
    generation: int,
    now: str,
    prev_conditions: Sequence[Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """Add (or update) the EvalRun ``Passed`` condition, keeping the other conditions."""
    conds = [
        Cond(c["type"], c["status"], c["reason"], c.get("message", ""))
        for c in status.get("conditions") or []
        if c["type"] != "Passed"
    ]
    if passed is None:
        conds.append(Cond("Passed", UNKNOWN, "NotEvaluated", message))
    else:
        conds.append(
            Cond(
                "Passed",
                TRUE if passed else FALSE,
                "ThresholdsMet" if passed else "ThresholdsNotMet",
                message,
            )
        )
    out = dict(status)
    old = [dict(c) for c in status.get("conditions") or [] if c["type"] != "Passed"]
    old += [dict(c) for c in prev_conditions or [] if c.get("type") == "Passed"]
    out["conditions"] = merge(old, conds, generation, now)
    return out
