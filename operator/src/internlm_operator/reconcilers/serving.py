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
from typing import Any, Protocol

from ..api.v1alpha1 import API_VERSION
from ..builders import Owner
from ..builders.longrunning import COMPONENT, selector_string
from ..status import serving
from ..status.serving import Blocker
from ..status.stuck import missing, refs_of
from .controller import Context
from .kinds import DEPENDENTS
from .kube import KubeError, record_event
from .objects import owned_by, owner_of, rejected
from .stuck import lookup

log = logging.getLogger("internlm_operator")


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


def begin(ctx: Context, kind: str, namespace: str, name: str) -> Pass | None:
    """A pass over the resource; None when it is gone or being deleted."""
    obj = ctx.kube.get(API_VERSION, kind, namespace, name)
    if obj is None or obj["metadata"].get("deletionTimestamp"):
        return None
    owner = owner_of(obj)
    p = Pass(ctx, obj, owner, deployment_name=owner.base_name)
    p.fields["selector"] = selector_string(owner)
    return p


class Children(Protocol):
    """The built children of a long-running kind."""

    def present(self) -> list[dict[str, Any]]: ...

    def absent(self) -> list[tuple[str, str, str]]: ...


def check_refs(p: Pass, deploy: Mapping[str, Any] | None, children: Children | None) -> None:
    """Before the Deployment is created: block on a PVC, Secret or ConfigMap its pods need
    that does not exist (``missing``, Stalled, the status names it)."""
    if deploy is not None or children is None or p.blocker is not None:
        return
    manifests = children.present()
    own = [m["metadata"]["name"] for m in manifests if m["kind"] == "ConfigMap"]
    pod_spec = next(
        (m["spec"]["template"]["spec"] for m in manifests if m["kind"] == "Deployment"), None
    )
    if pod_spec is None:
        return
    gone = missing(lookup(p.ctx.kube, p.owner.namespace, refs_of(pod_spec, own)))
    if gone is not None:
        p.blocker = Blocker("missing", gone.reason, gone.message)


def apply_or_scale(
    p: Pass, deploy: Mapping[str, Any] | None, children: Children | None, desired: int
) -> bool:
    """Apply ``children`` (and delete the optional ones that must not exist) when nothing
    blocks them; returns whether it did. Held back (gate, dependency, bad spec), keep serving
    what runs, at the wanted scale. A Deployment someone else owns is left alone
    (:func:`finish` reports the conflict)."""
    kube = p.ctx.kube
    if deploy is not None and not owned_by(deploy, p.obj):
        return False
    if children is not None and p.blocker is None:
        try:
            for m in children.present():
                kube.apply(m)
                p.ctx.checkpoint(m["kind"])
        except KubeError as e:
            why = rejected(e)
            if why is None:
                raise
            p.blocker = Blocker("invalid", "ChildRejected", why)
            return False
        for api_version, kind, child in children.absent():
            kube.delete(api_version, kind, p.owner.namespace, child)
        return True
    if deploy is not None and int(deploy.get("spec", {}).get("replicas") or 0) != desired:
        kube.merge_patch(
            "apps/v1",
            "Deployment",
            p.owner.namespace,
            p.deployment_name,
            {"spec": {"replicas": desired}},
        )
    return False


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
        # Events before the patch (as in batch.py): a kill in between neither loses one nor,
        # their names being derived from this resource version, records one twice.
        for type_, reason, message in decision.events:
            record_event(kube, p.obj, type_, reason, message)
        kube.patch_status(API_VERSION, p.owner.kind, ns, p.owner.name, _nulls(p.prev, status))
    return status


def _nulls(prev: Mapping[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """A merge patch that also removes the top-level fields no longer present."""
    patch = dict(new)
    for k in prev:
        if k not in new:
            patch[k] = None
    return patch


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
