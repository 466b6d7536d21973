"""Kueue's reason from a Workload (status/kueue.py) and where it shows in a batch status."""

from __future__ import annotations

import datetime as dt
from typing import Any

from internlm_operator.status import batch
from internlm_operator.status.kueue import queued_message, workload_of

PENDING = (
    "couldn't assign flavors to pod set main: insufficient unused quota for nvidia.com/gpu "
    "in flavor default, 8 more needed"
)


def wl(*conds: tuple[str, str, str, str], uid: str = "u1", queue: str = "lq") -> dict[str, Any]:
    return {
        "metadata": {
            "name": "job-x-tj-1a2b3",
            "ownerReferences": [{"kind": "Job", "uid": uid}],
            "labels": {"kueue.x-k8s.io/job-uid": uid},
        },
        "spec": {"queueName": queue},
        "status": {
            "conditions": [
                {"type": t, "status": s, "reason": r, "message": m} for t, s, r, m in conds
            ]
        },
    }


def test_pending_quota_message() -> None:
    msg = queued_message(wl(("QuotaReserved", "False", "Pending", PENDING)))
    assert msg == f"waiting for Kueue (LocalQueue lq) to admit the Job: {PENDING}"


def test_admitted_or_silent_says_nothing() -> None:
    assert queued_message(None) is None
    assert queued_message(wl()) is None
    assert (
        queued_message(
            wl(
                ("QuotaReserved", "True", "QuotaReserved", "ok"),
                ("Admitted", "True", "Admitted", "x"),
            )
        )
        is None
    )


def test_admission_checks_and_eviction() -> None:
    msg = queued_message(
        wl(
            ("QuotaReserved", "True", "QuotaReserved", "Quota reserved"),
            ("Admitted", "False", "Pending", "waiting for admission check prov"),
        )
    )
    assert msg and msg.endswith("waiting for admission check prov")
    msg = queued_message(
        wl(
            ("QuotaReserved", "False", "Pending", PENDING),
            ("Evicted", "True", "Preempted", "Preempted to accommodate a workload"),
        )
    )
    assert msg and PENDING in msg and "evicted (Preempted): Preempted to accommodate" in msg


def test_workload_of_owner_then_label() -> None:
    a, b = wl(uid="a"), wl(uid="b")
    b["metadata"]["ownerReferences"] = []
    assert workload_of([a, b], "a") is a
    assert workload_of([a, b], "b") is b
    assert workload_of([a, b], "c") is None


def obs(job: dict[str, Any], workload: dict[str, Any] | None, queued: bool) -> Any:
    return batch.BatchObservation(
        generation=1,
        status={"phase": "Pending"},
        suspend=False,
        queued=queued,
        backoff_limit=2,
        active_deadline_seconds=None,
        ttl_seconds_after_finished=None,
        retryable_exit_codes=(),
        desired_hash="h",
        nodes=1,
        job=job,
        pods=[],
        now=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
        workload=workload,
    )


def ready(d: Any) -> dict[str, Any]:
    return next(c for c in d.status["conditions"] if c["type"] == "Ready")


def test_queued_status_carries_kueue_reason() -> None:
    job = {
        "metadata": {"uid": "u1", "annotations": {batch.HASH_ANNOTATION: "h"}},
        "spec": {"suspend": True},
    }
    w = wl(("QuotaReserved", "False", "Pending", PENDING))
    for queued in (True, False):  # queue label, or Kueue's manageJobsWithoutQueueName
        d = batch.decide(obs(job, w, queued))
        assert d.action == "none" and d.status["phase"] == "Pending"
        assert ready(d)["reason"] == "Queued" and PENDING in ready(d)["message"]
    d = batch.decide(obs(job, None, True))
    assert ready(d)["message"] == "waiting for Kueue to admit the Job"
