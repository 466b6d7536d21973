"""Pure helpers on the resource and child objects every kind's pass reads."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..api.v1alpha1 import API_VERSION
from ..builders import Owner
from .kube import KubeError

# What the API server answers when it will never take a child as built (an admission webhook,
# a policy, a schema the cluster enforces): a spec change, not a retry, fixes it.
REJECTED = (400, 403, 422)


def owner_of(obj: Mapping[str, Any]) -> Owner:
    """The owner identity of a resource, for its children."""
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
    """The resource without its status: what :func:`~..api.v1alpha1.parse` validates."""
    return {k: obj[k] for k in ("apiVersion", "kind", "metadata", "spec") if k in obj}


def owned_by(child: Mapping[str, Any] | None, obj: Mapping[str, Any]) -> bool:
    """Whether ``child`` is absent or controlled by ``obj`` (else another owner holds it)."""
    if child is None:
        return True
    refs = child.get("metadata", {}).get("ownerReferences") or []
    ctrl = next((r for r in refs if r.get("controller")), None)
    return bool(ctrl and ctrl.get("uid") == obj["metadata"]["uid"])


def rejected(err: KubeError) -> str | None:
    """The message for status when the API server refused a child for good, else None (a
    retry may help: conflicts, throttling, the API server gone)."""
    if err.transient or err.status not in REJECTED:
        return None
    return f"the API server refused a child ({err.status} {err.reason}): {err.message}"[:1024]
