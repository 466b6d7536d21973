"""FineTune: XTuner SFT. Thin: the shared batch pass plus adapter / merged outputs."""

from __future__ import annotations

import datetime as dt
from typing import Any

from .batch import KindHooks, reconcile, set_outputs
from .controller import Context

KIND = "FineTune"


def finish(
    status: dict[str, Any],
    result: dict[str, Any] | None,
    spec: Any,
    output_dir: str,
    now: dt.datetime,
    generation: int,
    prev: dict[str, Any],
) -> dict[str, Any]:
    if status.get("phase") == "Succeeded":
        produce = "merged" if spec.method == "full" else spec.produce
        defaults = {}
        if produce in ("adapter", "both"):
            defaults["adapter"] = "adapter"
        if produce in ("merged", "both"):
            defaults["merged"] = "merged"
        set_outputs(status, result, spec, output_dir, defaults)
    return status


HOOKS = KindHooks(KIND, finish)


def reconcile_finetune(ctx: Context, namespace: str, name: str) -> float | None:
    return reconcile(ctx, HOOKS, namespace, name)
