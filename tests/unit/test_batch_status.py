"""Status tables for the batch kinds: observed Job and pods -> action and status."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from internlm_operator.status import conditions as C
from internlm_operator.status.batch import BatchObservation, decide, stalled, waiting
from internlm_operator.status.failures import classify, parse_result, pod_failure

NOW = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)


def pod(
    idx: int = 0,
    phase: str = "Running",
    code: int | None = None,
    message: str = "",
    reason: str | None = None,
    disruption: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    st: dict[str, Any] = {"phase": phase, "conditions": []}
    if code is not None:
        term = {"exitCode": code, "message": message, "finishedAt": f"2026-01-01T11:00:0{idx}Z"}
        if reason:
            term["reason"] = reason
        st["containerStatuses"] = [{"name": "workload", "state": {"terminated": term}}]
    if disruption:
        st["conditions"].append(
            {
                "type": "DisruptionTarget",
                "status": "True",
                "reason": disruption,
                "lastTransitionTime": "2026-01-01T10:00:00Z",
            }
        )
    md = {"name": f"p{idx}", "annotations": {"batch.kubernetes.io/job-completion-index": str(idx)}}
    md.update(extra)
    return {"metadata": md, "status": st}


def job(
    attempt: int = 0,
    spec_hash: str = "h",
    suspend: bool = False,
    conds: list[tuple[str, str]] = (),
    deleting: bool = False,
) -> dict[str, Any]:
    md: dict[str, Any] = {
        "name": "j",
        "labels": {"internlm.io/attempt": str(attempt)},
        "annotations": {"internlm.io/spec-hash": spec_hash},
        "uid": "u",
    }
    if deleting:
        md["deletionTimestamp"] = "2026-01-01T11:00:00Z"
    return {
        "metadata": md,
        "spec": {"suspend": suspend},
        "status": {"conditions": [{"type": t, "status": "True", "reason": r} for t, r in conds]},
    }


def obs(status: dict[str, Any] | None = None, **kw: Any) -> BatchObservation:
    base: dict[str, Any] = dict(
        generation=1,
        status=status or {},
        suspend=False,
        queued=False,
        backoff_limit=2,
        active_deadline_seconds=None,
        ttl_seconds_after_finished=None,
        retryable_exit_codes=(),
        desired_hash="h",
        nodes=2,
        job=None,
        pods=[],
        now=NOW,
    )
    base.update(kw)
    return BatchObservation(**base)


def cond(st: dict[str, Any], type_: str) -> dict[str, Any]:
    found = C.find(st["conditions"], type_)
    assert found is not None
    return found


@pytest.mark.parametrize(
    "p,retryable,reason",
    [
        (pod(phase="Failed", code=1, message='{"ok":false,"reason":"bad"}'), False, "ExitCode"),
        (pod(phase="Failed", code=127), False, "ExitCode"),
        (pod(phase="Failed", code=137, reason="OOMKilled"), True, "OOMKilled"),
        (pod(phase="Failed", code=143), True, "Signal"),
        # the workload's EX_TEMPFAIL: a rank that lost a peer of its gang
        (
            pod(phase="Failed", code=75, message='{"ok":false,"reason":"lost a peer"}'),
            True,
            "Transient",
        ),
        (pod(phase="Failed"), True, "PodFailed"),
        (pod(disruption="DeletionByTaintManager"), True, "NodeLost"),
        (pod(disruption="EvictionByEvictionAPI"), True, "Evicted"),
        (pod(disruption="PreemptionByScheduler"), True, "Preempted"),
    ],
)
def test_pod_failure_table(p: dict[str, Any], retryable: bool, reason: str) -> None:
    f = pod_failure(p)
    assert f is not None and (f.retryable, f.reason) == (retryable, reason)


def test_retryable_exit_codes_and_success() -> None:
    assert pod_failure(pod(phase="Failed", code=3), retryable_codes=[3]).retryable  # type: ignore[union-attr]
    assert pod_failure(pod(phase="Succeeded", code=0)) is None
    assert pod_failure(pod()) is None


def test_root_cause_is_the_earliest_failure() -> None:
    first = pod(0, phase="Failed", code=139)  # finishedAt ...:00
    later = pod(1, phase="Failed", code=1)  # finishedAt ...:01: collateral
    f = classify(None, [later, first])
    assert f is not None and f.reason == "Signal" and f.pod == "p0"


def test_job_failed_without_pods() -> None:
    f = classify(job(conds=[("Failed", "DeadlineExceeded")]), [])
    assert f is not None and not f.retryable and f.reason == "DeadlineExceeded"
    f = classify(job(conds=[("Failed", "BackoffLimitExceeded")]), [])
    assert f is not None and f.retryable and f.reason == "PodLost"


def test_parse_result() -> None:
    assert parse_result('log line\n{"ok": true}') == {"ok": True}
    assert parse_result("Traceback...\nError") is None
    assert parse_result(None) is None


def test_no_job_creates() -> None:
    d = decide(obs())
    assert d.action == "create" and d.status["phase"] == "Pending"
    assert cond(d.status, "Reconciling")["status"] == "True"
    d = decide(obs(suspend=True))
    assert d.action == "create" and d.status["phase"] == "Suspended"


def test_running_sets_start_time_and_progress() -> None:
    d = decide(
        obs(
            job=job(),
            pods=[pod(0), pod(1)],
            progress={"step": 10, "loss": 2.5, "junk": 1, "checkpoint": {"step": 5}},
        )
    )
    assert d.action == "none" and d.status["phase"] == "Running"
    assert d.status["startTime"] == "2026-01-01T12:00:00Z"
    assert d.status["progress"] == {"step": 10, "loss": 2.5}
    assert d.status["lastCheckpoint"] == {"step": 5}
    assert cond(d.status, "Running")["status"] == "True"


def test_partial_gang_is_pending() -> None:
    d = decide(obs(job=job(), pods=[pod(0), pod(1, phase="Pending")]))
    assert d.status["phase"] == "Pending" and "1/2" in cond(d.status, "Ready")["message"]


def test_retryable_failure_restarts_and_counts() -> None:
    d = decide(obs(job=job(), pods=[pod(0, phase="Failed", code=137), pod(1)]))
    assert (d.action, d.counted, d.status["restarts"]) == ("restart", True, 1)
    assert cond(d.status, "Restarting")["status"] == "True"


def test_stale_attempt_is_deleted_without_counting() -> None:
    d = decide(
        obs(
            {"restarts": 1, "phase": "Running"},
            job=job(attempt=0),
            pods=[pod(0, phase="Failed", code=137)],
        )
    )
    assert d.action == "restart" and not d.counted and d.status.get("restarts") == 1


def test_backoff_exhausted_fails() -> None:
    d = decide(obs({"restarts": 2}, job=job(attempt=2), pods=[pod(0, phase="Failed", code=137)]))
    assert d.status["phase"] == "Failed" and d.action == "delete"
    assert cond(d.status, "Failed")["reason"] == "BackoffLimitExceeded"
    assert cond(d.status, "Stalled")["status"] == "True"


def test_permanent_failure_fails_with_workload_reason() -> None:
    d = decide(
        obs(
            job=job(),
            pods=[pod(0, phase="Failed", code=2, message='{"ok": false, "reason": "no data"}')],
        )
    )
    assert d.status["phase"] == "Failed" and d.action == "none"
    assert "no data" in cond(d.status, "Failed")["message"]


def test_success_reads_rank0_result() -> None:
    msg = '{"ok": true, "outputs": {"model": "/x"}, "checkpoint": {"step": 9, "path": "/c"}}'
    d = decide(
        obs(
            job=job(conds=[("Complete", "")]),
            pods=[
                pod(1, phase="Succeeded", code=0),
                pod(0, phase="Succeeded", code=0, message=msg),
            ],
        )
    )
    assert d.status["phase"] == "Succeeded" and d.result == {
        "ok": True,
        "outputs": {"model": "/x"},
        "checkpoint": {"step": 9, "path": "/c"},
    }
    assert d.status["lastCheckpoint"] == {"step": 9, "path": "/c"}
    assert cond(d.status, "Ready")["status"] == "True"


def test_ok_false_with_exit_zero_fails() -> None:
    d = decide(
        obs(
            job=job(conds=[("Complete", "")]),
            pods=[pod(0, phase="Succeeded", code=0, message='{"ok": false, "reason": "x"}')],
        )
    )
    assert d.status["phase"] == "Failed" and cond(d.status, "Failed")["reason"] == "WorkloadFailed"


def test_spec_change_restarts_without_counting() -> None:
    d = decide(obs({"phase": "Running"}, job=job(spec_hash="old"), pods=[pod(0), pod(1)]))
    assert d.action == "restart" and not d.counted and d.reason == "SpecChanged"


def test_suspend_resume_and_kueue() -> None:
    assert decide(obs(suspend=True, job=job(), pods=[pod(0), pod(1)])).action == "suspend"
    assert decide(obs({"phase": "Suspended"}, job=job(suspend=True))).action == "unsuspend"
    d = decide(obs(queued=True, job=job(suspend=True)))
    assert d.action == "none" and cond(d.status, "Ready")["reason"] == "Queued"
    d = decide(obs({"phase": "Suspended"}, queued=True, job=job(suspend=True)))
    assert d.action == "restart" and d.reason == "Resumed"


def test_lost_member_of_running_gang() -> None:
    d = decide(obs({"phase": "Running"}, job=job(), pods=[pod(0), pod(1, phase="Pending")]))
    assert d.action == "restart" and d.reason == "PodLost"


def test_deadline_and_ttl() -> None:
    d = decide(
        obs(
            {"startTime": "2026-01-01T11:00:00Z", "phase": "Running"},
            active_deadline_seconds=60,
            job=job(),
            pods=[pod(0), pod(1)],
        )
    )
    assert d.status["phase"] == "Failed" and d.action == "delete"
    done = {"phase": "Succeeded", "completionTime": "2026-01-01T11:59:00Z"}
    assert decide(obs(done, ttl_seconds_after_finished=30, job=job())).action == "cleanup"
    assert decide(obs(done, ttl_seconds_after_finished=300, job=job())).action == "none"


def test_terminal_is_sticky_and_idempotent() -> None:
    d1 = decide(obs(job=job(conds=[("Complete", "")]), pods=[pod(0, phase="Succeeded", code=0)]))
    d2 = decide(obs(d1.status, job=job(conds=[("Complete", "")])))
    assert d2.status == d1.status and d2.action == "none"


def test_last_transition_time_preserved() -> None:
    d1 = decide(obs(job=job(), pods=[pod(0), pod(1)]))
    later = NOW + dt.timedelta(minutes=5)
    d2 = decide(obs(d1.status, job=job(), pods=[pod(0), pod(1)], now=later))
    assert d2.status == d1.status


def test_waiting_and_stalled() -> None:
    w = waiting({}, 3, NOW, "waiting for TrainJob a")
    assert w["phase"] == "Waiting"
    assert cond(w, "Ready")["reason"] == "WaitingForDependency"
    assert cond(w, "Ready")["observedGeneration"] == 3
    s = stalled(w, 3, NOW, "UpstreamFailed", "upstream TrainJob a failed")
    assert s["phase"] == "Waiting" and cond(s, "Stalled")["status"] == "True"
    assert cond(s, "Reconciling")["status"] == "False"


def test_success_from_the_pods_before_the_job_controller_says_so() -> None:
    """Every index's pod succeeded: Succeeded at once, not when the (rate-limited) Job
    controller gets to its Complete condition; one index still running is not success."""
    msg = '{"ok": true}'
    both = [pod(0, phase="Succeeded", code=0, message=msg), pod(1, phase="Succeeded", code=0)]
    d = decide(obs({"phase": "Running"}, job=job(), pods=both, nodes=2))
    assert d.status["phase"] == "Succeeded" and d.result == {"ok": True}
    one = [pod(0, phase="Succeeded", code=0, message=msg), pod(1)]
    d = decide(obs({"phase": "Running"}, job=job(), pods=one, nodes=2))
    assert d.status["phase"] != "Succeeded"
