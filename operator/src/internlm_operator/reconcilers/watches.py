"""Which children the operator watches, and the informers that watch them.

Every child carries ``app.kubernetes.io/managed-by=internlm-operator``; the API server sends
only those. Watching them (not re-reading them every pass) is what makes a quiet cluster cost
the same at 200 resources as at 2,000.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Collection
from dataclasses import dataclass

from ..api.labels import MANAGED_BY, MANAGED_BY_LABEL
from .kube import Kube, kind_of
from .kube.informer import ChangeFn, Informer
from .kube.store import GroupKind, Store

log = logging.getLogger("internlm_operator")
SELECTOR = f"{MANAGED_BY_LABEL}={MANAGED_BY}"
_EXACT = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


@dataclass(frozen=True)
class Watched:
    api_version: str
    kind: str
    metadata_only: bool  # the passes need to know it is there (and its hash), not its content

    @property
    def gk(self) -> GroupKind:
        return (self.api_version, self.kind)


CHILDREN = (
    Watched("batch/v1", "Job", False),
    Watched("v1", "Pod", False),
    Watched("apps/v1", "Deployment", False),
    Watched("v1", "Service", True),
    Watched("v1", "ConfigMap", True),
    Watched("autoscaling/v2", "HorizontalPodAutoscaler", True),
    Watched("policy/v1", "PodDisruptionBudget", True),
)


def informers(
    kube: Kube, store: Store, on_change: ChangeFn, namespaces: Collection[str]
) -> list[Informer]:
    """One informer per child kind and namespace when the namespaces are exact names (what a
    namespaced Role allows), else one per kind for the cluster, filtered by the patterns."""
    exact = bool(namespaces) and all(_EXACT.match(n) for n in namespaces)
    scopes: list[str | None] = list(namespaces) if exact else [None]
    patterns = () if exact else tuple(namespaces)
    out: list[Informer] = []

    def synced(inf: Informer) -> None:
        # A kind is read from the store once every namespace's first list is in.
        if all(i.synced.is_set() for i in out if i.gk == inf.gk):
            store.mark_synced(inf.gk)

    for w in CHILDREN:
        for ns in scopes:
            out.append(
                Informer(
                    kube,
                    kind_of(w.api_version, w.kind),
                    store,
                    SELECTOR,
                    on_change,
                    namespace=ns,
                    patterns=patterns,
                    metadata_only=w.metadata_only,
                    on_synced=synced,
                )
            )
    return out


def wait_synced(infs: Collection[Informer], timeout: float) -> list[Informer]:
    """Wait for every informer's first LIST; returns those still not synced (their kind is then
    read from the API until they are)."""
    end = time.monotonic() + timeout
    for inf in infs:
        inf.synced.wait(max(0.0, end - time.monotonic()))
    late = [i for i in infs if not i.synced.is_set()]
    for i in late:
        log.warning(
            "%s: no first list after %.0fs (RBAC list/watch missing?); read from the API meanwhile",
            i.name,
            timeout,
        )
    return late
