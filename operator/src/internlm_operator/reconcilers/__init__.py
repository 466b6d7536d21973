"""Thin kopf handlers, one module per kind; ``kube/`` is the only code that talks to the API.

:func:`register` wires a :class:`~.controller.Controller` into a kopf registry. ModelServe and
Agent plug in the same way: a module with ``reconcile_<kind>(ctx, namespace, name)`` and one line
in :data:`RECONCILERS`.
"""

from __future__ import annotations

from typing import Any

import kopf

from ..api.v1alpha1 import GROUP, KINDS, VERSION
from .agent import reconcile_agent
from .controller import Context, Controller, PermanentError, ReconcileFn
from .evalrun import reconcile_evalrun
from .finetune import reconcile_finetune
from .hubcache import register as register_hubcache
from .modelserve import reconcile_modelserve
from .serving import register_dependents
from .trainjob import reconcile_trainjob

RECONCILERS: dict[str, ReconcileFn] = {
    "TrainJob": reconcile_trainjob,
    "FineTune": reconcile_finetune,
    "EvalRun": reconcile_evalrun,
    "ModelServe": reconcile_modelserve,
    "Agent": reconcile_agent,
}


def register(registry: kopf.OperatorRegistry, controller: Controller) -> None:
    """kopf watches the five kinds (the children are watched by the informers, watches.py):
    each event goes into the store and makes its resource due."""
    for kind in controller.reconcilers:
        plural = KINDS[kind].plural

        def on_event(event: Any, _kind: str = kind, **_: Any) -> None:
            controller.on_event(_kind, event.get("type"), event.get("object") or {})

        kopf.on.event(GROUP, VERSION, plural, registry=registry, id=f"{plural}-event")(on_event)
    register_dependents(registry, controller)
    register_hubcache(registry, controller)


__all__ = ["RECONCILERS", "Context", "Controller", "PermanentError", "register"]
