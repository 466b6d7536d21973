"""Pure: the workload's final JSON result -> status fields (outputs, scores, Passed)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from . import score_match
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


def inputs(result: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """status.inputs: what the pod fetched (the result's ``fetched``: name, source, the commit
    or ETag, bytes, files), well-formed rows only, at most 32."""
    rows: list[dict[str, Any]] = []
    for f in (result or {}).get("fetched") or []:
        if not isinstance(f, Mapping) or not f.get("name") or not f.get("source"):
            continue
        row: dict[str, Any] = {"name": str(f["name"])[:256], "source": str(f["source"])[:2048]}
        if f.get("revision"):
            row["revision"] = str(f["revision"])[:128]
        for key in ("bytes", "files"):
            v = f.get(key)
            if isinstance(v, int) and not isinstance(v, bool) and v >= 0:
                row[key] = v
        rows.append(row)
    return rows[:32]


def _families(thresholds: Sequence[Mapping[str, Any]], datasets: Sequence[str]) -> set[str]:
    return {score_match.base_name(str(n)) for n in [*datasets, *(t["dataset"] for t in thresholds)]}


def scores(
    result: Mapping[str, Any] | None,
    thresholds: Sequence[Mapping[str, Any]],
    datasets: Sequence[str] = (),
) -> tuple[list[dict[str, Any]], bool | None, list[str]]:
    """(scores with threshold/passed, all-passed (None without thresholds), missed messages).

    Thresholds are matched to the summary rows by ``score_match`` (exact, normalised, config
    name, group mean); ``datasets`` are the run's dataset names, the families that decide
    which subject rows a group averages. A group threshold adds a row of its own, naming the
    rows it averaged. A threshold that matches nothing, or ambiguously, is missed."""
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
    typed = [score_match.Row(r["dataset"], r["metric"], r["value"]) for r in rows]
    truncated = bool((result or {}).get("scoresTruncated"))
    families = _families(thresholds, datasets)
    missed: list[str] = []
    for t in thresholds:
        metric = str(t.get("metric") or "accuracy")
        m = score_match.match(str(t["dataset"]), metric, typed, families)
        if m.value is None:
            why = m.problem
            if truncated:
                why += f" (only the first {len(rows)} scores fit in the termination message)"
            missed.append(why)
            continue
        if m.averaged and truncated:
            missed.append(
                f"{t['dataset']}: cannot average its rows, only the first {len(rows)} scores "
                "fit in the termination message; threshold a single dataset instead"
            )
            continue
        minimum = float(t["min"])
        ok = m.value >= minimum
        if m.averaged:
            target: dict[str, Any] = {
                "dataset": str(t["dataset"])[:128],
                "metric": metric[:128],
                "value": round(m.value, 4),
                "averagedOver": [r.dataset[:128] for r in m.rows][:512],
            }
            rows.append(target)
        else:
            used = m.rows[0]
            target = next(
                r for r in rows if r["dataset"] == used.dataset and r["metric"] == used.metric
            )
        target["threshold"] = minimum
        target["passed"] = ok
        if not ok:
            missed.append(f"{score_match.describe(m)} < {minimum:g}")
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
