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

MANAGED = {"app.kubernetes.io/managed-by": "internlm-operator"}


def register(registry: kopf.OperatorRegistry, controller: Controller) -> None:
    for kind in controller.reconcilers:
        plural = KINDS[kind].plural

        def on_event(event: Any, body: Any, _kind: str = kind, **_: Any) -> None:
            controller.on_event(_kind, event.get("type"), body)

        kopf.on.event(GROUP, VERSION, plural, registry=registry, id=f"{plural}-event")(on_event)

    def on_job(event: Any, body: Any, **_: Any) -> None:
        controller.on_child_event(event.get("type"), body)

    kopf.on.event("batch", "v1", "jobs", labels=MANAGED, registry=registry, id="jobs-event")(on_job)
    # ModelServe / Agent: a Deployment's status changes (pods ready, lost, replaced) re-reconcile
    # its owner at once, so Degraded and recovery show without waiting for the resync.
    kopf.on.event(
        "apps", "v1", "deployments", labels=MANAGED, registry=registry, id="deployments-event"
    )(on_job)
    register_dependents(registry, controller)
    register_hubcache(registry, controller)


__all__ = ["RECONCILERS", "Context", "Controller", "PermanentError", "register"]
