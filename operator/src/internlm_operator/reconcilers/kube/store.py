"""What the watches have seen: one in-memory copy of every object the operator observes.

Filled by the informers (children, label-selected) and by kopf's watch of the operator's own
kinds, and written through by the operator's own writes (the object an API call returns), so
a pass right after a write sees it without waiting for the watch to echo it. An object only
replaces the stored one when its ``resourceVersion`` is newer: a late watch event cannot undo
a write-through. ``managedFields`` are dropped (they are most of an object's size and no pass
reads them).

Each object is kept as compressed JSON, its version and labels beside it: a Job or a pod is
about 50 KB as Python dicts and 2 KB like this, which is what keeps 5,000 resources and their
children under the memory goal. Reads decode a fresh copy (a pass may change what it got
without changing the store); a pass reads a few objects, tens of microseconds each.
"""

from __future__ import annotations

import builtins
import json
import threading
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

GroupKind = tuple[str, str]  # apiVersion, kind
Name = tuple[str, str]  # namespace, name

APPLIED_HASH = "internlm.io/applied-hash"

# Labels the passes select children by: lists on them are index lookups, not scans.
INDEXED = (
    "batch.kubernetes.io/job-name",
    "app.kubernetes.io/instance",
    "internlm.io/resource",
)


def version(obj: Mapping[str, Any]) -> int | None:
    rv = (obj.get("metadata") or {}).get("resourceVersion")
    try:
        return int(str(rv))
    except (TypeError, ValueError):
        return None


def newer(new: Mapping[str, Any], old: Mapping[str, Any] | None) -> bool:
    """Whether ``new`` should replace ``old`` (unparsable versions: always)."""
    if old is None:
        return True
    a, b = version(new), version(old)
    return a is None or b is None or a > b


def trimmed(obj: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(obj)
    md = dict(out.get("metadata") or {})
    md.pop("managedFields", None)
    out["metadata"] = md
    return out


@dataclass(frozen=True, slots=True)
class Entry:
    version: int | None
    labels: Mapping[str, str]
    applied: str | None  # the hash of the manifest the operator last applied (kube/cached.py)
    blob: bytes

    @classmethod
    def of(cls, obj: Mapping[str, Any]) -> Entry:
        t = trimmed(obj)
        md = t["metadata"]
        raw = json.dumps(t, separators=(",", ":")).encode()
        applied = (md.get("annotations") or {}).get(APPLIED_HASH)
        return cls(version(t), dict(md.get("labels") or {}), applied, zlib.compress(raw, 1))

    def decode(self) -> dict[str, Any]:
        out: dict[str, Any] = json.loads(zlib.decompress(self.blob))
        return out


def _newer(obj: Mapping[str, Any], old: Entry | None) -> bool:
    if old is None:
        return True
    a = version(obj)
    return a is None or old.version is None or a > old.version


class Store:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._objs: dict[GroupKind, dict[Name, Entry]] = {}
        self._index: dict[GroupKind, dict[tuple[str, str], set[Name]]] = {}
        self._synced: set[GroupKind] = set()

    # -- writes (informers, write-through) ---------------------------------------------------
    def upsert(self, gk: GroupKind, obj: Mapping[str, Any]) -> bool:
        """Store ``obj`` when it is newer; returns whether anything changed."""
        md = obj.get("metadata") or {}
        key: Name = (md.get("namespace") or "", md.get("name") or "")
        with self._lock:
            objs = self._objs.setdefault(gk, {})
            old = objs.get(key)
            if not _newer(obj, old):
                return False
            new = Entry.of(obj)
            if old is not None:
                self._unindex(gk, key, old)
            objs[key] = new
            self._reindex(gk, key, new)
            return True

    def remove(self, gk: GroupKind, namespace: str, name: str) -> bool:
        key: Name = (namespace or "", name)
        with self._lock:
            old = self._objs.get(gk, {}).pop(key, None)
            if old is None:
                return False
            self._unindex(gk, key, old)
            return True

    def replace(
        self, gk: GroupKind, items: Iterable[Mapping[str, Any]], namespace: str | None = None
    ) -> list[Name]:
        """A fresh list (of one namespace, or all): what is stored there becomes ``items``;
        returns the names that changed or went away (their owners are due again)."""
        fresh: dict[Name, Mapping[str, Any]] = {}
        for it in items:
            md = it.get("metadata") or {}
            fresh[(md.get("namespace") or "", md.get("name") or "")] = it
        changed: list[Name] = []
        with self._lock:
            objs = self._objs.setdefault(gk, {})
            stale = [k for k in objs if k not in fresh and namespace in (None, k[0])]
            for key in stale:
                self._unindex(gk, key, objs.pop(key))
                changed.append(key)
            for key, it in fresh.items():
                old = objs.get(key)
                if old is not None and old.version == version(it):
                    continue
                if old is not None:
                    self._unindex(gk, key, old)
                objs[key] = Entry.of(it)
                self._reindex(gk, key, objs[key])
                changed.append(key)
        return changed

    def mark_synced(self, gk: GroupKind) -> None:
        with self._lock:
            self._synced.add(gk)

    # -- reads -------------------------------------------------------------------------------
    def synced(self, gk: GroupKind) -> bool:
        with self._lock:
            return gk in self._synced

    def get(self, gk: GroupKind, namespace: str | None, name: str) -> dict[str, Any] | None:
        with self._lock:
            e = self._objs.get(gk, {}).get((namespace or "", name))
        return e.decode() if e is not None else None

    def has(self, gk: GroupKind, namespace: str | None, name: str) -> bool:
        with self._lock:
            return (namespace or "", name) in self._objs.get(gk, {})

    def applied(self, gk: GroupKind, namespace: str | None, name: str) -> str | None:
        """The applied-hash annotation of the stored object (None: absent, or none)."""
        with self._lock:
            e = self._objs.get(gk, {}).get((namespace or "", name))
            return e.applied if e is not None else None

    def list(
        self, gk: GroupKind, namespace: str | None, labels: Mapping[str, str] | None = None
    ) -> list[dict[str, Any]]:
        labels = dict(labels or {})
        with self._lock:
            objs = self._objs.get(gk, {})
            keys: Iterable[Name] = objs.keys()
            for label in INDEXED:
                if label in labels:
                    keys = self._index.get(gk, {}).get((label, labels[label]), set())
                    break
            found = []
            for key in keys:
                if namespace is not None and key[0] != namespace:
                    continue
                e = objs[key]
                if all(e.labels.get(k) == v for k, v in labels.items()):
                    found.append(e)
        return [e.decode() for e in found]

    def names(self, gk: GroupKind, namespace: str | None = None) -> builtins.list[Name]:
        with self._lock:
            return [k for k in self._objs.get(gk, {}) if namespace is None or k[0] == namespace]

    def count(self) -> int:
        with self._lock:
            return sum(len(v) for v in self._objs.values())

    # -- the label index ---------------------------------------------------------------------
    def _reindex(self, gk: GroupKind, key: Name, e: Entry) -> None:
        labels = e.labels
        idx = self._index.setdefault(gk, {})
        for label in INDEXED:
            if label in labels:
                idx.setdefault((label, labels[label]), set()).add(key)

    def _unindex(self, gk: GroupKind, key: Name, e: Entry) -> None:
        labels = e.labels
        idx = self._index.get(gk, {})
        for label in INDEXED:
            if label in labels:
                s = idx.get((label, labels[label]))
                if s is not None:
                    s.discard(key)
                    if not s:
                        del idx[(label, labels[label])]
