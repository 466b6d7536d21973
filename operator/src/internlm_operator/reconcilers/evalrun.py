"""EvalRun: OpenCompass. Thin: the shared batch pass plus scores and the Passed condition."""

from __future__ import annotations

import datetime as dt
from typing import Any

from ..status import results
from ..status.batch import build_status
from ..status.conditions import FALSE, TRUE, Cond, now_rfc3339
from .batch import KindHooks, reconcile, set_outputs
from .controller import Context

KIND = "EvalRun"


def finish(
    status: dict[str, Any],
    result: dict[str, Any] | None,
    spec: Any,
    output_dir: str,
    now: dt.datetime,
    generation: int,
    prev: dict[str, Any],
) -> dict[str, Any]:
    ts = now_rfc3339(now)
    thresholds = [t.to_dict() for t in spec.thresholds or []]
    if result and result.get("scores") is not None:
        listed = [*(spec.datasets or []), *(c.name for c in spec.custom_datasets or [])]
        rows, passed, missed = results.scores(result, thresholds, listed)
        status["scores"] = rows
    else:
        rows, passed, missed = [], (None if not thresholds else False), ["no scores reported"]
    if status.get("phase") == "Succeeded":
        if spec.output is not None:
            set_outputs(status, result, spec, output_dir, {"results": "results"})
        if passed is False:
            msg = "thresholds not met: " + "; ".join(missed)
            fail = [
                Cond("Ready", FALSE, "ThresholdsNotMet", msg),
                Cond("Reconciling", FALSE, "ThresholdsNotMet", msg),
                Cond("Stalled", TRUE, "ThresholdsNotMet", msg),
                Cond("Complete", FALSE, "NotComplete", ""),
                Cond("Failed", TRUE, "ThresholdsNotMet", msg),
            ]
            mine = {c.type for c in fail}
            keep = [
                Cond(c["type"], c["status"], c["reason"], c.get("message", ""))
                for c in status["conditions"]
                if c["type"] not in mine
            ]
            status = build_status(
                {**status, "conditions": prev.get("conditions")},
                generation,
                ts,
                "Failed",
                fail + keep,
            )
    status["passed"] = (
        passed if passed is not None else (None if status.get("phase") != "Succeeded" else True)
    )
    if status["passed"] is None:
        status.pop("passed")
    msg = (
        "every threshold met"
        if passed
        else ("; ".join(missed) if passed is False else "no thresholds")
    )
    return results.with_passed(
        status, status.get("passed"), msg, generation, ts, prev.get("conditions")
    )


HOOKS = KindHooks(KIND, finish)


def reconcile_evalrun(ctx: Context, namespace: str, name: str) -> float | None:
    return reconcile(ctx, HOOKS, namespace, name)
