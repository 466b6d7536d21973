"""TrainJob: multi-node pretraining. Thin: the shared batch pass plus how outputs are named."""

from __future__ import annotations

import datetime as dt
from typing import Any

from .batch import KindHooks, reconcile, set_outputs
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
        # InternEvo writes only its own checkpoint format (no conversion to <output>/hf yet):
        # no model is claimed that is not there, and a FineTune on it says so
        defaults = {} if spec.framework == "internevo" else {"model": "hf"}
        set_outputs(status, result, spec, output_dir, defaults)
    return status


HOOKS = KindHooks(KIND, finish)


def reconcile_trainjob(ctx: Context, namespace: str, name: str) -> float | None:
    return reconcile(ctx, HOOKS, namespace, name)
