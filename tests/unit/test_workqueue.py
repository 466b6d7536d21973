"""The work queue and the rate limit on an injected clock: dedup, delays, backoff, holding."""

from __future__ import annotations

import threading

from internlm_operator.reconcilers.kube.ratelimit import TokenBucket
from internlm_operator.reconcilers.workqueue import Backoff, Queue, WorkQueue


def no_jitter() -> float:
    return 0.0


def test_a_key_added_twice_is_queued_once() -> None:
    q = Queue()
    q.add("a", now=0)
    q.add("a", now=0)
    q.add("b", now=0)
    assert len(q) == 2
    assert [q.pop(0), q.pop(0), q.pop(0)] == ["a", "b", None]


def test_delayed_add_is_due_at_its_time_and_the_earliest_time_wins() -> None:
    q = Queue()
    q.add("a", now=0, after=10)
    assert q.pop(5) is None
    assert q.next_due() == 10
    q.add("a", now=5, after=1)  # sooner: wins
    assert q.pop(5.5) is None
    assert q.pop(6) == "a"
    q.done("a", 6)
    q.add("a", now=6, after=1)
    q.add("a", now=6, after=30)  # later: ignored
    assert q.next_due() == 7


def test_a_key_added_while_a_worker_holds_it_comes_back_only_after_done() -> None:
    q = Queue()
    q.add("a", now=0)
    assert q.pop(0) == "a"
    q.add("a", now=1)
    assert q.pop(1) is None  # never two passes of one resource at a time
    assert q.holds("a")
    q.done("a", 2)
    assert q.pop(2) == "a"


def test_backoff_doubles_to_its_cap_and_forget_resets_it() -> None:
    q = Queue(Backoff(1.0, 8.0, jitter=0.0), rand=no_jitter)
    delays = []
    for t in range(6):
        q.pop(1000.0 * t)
        delays.append(q.retry("a", now=1000.0 * t))
        q.done("a", 1000.0 * t)
    assert delays == [1, 2, 4, 8, 8, 8]
    q.forget("a")
    assert q.retry("a", now=0) == 1


def test_jitter_spreads_retries_within_its_fraction() -> None:
    b = Backoff(2.0, 60.0, jitter=0.5)
    assert b.delay(0, lambda: 0.0) == 2.0
    assert b.delay(0, lambda: 1.0) == 3.0
    assert b.delay(3, lambda: 0.5) == 16 * 1.25


def test_discard_drops_a_waiting_key() -> None:
    q = Queue()
    q.add("a", now=0, after=5)
    q.discard("a")
    assert q.pop(10) is None and q.next_due() is None and len(q) == 0


def test_threaded_queue_wakes_a_waiting_worker_and_close_releases_it() -> None:
    wq = WorkQueue()
    got: list[object] = []
    t = threading.Thread(target=lambda: got.append(wq.get()))
    t.start()
    wq.add("x")
    t.join(5)
    assert got == ["x"]
    t2 = threading.Thread(target=lambda: got.append(wq.get()))
    t2.start()
    wq.close()
    t2.join(5)
    assert got == ["x", None]


def test_threaded_queue_times_out_on_a_fake_clock() -> None:
    now = [0.0]
    wq = WorkQueue(clock=lambda: now[0])
    wq.add("later", after=100)
    now[0] = 100.0
    assert wq.get(timeout=1) == "later"


def test_token_bucket_allows_the_burst_then_the_rate() -> None:
    now = [0.0]
    slept: list[float] = []
    tb = TokenBucket(10, 3, clock=lambda: now[0], sleep=slept.append)
    assert [tb.reserve() for _ in range(3)] == [0, 0, 0]
    assert abs(tb.reserve() - 0.1) < 1e-9  # the 4th waits one token's time
    now[0] = 1.0  # a second later the bucket is full again (capped at the burst)
    assert [tb.reserve() for _ in range(3)] == [0, 0, 0]
    tb.wait()
    assert slept and abs(slept[0] - 0.1) < 1e-9
    assert TokenBucket(0, 1).reserve() == 0.0  # qps 0: no limit
