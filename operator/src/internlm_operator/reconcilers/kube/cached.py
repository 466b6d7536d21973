"""The :class:`Kube` the passes use: reads from the watch-fed :class:`Store`, writes only what
changed, every request under the client-side rate limit.

- ``get``/``list`` of a watched kind come from the store once its first LIST is in; a ``get``
  the store cannot answer falls back to the API (a child someone else created under our name
  carries no label of ours, so only the API can say it is there).
- ``apply`` stamps the manifest with a hash of itself (``internlm.io/applied-hash``) and sends
  nothing when the stored child already carries that hash: a pass that changes nothing writes
  nothing. A child edited by hand keeps its hash and is not put back until its desired state
  changes; one deleted by hand is recreated by the pass its deletion triggers.
- ``delete`` of a watched kind the store does not hold sends nothing.
- Every write's answer goes into the store, so the next pass sees it at once.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Mapping
from typing import Any

from ... import metrics
from .client import Kube
from .ratelimit import TokenBucket
from .store import APPLIED_HASH, GroupKind, Store

__all__ = ["APPLIED_HASH", "CachedKube", "applied_hash", "stamped"]


def applied_hash(manifest: Mapping[str, Any]) -> str:
    doc = json.dumps(manifest, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(doc.encode()).hexdigest()[:20]


def stamped(manifest: Mapping[str, Any]) -> tuple[dict[str, Any], str]:
    out = dict(manifest)
    md = dict(out.get("metadata") or {})
    ann = {k: v for k, v in (md.get("annotations") or {}).items() if k != APPLIED_HASH}
    md["annotations"] = ann
    out["metadata"] = md
    h = applied_hash(out)
    md["annotations"] = {**ann, APPLIED_HASH: h}
    return out, h


def _verb(method: str, path: str, query: Mapping[str, Any] | None) -> str:
    if method == "GET":
        return "watch" if query and query.get("watch") else "get"
    return method.lower()


class CachedKube(Kube):
    def __init__(
        self,
        api_client: Any,
        store: Store,
        watched: Mapping[GroupKind, bool],
        limiter: TokenBucket | None = None,
        timeout: float = 30.0,
    ) -> None:
        """``watched``: the kinds the store holds -> whether only their metadata."""
        super().__init__(api_client, timeout)
        self.store = store
        self.watched = dict(watched)
        self.limiter = limiter

    def _serves(self, gk: GroupKind, full: bool = True) -> bool:
        return gk in self.watched and (not full or not self.watched[gk]) and self.store.synced(gk)

    def _keep(self, gk: GroupKind, obj: Any) -> None:
        if gk not in self.watched or not isinstance(obj, Mapping) or "metadata" not in obj:
            return
        if self.watched[gk]:  # metadata only: a ConfigMap's data never stays in the operator
            obj = {k: obj[k] for k in ("apiVersion", "kind", "metadata") if k in obj}
        self.store.upsert(gk, obj)

    # -- every request ---------------------------------------------------------------------
    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        query: dict[str, Any] | None = None,
        content_type: str = "application/json",
        accept: str = "application/json",
    ) -> Any:
        if self.limiter is not None:
            self.limiter.wait()
        metrics.API_REQUESTS.labels(_verb(method, path, query)).inc()
        return super().request(method, path, body, query, content_type, accept)

    # -- reads -----------------------------------------------------------------------------
    def get(self, api_version: str, kind: str, namespace: str | None, name: str) -> Any:
        gk = (api_version, kind)
        if self._serves(gk):
            obj = self.store.get(gk, namespace, name)
            if obj is not None:
                return obj
        obj = super().get(api_version, kind, namespace, name)
        if obj is not None and self._serves(gk):
            self._keep(gk, obj)
        return obj

    def list(
        self,
        api_version: str,
        kind: str,
        namespace: str | None,
        labels: dict[str, str] | None = None,
        fields: dict[str, str] | None = None,
    ) -> list[dict[str, Any]]:
        gk = (api_version, kind)
        if not fields and self._serves(gk):
            return self.store.list(gk, namespace, labels)
        return super().list(api_version, kind, namespace, labels, fields)

    # -- writes ----------------------------------------------------------------------------
    def apply(self, manifest: dict[str, Any]) -> Any:
        gk = (manifest["apiVersion"], manifest["kind"])
        md = manifest["metadata"]
        if gk not in self.watched:
            return super().apply(manifest)
        out, h = stamped(manifest)
        ns, name = md.get("namespace"), md["name"]
        if self._serves(gk, full=False) and self.store.applied(gk, ns, name) == h:
            return self.store.get(gk, ns, name)
        result = super().apply(out)
        self._keep(gk, result)
        return result

    def merge_patch(
        self,
        api_version: str,
        kind: str,
        namespace: str | None,
        name: str,
        patch: Any,
        sub: str | None = None,
    ) -> Any:
        result = super().merge_patch(api_version, kind, namespace, name, patch, sub)
        self._keep((api_version, kind), result)
        return result

    def create(self, manifest: dict[str, Any]) -> Any:
        result = super().create(manifest)
        self._keep((manifest["apiVersion"], manifest["kind"]), result)
        return result

    def delete(
        self,
        api_version: str,
        kind: str,
        namespace: str | None,
        name: str,
        propagation: str = "Background",
        uid: str | None = None,
    ) -> bool:
        gk = (api_version, kind)
        if self._serves(gk, full=False) and not self.store.has(gk, namespace, name):
            return False
        gone = super().delete(api_version, kind, namespace, name, propagation, uid)
        if gk in self.watched:
            # What the server now shows (until the watch says more): the object is being
            # deleted, so the next pass does not act on it as if it were live.
            live = self.store.get(gk, namespace, name)
            if live is not None:
                stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
                live["metadata"].setdefault("deletionTimestamp", stamp)
                self.store.remove(gk, namespace or "", name)
                live["metadata"]["resourceVersion"] = None  # any watch event replaces it
                self.store.upsert(gk, live)
        return gone
