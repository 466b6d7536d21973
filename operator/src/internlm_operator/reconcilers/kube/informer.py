"""List-then-watch of one child kind, label-selected on the server, into the :class:`Store`.

kopf watches the operator's own kinds; the children (Jobs, pods, Deployments, ...) are watched
here instead because kopf cannot select by label on the server: it would stream every pod of
the cluster to the operator to drop all but ours. Each informer is one thread: a paginated
LIST (the store's contents from then on, marked synced), then a WATCH from its
``resourceVersion`` with bookmarks; a watch that ends is resumed from the last version seen, an
expired version (410) or any error starts over with a LIST after a capped backoff. Every change
calls ``on_change(kind, obj)``, which makes the owner due.

``metadata_only`` kinds are read as PartialObjectMetadata: the operator sees a ConfigMap's
labels and annotations (enough to know it is there and what it was applied from), never its
data.
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import logging
import random
import threading
from collections.abc import Callable, Collection, Iterator, Mapping
from typing import Any
from urllib.parse import urlencode

from ... import metrics
from .client import METADATA_ONLY, Kind, Kube, KubeError
from .store import Store

log = logging.getLogger("internlm_operator")

PAGE = 500
ChangeFn = Callable[[Kind, Mapping[str, Any]], None]


def in_scope(namespace: str, patterns: Collection[str]) -> bool:
    return not patterns or any(fnmatch.fnmatchcase(namespace, p) for p in patterns)


class Informer(threading.Thread):
    def __init__(
        self,
        kube: Kube,
        kind: Kind,
        store: Store,
        selector: str,
        on_change: ChangeFn,
        namespace: str | None = None,
        patterns: Collection[str] = (),
        metadata_only: bool = False,
        watch_timeout: int = 300,
        max_backoff: float = 30.0,
        on_synced: Callable[[Informer], None] | None = None,
    ) -> None:
        super().__init__(daemon=True, name=f"informer-{kind.plural}-{namespace or 'all'}")
        self.kube = kube
        self.kind = kind
        self.store = store
        self.selector = selector
        self.on_change = on_change
        self.namespace = namespace
        self.patterns = tuple(patterns)
        self.accept = METADATA_ONLY if metadata_only else "application/json"
        self.watch_timeout = watch_timeout
        self.max_backoff = max_backoff
        self.synced = threading.Event()
        self.on_synced = on_synced
        self._stop = threading.Event()
        self._response: Any = None

    @property
    def gk(self) -> tuple[str, str]:
        return (self.kind.api_version, self.kind.kind)

    def stop(self) -> None:
        self._stop.set()
        r = self._response
        if r is not None:
            # closing a stream another thread reads: best effort
            with contextlib.suppress(Exception):
                r.response.shutdown() if hasattr(r.response, "shutdown") else r.response.close()

    def run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                rv = self._list()
                failures = 0
                while not self._stop.is_set() and rv:
                    rv = self._watch(rv)
            except Exception as e:  # the API server gone, 410, a broken stream: list again
                if self._stop.is_set():
                    return
                failures += 1
                delay = min(self.max_backoff, 0.5 * 2 ** min(failures, 10))
                lvl = logging.DEBUG if failures == 1 else logging.WARNING
                log.log(
                    lvl,
                    "watch of %s ended (%s); listing again in %.1fs",
                    self.kind.plural,
                    e,
                    delay,
                )
                self._stop.wait(delay)

    # -- LIST --------------------------------------------------------------------------------
    def _list(self) -> str:
        items: list[dict[str, Any]] = []
        cont = ""
        while True:
            query = {"labelSelector": self.selector, "limit": PAGE}
            if cont:
                query["continue"] = cont
            metrics.API_REQUESTS.labels("list").inc()
            doc = self.kube.request(
                "GET", self.kind.path(self.namespace), query=query, accept=self._list_accept()
            )
            items.extend(self._scoped(doc.get("items") or []))
            cont = (doc.get("metadata") or {}).get("continue") or ""
            if not cont:
                rv = str((doc.get("metadata") or {}).get("resourceVersion") or "")
                break
        for name in self.store.replace(self.gk, items, self.namespace):
            self._changed_name(name, items)
        if not self.synced.is_set():
            self.synced.set()
            if self.on_synced is not None:
                self.on_synced(self)
        return rv

    def _list_accept(self) -> str:
        if self.accept == METADATA_ONLY:
            return (
                "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json"
            )
        return self.accept

    def _changed_name(self, name: tuple[str, str], items: list[dict[str, Any]]) -> None:
        for it in items:
            md = it.get("metadata") or {}
            if (md.get("namespace") or "", md.get("name")) == name:
                self.on_change(self.kind, it)
                return
        # gone while we were not watching: the owner is found from the name alone
        self.on_change(self.kind, {"metadata": {"namespace": name[0], "name": name[1]}})

    def _scoped(self, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if not self.patterns:
            return items
        return [
            i
            for i in items
            if in_scope((i.get("metadata") or {}).get("namespace", ""), self.patterns)
        ]

    # -- WATCH -------------------------------------------------------------------------------
    def _watch(self, rv: str) -> str:
        query = {
            "labelSelector": self.selector,
            "watch": "1",
            "resourceVersion": rv,
            "allowWatchBookmarks": "true",
            # client-go's spread: 1-2x the minimum, so the watches do not all end together
            "timeoutSeconds": int(self.watch_timeout * (1 + random.random())),
        }
        for event in self._stream(query):
            type_, obj = event.get("type"), event.get("object") or {}
            md = obj.get("metadata") or {}
            if type_ == "ERROR":
                code = obj.get("code")
                raise KubeError(int(code or 0), "WatchError", str(obj.get("message")), True)
            rv = str(md.get("resourceVersion") or rv)
            if type_ == "BOOKMARK":
                continue
            if not in_scope(md.get("namespace", ""), self.patterns):
                continue
            if type_ == "DELETED":
                changed = self.store.remove(self.gk, md.get("namespace", ""), md.get("name", ""))
            else:
                changed = self.store.upsert(self.gk, obj)
            if changed:
                self.on_change(self.kind, obj)
        return rv

    def _stream(self, query: dict[str, Any]) -> Iterator[dict[str, Any]]:
        api = self.kube.api
        path = f"{self.kind.path(self.namespace)}?{urlencode(query)}"
        headers = {"Accept": self.accept}
        _m, url, headers, _b, _pp = api.param_serialize(
            "GET", path, header_params=headers, auth_settings=["BearerToken"]
        )
        metrics.API_REQUESTS.labels("watch").inc()
        resp = api.call_api(
            "GET", url, header_params=headers, _request_timeout=(10, 2 * self.watch_timeout + 30)
        )
        self._response = resp
        try:
            if int(resp.status) >= 400:
                raise KubeError(int(resp.status), "WatchRefused", resp.response.data[:200], True)
            buf = b""
            for chunk in resp.response.stream(65536, decode_content=True):
                buf += chunk
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    if line.strip():
                        yield json.loads(line)
        finally:
            self._response = None
            resp.response.release_conn()
