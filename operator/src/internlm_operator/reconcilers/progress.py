"""Training progress, polled off the reconcile path.

A batch pass never waits on a pod: it tells the poller which pod to watch (the rank-0 pod that
is Running) and reads the newest document the poller has. The poller fetches each target's
``GET :9400/progress`` every ``interval`` seconds on a small pool of threads, each fetch bounded
by ``timeout`` in total (connect, send and every byte of the answer), at most one fetch in flight
per target. When a document changes it makes the resource due, so status follows within a
controller tick. A pod that never answers costs one pool thread for ``timeout`` seconds and
delays nobody else's pass.
"""

from __future__ import annotations

import functools
import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Hashable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("internlm_operator")

MAX_BODY = 65536


def fetch(ip: str, port: int, timeout: float, path: str = "/progress") -> dict[str, Any] | None:
    """One HTTP/1.0 GET with a hard deadline for the whole exchange; None on any failure."""
    deadline = time.monotonic() + timeout
    host = f"[{ip}]" if ":" in ip else ip
    try:
        with socket.create_connection((ip, port), timeout=timeout) as s:
            s.sendall(f"GET {path} HTTP/1.0\r\nHost: {host}:{port}\r\n\r\n".encode())
            chunks: list[bytes] = []
            size = 0
            while size <= MAX_BODY + 4096:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                s.settimeout(left)
                b = s.recv(8192)
                if not b:
                    break
                chunks.append(b)
                size += len(b)
            else:
                return None  # too large to be a progress document
    except OSError:
        return None
    raw = b"".join(chunks)
    head, sep, body = raw.partition(b"\r\n\r\n")
    if not sep or not head.startswith(b"HTTP/") or head.split(b" ", 2)[1:2] != [b"200"]:
        return None
    try:
        doc = json.loads(body)
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None


@dataclass
class _Target:
    ip: str
    doc: dict[str, Any] | None = None
    next_at: float = 0.0
    busy: bool = False  # a fetch is in flight


class ProgressPoller:
    def __init__(
        self,
        timeout: float,
        interval: float,
        port: int,
        on_change: Callable[[Any], None],
        workers: int = 4,
        fetcher: Callable[[str, int, float], dict[str, Any] | None] = fetch,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.timeout = timeout
        self.interval = interval
        self.port = port
        self.on_change = on_change
        self.fetcher = fetcher
        self.clock = clock
        self._targets: dict[Hashable, _Target] = {}
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="progress")
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- the reconcile side: never blocks ----------------------------------------------------
    def latest(self, key: Hashable, ip: str | None) -> dict[str, Any] | None:
        """Watch ``ip`` for ``key`` (None: stop watching) and return the newest document."""
        with self._lock:
            t = self._targets.get(key)
            if ip is None:
                self._targets.pop(key, None)
                return None
            if t is None or t.ip != ip:
                # A new pod (a restart) starts with no progress of its own.
                self._targets[key] = t = _Target(ip)
            return t.doc

    def forget(self, key: Hashable) -> None:
        with self._lock:
            self._targets.pop(key, None)

    # -- the polling side ---------------------------------------------------------------------
    def tick(self) -> int:
        """Start a fetch for every target that is due and idle; returns how many started."""
        now = self.clock()
        due: list[tuple[Hashable, _Target]] = []
        with self._lock:
            for key, t in self._targets.items():
                if t.busy or t.next_at > now:
                    continue
                t.next_at = now + self.interval
                t.busy = True
                due.append((key, t))
        # Submitted outside the lock: a fetch that is already done runs its callback here.
        for key, t in due:
            fut = self._pool.submit(self.fetcher, t.ip, self.port, self.timeout)
            fut.add_done_callback(functools.partial(self._done, key, t))
        return len(due)

    def _done(self, key: Hashable, t: _Target, fut: Future[dict[str, Any] | None]) -> None:
        try:
            doc = fut.result()
        except Exception as e:  # a fetcher bug must not stop polling
            log.warning("progress fetch from %s failed: %s", t.ip, e)
            doc = None
        changed = False
        with self._lock:
            t.busy = False
            if doc is not None and doc != t.doc and self._targets.get(key) is t:
                t.doc = doc
                changed = True
        if changed:
            self.on_change(key)

    def start(self) -> None:
        def run() -> None:
            while not self._stop.is_set():
                self.tick()
                self._stop.wait(min(1.0, self.interval))

        self._thread = threading.Thread(target=run, name="progress-poller", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        self._pool.shutdown(wait=False, cancel_futures=True)
