"""Thin kopf handlers, one module per kind; ``kube/`` is the only code that talks to the API.

:func:`register` wires a :class:`~.controller.Controller` into a kopf registry. Every kind
plugs in the same way: a module with ``reconcile_<kind>(ctx, namespace, name)`` and one line in
:data:`~.kinds.REGISTRY`; :data:`RECONCILERS` is derived from it.
"""

from __future__ import annotations

import importlib
from typing import Any, cast

import kopf

from ..api.v1alpha1 import GROUP, VERSION
from .controller import Context, Controller, PermanentError, ReconcileFn
from .hubcache import register as register_hubcache
from .kinds import REGISTRY
from .serving import register_dependents


def _reconciler(module: str, function: str) -> ReconcileFn:
    return cast(ReconcileFn, getattr(importlib.import_module(f".{module}", __name__), function))


RECONCILERS: dict[str, ReconcileFn] = {
    k: _reconciler(r.module, r.function) for k, r in REGISTRY.items()
}


def register(registry: kopf.OperatorRegistry, controller: Controller) -> None:
    """kopf watches the five kinds (the children are watched by the informers, watches.py):
    each event goes into the store and makes its resource due."""
    for kind in controller.reconcilers:
        plural = REGISTRY[kind].plural

        def on_event(event: Any, _kind: str = kind, **_: Any) -> None:
            controller.on_event(_kind, event.get("type"), event.get("object") or {})

        kopf.on.event(GROUP, VERSION, plural, registry=registry, id=f"{plural}-event")(on_event)
    register_dependents(registry, controller)
    register_hubcache(registry, controller)


__all__ = ["RECONCILERS", "Context", "Controller", "PermanentError", "register"]
