"""The reconcile machinery shared by every kind.

kopf only watches: each kind's watch events (and the events of the Jobs we own) mark a resource
for reconciling; a resync loop reconciles every known resource every ``resync_seconds`` and
retries failed passes with exponential backoff. One pass per resource at a time (a lock per
resource), so the change handlers, the Job watch and the loop never race. No kopf timers or
daemons are used: they would put a finalizer on every resource and block its deletion whenever
the operator is down.

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
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pydantic

from .. import metrics
from ..config import OperatorConfig
from ..health import Health
from ..runtimes import InvalidSpec
from ..status.conditions import TRUE, is_true, transitions
from ..status.stuck import REASONS as STUCK_REASONS
from .kube import Kube, KubeError, record_event
from .progress import ProgressPoller

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


@dataclass
class _State:
    lock: threading.Lock = field(default_factory=threading.Lock)
    due: float = 0.0
    failures: int = 0


class Controller:
    def __init__(
        self, ctx: Context, reconcilers: dict[str, ReconcileFn], health: Health | None = None
    ) -> None:
        self.ctx = ctx
        self.reconcilers = reconcilers
        self.health = health
        self._states: dict[Key, _State] = {}
        self._guard = threading.Lock()

    # -- bookkeeping ---------------------------------------------------------------------
    def _state(self, key: Key) -> _State:
        with self._guard:
            return self._states.setdefault(key, _State())

    def forget(self, key: Key) -> None:
        with self._guard:
            self._states.pop(key, None)
        if self.ctx.progress is not None:
            self.ctx.progress.forget(key)

    def known(self) -> list[Key]:
        with self._guard:
            return list(self._states)

    def touch(self, key: Key) -> None:
        """Make a resource due now."""
        self._state(key).due = 0.0

    # -- one pass ------------------------------------------------------------------------
    def reconcile(self, key: Key) -> None:
        kind, namespace, name = key
        st = self._state(key)
        with st.lock:
            cfg = self.ctx.config
            with metrics.timed(kind):
                try:
                    requeue = self.reconcilers[kind](self.ctx, namespace, name)
                except KubeError as e:
                    if e.transient:
                        self._retry(key, st, "transient", e)
                        return
                    metrics.ERRORS.labels(kind, "permanent").inc()
                    metrics.RECONCILES.labels(kind, "permanent_error").inc()
                    log.error("%s %s/%s: API rejected a request: %s", kind, namespace, name, e)
                    st.failures, st.due = 0, time.monotonic() + cfg.retry_max_seconds
                    return
                except Exception as e:  # never crash on a resource
                    log.exception("%s %s/%s: operator error (a bug)", kind, namespace, name)
                    self._retry(key, st, "transient", e)
                    return
            metrics.RECONCILES.labels(kind, "ok").inc()
            st.failures = 0
            st.due = time.monotonic() + next_pass_in(requeue, cfg.resync_seconds)

    def _retry(self, key: Key, st: _State, type_: str, err: BaseException) -> None:
        kind = key[0]
        cfg = self.ctx.config
        metrics.ERRORS.labels(kind, type_).inc()
        metrics.RECONCILES.labels(kind, "error").inc()
        delay = min(cfg.retry_max_seconds, cfg.retry_min_seconds * (2**st.failures))
        st.failures += 1
        st.due = time.monotonic() + delay
        log.warning(
            "%s %s/%s: reconcile failed (%s: %s); retrying in %.1fs",
            kind,
            key[1],
            key[2],
            type(err).__name__,
            err,
            delay,
        )

    # -- kopf glue -----------------------------------------------------------------------
    def on_event(self, kind: str, event_type: str | None, body: Any) -> None:
        md = body.get("metadata", {})
        key: Key = (kind, md.get("namespace"), md.get("name"))
        if event_type == "DELETED":
            self.forget(key)
            return
        status = body.get("status") or {}
        first = key not in self._states
        changed = md.get("generation") != status.get("observedGeneration")
        self._state(key)
        if first or changed:
            self.reconcile(key)

    def on_child_event(self, event_type: str | None, body: Any) -> None:
        labels = body.get("metadata", {}).get("labels") or {}
        kind, name = labels.get("internlm.io/kind"), labels.get("internlm.io/resource")
        ns = body.get("metadata", {}).get("namespace")
        if kind in self.reconcilers and name and ns:
            key: Key = (kind, ns, name)
            if key in self._states:
                self.reconcile(key)

    async def loop(self, stop: asyncio.Event) -> None:
        """Reconcile every known resource when it is due (resync or retry)."""
        loop = asyncio.get_running_loop()
        sem = asyncio.Semaphore(8)

        async def one(key: Key) -> None:
            async with sem:
                await loop.run_in_executor(None, self.reconcile, key)

        while not stop.is_set():
            if self.health is not None:
                self.health.beat()
            now = time.monotonic()
            due = [
                k
                for k in self.known()
                if self._state(k).due <= now and not self._state(k).lock.locked()
            ]
            if due:
                await asyncio.gather(*(one(k) for k in due), return_exceptions=True)
            tick = min(1.0, self.ctx.config.resync_seconds)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=tick)


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
