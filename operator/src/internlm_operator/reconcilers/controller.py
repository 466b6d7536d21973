"""The reconcile machinery shared by every kind: watch events in, passes out of a work queue.

kopf watches the five kinds and the informers (``kube/informer.py``) the children; both only
put what they saw in the store and the key of the resource it concerns in the work queue
(``workqueue.py``: one pass per resource at a time, backoff with jitter on failure). A fixed
pool of worker threads runs the passes, which read from the store (``kube/cached.py``), so a
pass over a resource where nothing changed sends no request at all. No kopf timers or daemons
are used: they would put a finalizer on every resource and block its deletion whenever the
operator is down.

Requeue contract (keep it when rewriting the core): a reconcile function returns ``None`` or a
number of seconds. ``None``: the next pass is due after ``resync_seconds`` (or sooner, on a
watch event). A number ``n >= 0``: due after ``min(resync_seconds, n)``, for work that becomes
due at a known time (a gang restart waiting out ``runPolicy.restartDelay``). Negative or NaN
counts as 0. A pass that raises is retried with backoff as before; its return value is moot.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import pydantic

from .. import metrics
from ..api.labels import KIND_LABEL, RESOURCE_LABEL
from ..api.v1alpha1 import API_VERSION
from ..config import OperatorConfig
from ..health import Health
from ..runtimes import InvalidSpec
from ..status.conditions import TRUE, is_true, transitions
from ..status.stuck import REASONS as STUCK_REASONS
from .kube import Kube, KubeError, record_event
from .kube.informer import Informer
from .kube.store import Store
from .progress import ProgressPoller
from .watches import wait_synced
from .workqueue import Backoff, WorkQueue

log = logging.getLogger("internlm_operator")

Key = tuple[str, str, str]  # kind, namespace, name
# (ctx, namespace, name) -> None, or seconds until the next pass is due (the requeue contract)
ReconcileFn = Callable[["Context", str, str], float | None]

EVENT_TYPES = {
    "Created",
    "Running",
    "Restarting",
    "Suspended",
    "Complete",
    "Failed",
    "Stalled",
    "Passed",
    "Progressing",
    "Degraded",
    "Available",
}
WARNING_TYPES = {"Failed", "Stalled", "Restarting", "Degraded"}


class PermanentError(Exception):
    """A problem only a change to the resource can fix; reported, never retried quickly."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass
class Context:
    """Everything a reconcile function needs: config, API access, and the fault hook tests use
    to kill a pass half-way."""

    config: OperatorConfig
    kube: Kube
    fault: Callable[[str], None] | None = None
    progress: ProgressPoller | None = None

    def checkpoint(self, where: str) -> None:
        if self.fault is not None:
            self.fault(where)

    def events_for(
        self, obj: dict[str, Any], old: list[dict[str, Any]] | None, new: list[dict[str, Any]]
    ) -> None:
        """Record an Event for every condition transition a user wants to see."""
        for c in transitions(old, new):
            wanted = c["type"] in EVENT_TYPES and (c["status"] == TRUE or c["type"] == "Passed")
            wanted = wanted or (c["type"] == "Ready" and c["reason"] == "WaitingForDependency")
            # Why the pods do not run (unschedulable, quota, ...); a stalled one already has
            # its Event from the Stalled condition.
            stuck = c["type"] == "Ready" and c["reason"] in STUCK_REASONS
            if stuck and not is_true(new, "Stalled"):
                wanted = True
            if not wanted:
                continue
            warn = c["type"] in WARNING_TYPES or (c["type"] == "Passed" and c["status"] != TRUE)
            warn = warn or stuck
            msg = c.get("message") or f"{c['type']} is {c['status']}"
            record_event(self.kube, obj, "Warning" if warn else "Normal", c["reason"], msg)


class Controller:
    """Passes come from one work queue; kopf's handlers and the informers only add to it.

    A key is due again after each pass (the requeue contract: the resync, or sooner), after
    its backoff when a pass failed, and at once when a watch event shows its resource or one
    of its children changed (an event that only echoes the operator's own write changes
    nothing in the store and adds nothing).
    """

    def __init__(
        self,
        ctx: Context,
        reconcilers: dict[str, ReconcileFn],
        health: Health | None = None,
        store: Store | None = None,
    ) -> None:
        self.ctx = ctx
        self.reconcilers = reconcilers
        self.health = health
        self.store = store if store is not None else Store()
        cfg = ctx.config
        self.queue = WorkQueue(Backoff(cfg.retry_min_seconds, cfg.retry_max_seconds, 0.1))

    # -- keys ------------------------------------------------------------------------------
    def known(self) -> list[Key]:
        return [
            (kind, ns, name)
            for kind in self.reconcilers
            for ns, name in self.store.names((API_VERSION, kind))
        ]

    def touch(self, key: Key) -> None:
        """Make a resource due now."""
        self.queue.add(key)

    def forget(self, key: Key) -> None:
        self.queue.discard(key)
        if self.ctx.progress is not None:
            self.ctx.progress.forget(key)

    # -- one pass ----------------------------------------------------------------------------
    def reconcile(self, key: Key) -> None:
        """Run one pass of ``key`` now and schedule its next one (the caller holds the key)."""
        kind, namespace, name = key
        cfg = self.ctx.config
        with metrics.timed(kind):
            try:
                requeue = self.reconcilers[kind](self.ctx, namespace, name)
            except KubeError as e:
                if e.transient:
                    self._retry(key, "transient", e)
                    return
                metrics.ERRORS.labels(kind, "permanent").inc()
                metrics.RECONCILES.labels(kind, "permanent_error").inc()
                log.error("%s %s/%s: API rejected a request: %s", kind, namespace, name, e)
                self.queue.forget(key)
                self.queue.add(key, cfg.retry_max_seconds)
                return
            except Exception as e:  # never crash on a resource
                log.exception("%s %s/%s: operator error (a bug)", kind, namespace, name)
                self._retry(key, "transient", e)
                return
        metrics.RECONCILES.labels(kind, "ok").inc()
        self.queue.forget(key)
        if self.store.has((API_VERSION, kind), namespace, name):
            self.queue.add(key, next_pass_in(requeue, cfg.resync_seconds))

    def _retry(self, key: Key, type_: str, err: BaseException) -> None:
        kind = key[0]
        metrics.ERRORS.labels(kind, type_).inc()
        metrics.RECONCILES.labels(kind, "error").inc()
        delay = self.queue.retry(key)
        log.warning(
            "%s %s/%s: reconcile failed (%s: %s); retrying in %.1fs",
            kind,
            key[1],
            key[2],
            type(err).__name__,
            err,
            delay,
        )

    def work(self) -> None:
        """One worker thread: take a due key, run its pass, give it back."""
        while True:
            key = self.queue.get()
            if key is None:
                return
            try:
                self.reconcile(key)  # type: ignore[arg-type]
            finally:
                self.queue.done(key)
                metrics.QUEUE_DEPTH.set(len(self.queue))

    # -- what the watches report -------------------------------------------------------------
    def on_event(self, kind: str, event_type: str | None, obj: Mapping[str, Any]) -> None:
        md = obj.get("metadata", {})
        key: Key = (kind, md.get("namespace"), md.get("name"))
        gk = (API_VERSION, kind)
        if event_type == "DELETED":
            self.store.remove(gk, key[1], key[2])
            self.forget(key)
            return
        if self.store.upsert(gk, obj):
            self.queue.add(key)

    def on_child(self, _kind: Any, obj: Mapping[str, Any]) -> None:
        md = obj.get("metadata", {})
        labels = md.get("labels") or {}
        kind, name = labels.get(KIND_LABEL), labels.get(RESOURCE_LABEL)
        ns = md.get("namespace")
        if kind in self.reconcilers and name and ns:
            if self.store.has((API_VERSION, kind), ns, name):
                self.queue.add((kind, ns, name))
        elif "labels" not in md and ns:
            # A child gone while no watch ran (known by its name only): its owner is the
            # resource whose children are named after it, so every resource of the namespace
            # that could own it is due (rare: after a watch gap).
            for key in self.known():
                if key[1] == ns and str(md.get("name", "")).startswith(key[2]):
                    self.queue.add(key)

    # -- run -------------------------------------------------------------------------------
    async def loop(self, stop: asyncio.Event, informers: list[Informer] | None = None) -> None:
        """Start the informers, wait for their first lists, run the workers until ``stop``."""
        loop = asyncio.get_running_loop()
        infs = informers or []
        for inf in infs:
            inf.start()
        await loop.run_in_executor(None, wait_synced, infs, SYNC_TIMEOUT)
        threads = [
            threading.Thread(target=self.work, name=f"reconcile-{i}", daemon=True)
            for i in range(max(1, self.ctx.config.workers))
        ]
        for t in threads:
            t.start()
        try:
            while not stop.is_set():
                if self.health is not None:
                    self.health.beat()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=1.0)
        finally:
            self.queue.close()
            for inf in infs:
                inf.stop()
            await loop.run_in_executor(None, _join, threads, 30.0)


SYNC_TIMEOUT = 30.0


def _join(threads: list[threading.Thread], timeout: float) -> None:
    end = time.monotonic() + timeout
    for t in threads:
        t.join(max(0.0, end - time.monotonic()))


def next_pass_in(requeue: float | None, resync_seconds: float) -> float:
    """Seconds until a resource is due again after a successful pass (the requeue contract)."""
    if requeue is None:
        return resync_seconds
    if not requeue >= 0:  # negative or NaN
        return 0.0
    return min(resync_seconds, float(requeue))


def permanent_from(err: Exception) -> PermanentError | None:
    """Map the exceptions that mean 'bad spec' to a PermanentError."""
    if isinstance(err, PermanentError):
        return err
    if isinstance(err, InvalidSpec):
        return PermanentError("InvalidSpec", str(err))
    if isinstance(err, pydantic.ValidationError):
        msgs = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in err.errors()[:5]
        )
        return PermanentError("InvalidSpec", msgs)
    # Anything else (a KeyError included) is a bug of the operator, not the user's spec: it is
    # retried with backoff and its traceback logged, never reported as InvalidSpec.
    return None
