"""The reconcile pass shared by ModelServe and Agent (long-running kinds).

Each pass: read the resource and its Deployment, decide what may be applied (dependencies,
gate, bound ModelServe), apply the children with server-side apply, then compute the whole
status with :mod:`..status.serving` and write it in one patch (``observedGeneration`` with it).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..api.v1alpha1 import API_VERSION
from ..builders import Owner
from ..builders.longrunning import COMPONENT
from ..status import serving
from ..status.serving import Blocker
from .controller import Context
from .kube import record_event

log = logging.getLogger("internlm_operator")


def owner_of(obj: Mapping[str, Any]) -> Owner:
    md = obj["metadata"]
    return Owner(
        API_VERSION,
        obj["kind"],
        md["namespace"],
        md["name"],
        md["uid"],
        int(md.get("generation") or 1),
        dict(md.get("labels") or {}),
    )


def body(obj: Mapping[str, Any]) -> dict[str, Any]:
    return {k: obj[k] for k in ("apiVersion", "kind", "metadata", "spec") if k in obj}


def owned_by(child: Mapping[str, Any] | None, obj: Mapping[str, Any]) -> bool:
    if child is None:
        return True
    refs = child.get("metadata", {}).get("ownerReferences") or []
    ctrl = next((r for r in refs if r.get("controller")), None)
    return bool(ctrl and ctrl.get("uid") == obj["metadata"]["uid"])


def server_pods(ctx: Context, owner: Owner) -> list[dict[str, Any]]:
    """Pods of the resource's Deployment (every ReplicaSet generation, failed ones included)."""
    return ctx.kube.list(
        "v1",
        "Pod",
        owner.namespace,
        {
            "app.kubernetes.io/instance": owner.name,
            "app.kubernetes.io/name": owner.kind.lower(),
            "app.kubernetes.io/component": COMPONENT,
        },
    )


def merge_lineage(*chains: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Concatenate lineage chains, keeping the first entry per kind/name."""
    seen: set[str] = set()
    out: list[dict[str, Any]] = []
    for chain in chains:
        for e in chain:
            k = f"{e.get('kind')}/{e.get('name')}"
            if k not in seen:
                seen.add(k)
                out.append(e)
    return out[:32]


@dataclass
class Pass:
    """What one pass found; filled in by the kind module, finished by :func:`finish`."""

    ctx: Context
    obj: dict[str, Any]
    owner: Owner
    deployment_name: str
    now: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))
    blocker: Blocker | None = None
    fields: dict[str, Any] = field(default_factory=dict)

    @property
    def prev(self) -> dict[str, Any]:
        return dict(self.obj.get("status") or {})

    @property
    def generation(self) -> int:
        return int(self.obj["metadata"].get("generation") or 1)


def finish(
    p: Pass,
    desired_replicas: int,
    noun: str,
    after: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Observe the Deployment and pods, compute the status, write it, record Events."""
    kube = p.ctx.kube
    ns = p.owner.namespace
    deploy = kube.get("apps/v1", "Deployment", ns, p.deployment_name)
    if deploy is not None and not owned_by(deploy, p.obj):
        deploy = None
        p.blocker = Blocker(
            "invalid",
            "ChildConflict",
            f"Deployment {p.deployment_name} exists and is not owned by this {p.owner.kind}",
        )
    pods = server_pods(p.ctx, p.owner) if deploy is not None else []
    decision = serving.decide(
        serving.ServingObservation(
            generation=p.generation,
            status=p.prev,
            deployment=deploy,
            pods=pods,
            now=p.now,
            desired_replicas=desired_replicas,
            blocker=p.blocker,
            fields=p.fields,
            noun=noun,
        )
    )
    status = decision.status
    status["observedGeneration"] = p.generation
    status.pop("kopf", None)
    if after is not None:
        after(status)
    if status != p.prev:
        kube.patch_status(API_VERSION, p.owner.kind, ns, p.owner.name, _nulls(p.prev, status))
        for type_, reason, message in decision.events:
            record_event(kube, p.obj, type_, reason, message)
    return status


def _nulls(prev: Mapping[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """A merge patch that also removes the top-level fields no longer present."""
    patch = dict(new)
    for k in prev:
        if k not in new:
            patch[k] = None
    return patch


# Which kinds' changes a dependent kind should see at once (not only on the resync timer):
# an upstream of a ModelServe (its model's producer, its gate) or the ModelServe of an Agent.
DEPENDENTS = {
    "TrainJob": ("ModelServe",),
    "FineTune": ("ModelServe",),
    "EvalRun": ("ModelServe",),
    "ModelServe": ("Agent",),
}


def register_dependents(registry: Any, controller: Any) -> None:
    """kopf handlers that make the dependents in the same namespace due now when an upstream
    changes (status included), so a ModelServe starts as soon as its gate passes and an Agent
    binds or degrades as soon as its ModelServe changes. Dependents whose status would not
    change write nothing, so this never loops."""
    import kopf

    from ..api.v1alpha1 import GROUP, KINDS, VERSION

    for upstream, kinds in DEPENDENTS.items():
        if upstream not in controller.reconcilers:
            continue

        def on_upstream(body: Any, _kinds: tuple[str, ...] = kinds, **_: Any) -> None:
            ns = body.get("metadata", {}).get("namespace")
            for key in controller.known():
                if key[0] in _kinds and key[1] == ns:
                    controller.touch(key)

        plural = KINDS[upstream].plural
        kopf.on.event(GROUP, VERSION, plural, registry=registry, id=f"{plural}-dependents")(
            on_upstream
        )
