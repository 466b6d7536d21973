"""The progress poller: the reconcile side never blocks, one fetch in flight per pod, changes
make the resource due, and a fetch has a hard deadline however slowly the pod answers."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from internlm_operator.reconcilers.progress import ProgressPoller, fetch


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


class Fetcher:
    """Answers from a table; blocks while ``gate`` is clear, to keep a fetch in flight."""

    def __init__(self) -> None:
        self.docs: dict[str, dict[str, Any] | None] = {}
        self.calls: list[str] = []
        self.gate = threading.Event()
        self.gate.set()

    def __call__(self, ip: str, port: int, timeout: float) -> dict[str, Any] | None:
        self.calls.append(ip)
        self.gate.wait(5)
        return self.docs.get(ip)


def settle(p: ProgressPoller) -> None:
    p._pool.shutdown(wait=True)


def test_changes_make_the_resource_due_and_reach_latest() -> None:
    clock, f, due = Clock(), Fetcher(), []
    p = ProgressPoller(1.0, 5.0, 9400, due.append, fetcher=f, clock=clock)
    assert p.latest("a", "127.64.0.1") is None  # registers, never blocks
    f.docs["127.64.0.1"] = {"step": 1}
    assert p.tick() == 1
    time.sleep(0.05)
    assert due == ["a"] and p.latest("a", "127.64.0.1") == {"step": 1}
    # Not due again before the interval; the same answer does not make it due again.
    assert p.tick() == 0
    clock.t = 5.0
    assert p.tick() == 1
    time.sleep(0.05)
    assert due == ["a"]
    settle(p)


def test_one_fetch_in_flight_per_pod() -> None:
    clock, f = Clock(), Fetcher()
    p = ProgressPoller(1.0, 1.0, 9400, lambda k: None, fetcher=f, clock=clock)
    p.latest("a", "127.64.0.1")
    f.gate.clear()
    assert p.tick() == 1
    clock.t = 10.0
    assert p.tick() == 0  # still waiting on the first
    f.gate.set()
    time.sleep(0.05)
    assert p.tick() == 1
    settle(p)


def test_a_new_pod_starts_without_the_old_pods_progress() -> None:
    clock, f = Clock(), Fetcher()
    p = ProgressPoller(1.0, 1.0, 9400, lambda k: None, fetcher=f, clock=clock)
    p.latest("a", "127.64.0.1")
    f.docs["127.64.0.1"] = {"step": 9}
    p.tick()
    time.sleep(0.05)
    assert p.latest("a", "127.64.0.1") == {"step": 9}
    assert p.latest("a", "127.64.0.2") is None  # restarted gang, new rank-0 pod
    assert p.latest("a", None) is None
    p.forget("a")
    assert p.tick() == 0
    settle(p)


@pytest.fixture
def dribbler() -> Iterator[int]:
    """A server on loopback that answers one byte every 0.2 s, for ever."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(4)
    stop = threading.Event()

    def serve() -> None:
        s.settimeout(0.2)
        while not stop.is_set():
            try:
                c, _ = s.accept()
            except OSError:
                continue
            with c:
                while not stop.is_set():
                    try:
                        c.sendall(b"H")
                    except OSError:
                        break
                    time.sleep(0.2)

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    yield s.getsockname()[1]
    stop.set()
    t.join(2)
    s.close()


def test_fetch_has_a_hard_deadline(dribbler: int) -> None:
    t0 = time.monotonic()
    assert fetch("127.0.0.1", dribbler, 0.5) is None
    assert time.monotonic() - t0 < 0.9


def test_fetch_refused_and_bad_answers() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound but not listening: connection refused
        assert fetch("127.0.0.1", port, 0.5) is None
