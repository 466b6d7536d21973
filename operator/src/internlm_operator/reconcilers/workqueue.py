"""The work queue every reconcile pass comes from (client-go's workqueue, in Python).

- Dedup per key: a key added while it waits is queued once; added while a worker holds it, it
  is queued again when that worker is done (never two passes of one resource at a time).
- Delayed adds: ``add(key, after=s)`` makes it due in ``s`` seconds; the earliest due time wins.
- Backoff: ``retry(key)`` re-adds a failed key after ``min * 2**failures`` (capped), with up to
  ``jitter`` of it added at random, so a thousand resources failing at once do not come back at
  once; ``forget(key)`` resets it after a good pass.

:class:`Queue` is single-threaded logic on an injected clock (unit tests drive it);
:class:`WorkQueue` adds the lock and the condition variable the worker threads wait on.
"""

from __future__ import annotations

import heapq
import random
import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field


@dataclass
class Backoff:
    min_seconds: float = 1.0
    max_seconds: float = 60.0
    jitter: float = 0.1  # up to this fraction of the delay, added at random

    def delay(self, failures: int, rand: Callable[[], float] = random.random) -> float:
        base = min(self.max_seconds, self.min_seconds * (2 ** min(failures, 30)))
        return float(base * (1 + self.jitter * rand()))


@dataclass
class Queue:
    """The queue's state; every method takes the time it is called at."""

    backoff: Backoff = field(default_factory=Backoff)
    rand: Callable[[], float] = random.random
    _due: dict[Hashable, float] = field(default_factory=dict)  # key -> when it is due
    _heap: list[tuple[float, int, Hashable]] = field(default_factory=list)
    _seq: int = 0
    _active: set[Hashable] = field(default_factory=set)  # held by a worker
    _again: dict[Hashable, float] = field(default_factory=dict)  # added while active
    _failures: dict[Hashable, int] = field(default_factory=dict)

    def add(self, key: Hashable, now: float, after: float = 0.0) -> None:
        at = now + max(0.0, after)
        if key in self._active:
            self._again[key] = min(at, self._again.get(key, at))
            return
        if key in self._due and self._due[key] <= at:
            return
        self._due[key] = at
        self._seq += 1
        heapq.heappush(self._heap, (at, self._seq, key))

    def pop(self, now: float) -> Hashable | None:
        """The next due key, now held until :meth:`done`; None when none is due."""
        while self._heap:
            at, _seq, key = self._heap[0]
            if self._due.get(key) != at:  # superseded by an earlier add, or discarded
                heapq.heappop(self._heap)
                continue
            if at > now:
                return None
            heapq.heappop(self._heap)
            del self._due[key]
            self._active.add(key)
            return key
        return None

    def done(self, key: Hashable, now: float) -> None:
        self._active.discard(key)
        if key in self._again:
            at = self._again.pop(key)
            self.add(key, now, at - now)

    def retry(self, key: Hashable, now: float) -> float:
        """Re-add a key whose pass failed, after its backoff; returns the delay."""
        n = self._failures.get(key, 0)
        self._failures[key] = n + 1
        delay = self.backoff.delay(n, self.rand)
        self.add(key, now, delay)
        return delay

    def forget(self, key: Hashable) -> None:
        self._failures.pop(key, None)

    def discard(self, key: Hashable) -> None:
        """Drop a key entirely (its resource was deleted)."""
        self._due.pop(key, None)
        self._again.pop(key, None)
        self._failures.pop(key, None)

    def next_due(self) -> float | None:
        """When the earliest waiting key is due (None: nothing waits)."""
        while self._heap and self._due.get(self._heap[0][2]) != self._heap[0][0]:
            heapq.heappop(self._heap)
        return self._heap[0][0] if self._heap else None

    def failures(self, key: Hashable) -> int:
        return self._failures.get(key, 0)

    def __len__(self) -> int:
        return len(self._due)

    def holds(self, key: Hashable) -> bool:
        return key in self._active


class WorkQueue:
    """:class:`Queue` for threads: workers block in :meth:`get` until a key is due."""

    def __init__(self, backoff: Backoff | None = None, clock: Callable[[], float] = time.monotonic):
        self._q = Queue(backoff or Backoff())
        self._clock = clock
        self._cv = threading.Condition()
        self._closed = False

    def add(self, key: Hashable, after: float = 0.0) -> None:
        with self._cv:
            self._q.add(key, self._clock(), after)
            self._cv.notify()

    def get(self, timeout: float | None = None) -> Hashable | None:
        """The next due key (held until :meth:`done`), or None on close or timeout."""
        end = None if timeout is None else self._clock() + timeout
        with self._cv:
            while not self._closed:
                now = self._clock()
                key = self._q.pop(now)
                if key is not None:
                    return key
                wait = None if (nd := self._q.next_due()) is None else max(0.0, nd - now)
                if end is not None:
                    left = end - now
                    if left <= 0:
                        return None
                    wait = left if wait is None else min(wait, left)
                self._cv.wait(wait)
            return None

    def done(self, key: Hashable) -> None:
        with self._cv:
            self._q.done(key, self._clock())
            self._cv.notify()

    def retry(self, key: Hashable) -> float:
        with self._cv:
            delay = self._q.retry(key, self._clock())
            self._cv.notify()
            return delay

    def forget(self, key: Hashable) -> None:
        with self._cv:
            self._q.forget(key)

    def discard(self, key: Hashable) -> None:
        with self._cv:
            self._q.discard(key)

    def failures(self, key: Hashable) -> int:
        with self._cv:
            return self._q.failures(key)

    def close(self) -> None:
        with self._cv:
            self._closed = True
            self._cv.notify_all()

    def __len__(self) -> int:
        with self._cv:
            return len(self._q)
