"""TrainJob: multi-node pretraining. Thin: the shared batch pass plus how outputs are named."""

from __future__ import annotations

import datetime as dt
from typing import Any

from ..status import results
from .batch import KindHooks, reconcile, translate_for
from .controller import Context

KIND = "TrainJob"


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
        outs = results.outputs(result, output_dir, {"model": "hf"}, translate_for(spec))
        if outs:
            status["outputs"] = outs
    return status


HOOKS = KindHooks(KIND, finish)


def reconcile_trainjob(ctx: Context, namespace: str, name: str) -> None:
    reconcile(ctx, HOOKS, namespace, name)
