# ruff: noqa: E501  (real messages, kept whole)
"""The failure policy (docs/operator.md "Failure policy"): the default table over real torch /
NCCL / CUDA messages, per-resource rules and their order, the message-pattern language, the
restart delay schedule with an injected clock, and the requeue contract."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import pydantic
import pytest
from internlm_operator.api.v1alpha1 import FailurePolicy, RestartDelay, RunPolicy
from internlm_operator.api.v1alpha1.pattern import PatternError, compile_pattern
from internlm_operator.reconcilers.controller import next_pass_in
from internlm_operator.status import conditions as C
from internlm_operator.status.batch import BatchObservation, decide
from internlm_operator.status.failures import (
    MESSAGE_RULES,
    Failure,
    classify,
    pod_failure,
    rules_of,
)

T0 = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)


def failed(code: int, message: str = "", reason: str | None = None, idx: int = 0) -> dict[str, Any]:
    term: dict[str, Any] = {
        "exitCode": code,
        "message": message,
        "finishedAt": f"2026-01-01T11:00:0{idx}Z",
    }
    if reason:
        term["reason"] = reason
    return {
        "metadata": {
            "name": f"p{idx}",
            "annotations": {"batch.kubernetes.io/job-completion-index": str(idx)},
        },
        "status": {
            "phase": "Failed",
            "containerStatuses": [{"name": "workload", "state": {"terminated": term}}],
        },
    }


def preempted() -> dict[str, Any]:
    return {
        "metadata": {"name": "p0"},
        "status": {
            "phase": "Failed",
            "conditions": [
                {"type": "DisruptionTarget", "status": "True", "reason": "PreemptionByScheduler"}
            ],
        },
    }


def policy(*rules: dict[str, Any]) -> FailurePolicy:
    return FailurePolicy.model_validate({"rules": list(rules)})


def verdict(f: Failure | None) -> tuple[str, str]:
    assert f is not None
    cls = "FailFast" if not f.retryable else ("Retry" if f.counted else "RetryUncounted")
    return cls, f.reason


# ------------------------------------------------------------------------------ default table

NCCL_REMOTE = (
    "torch.distributed.DistBackendError: NCCL error in: ../torch/csrc/distributed/c10d/NCCLUtils.hpp:219, "
    "remote process exited or there was a network error, NCCL version 2.19.3\n"
    "ncclRemoteError: A call failed possibly due to a network error or a remote process exiting prematurely."
)
WATCHDOG = (
    "[Rank 1] Watchdog caught collective operation timeout: WorkNCCL(SeqNum=42, OpType=ALLREDUCE, "
    "NumelIn=1, NumelOut=1, Timeout(ms)=600000) ran for 600026 milliseconds before timing out."
)
ASSERT_THEN_WATCHDOG = (
    "RuntimeError: CUDA error: device-side assert triggered\n"
    "[Rank 0] Watchdog caught collective operation timeout: WorkNCCL(SeqNum=7, OpType=BROADCAST)"
)


@pytest.mark.parametrize(
    "pod,expected",
    [
        # NCCL and its transports, even with exit code 1
        (failed(1, NCCL_REMOTE), ("Retry", "NCCLError")),
        (failed(1, WATCHDOG), ("Retry", "NCCLError")),
        (
            failed(
                1,
                "RuntimeError: NCCL error: unhandled system error (run with NCCL_DEBUG=INFO for details), NCCL version 2.18.1\nncclSystemError: System call (e.g. socket, malloc) or external library call failed or device error.",
            ),
            ("Retry", "NCCLError"),
        ),
        (
            failed(
                1,
                '{"ok": false, "reason": "rank 3: NCCL watchdog thread terminated with exception"}',
            ),
            ("Retry", "NCCLError"),
        ),
        # the accelerator
        (
            failed(1, "RuntimeError: CUDA error: uncorrectable ECC error encountered"),
            ("Retry", "GPUError"),
        ),
        (failed(1, "RuntimeError: CUDA error: unspecified launch failure"), ("Retry", "GPUError")),
        (failed(1, "RuntimeError: CUDA error: GPU has fallen off the bus"), ("Retry", "GPUError")),
        # lost peers (c10d, torchelastic)
        (
            failed(
                1,
                "RuntimeError: [../third_party/gloo/gloo/transport/tcp/pair.cc:534] Connection reset by peer [10.88.0.7]:3421",
            ),
            ("Retry", "PeerLost"),
        ),
        (
            failed(
                1,
                "torch.distributed.DistStoreError: Timed out after 901 seconds waiting for clients. 1/2 clients joined.",
            ),
            ("Retry", "PeerLost"),
        ),
        (
            failed(1, "torch.distributed.elastic.rendezvous.api.RendezvousTimeoutError"),
            ("Retry", "PeerLost"),
        ),
        (
            failed(
                1,
                "[c10d] The client socket has timed out after 900s while trying to connect to (tj-0.tj, 29500).",
            ),
            ("Retry", "PeerLost"),
        ),
        # the job's own fault: fail fast, whatever NCCL says after it
        (
            failed(1, "RuntimeError: CUDA error: device-side assert triggered"),
            ("FailFast", "ExitCode"),
        ),
        (failed(1, ASSERT_THEN_WATCHDOG), ("FailFast", "ExitCode")),
        (failed(134, ASSERT_THEN_WATCHDOG), ("FailFast", "ExitCode")),  # SIGABRT: its own abort
        (
            failed(1, "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB"),
            ("FailFast", "ExitCode"),
        ),
        (
            failed(1, "RuntimeError: CUDA error: an illegal memory access was encountered"),
            ("FailFast", "ExitCode"),
        ),
        (
            failed(
                1,
                "NCCL error in: ProcessGroupNCCL.cpp:1275, invalid usage, NCCL version 2.19.3\nncclInvalidUsage: This usually reflects invalid usage of NCCL library.",
            ),
            ("FailFast", "ExitCode"),
        ),
        (failed(1, "ValueError: dataPath /data does not exist"), ("FailFast", "ExitCode")),
        (
            failed(2, '{"ok": false, "reason": "bad", "failure": "RepoNotFound"}'),
            ("FailFast", "RepoNotFound"),
        ),
        # unchanged: 75, signals, OOM kill, preemption
        (failed(75, '{"ok": false, "reason": "peer: lost a peer"}'), ("Retry", "Transient")),
        (failed(143), ("Retry", "Signal")),
        (
            failed(137, "RuntimeError: CUDA out of memory", reason="OOMKilled"),
            ("Retry", "OOMKilled"),
        ),
        (
            failed(137, "RuntimeError: CUDA error: device-side assert triggered"),
            ("Retry", "Signal"),
        ),  # killed from outside
        (failed(134, NCCL_REMOTE), ("Retry", "NCCLError")),
        (preempted(), ("RetryUncounted", "Preempted")),
    ],
)
def test_default_table(pod: dict[str, Any], expected: tuple[str, str]) -> None:
    assert verdict(pod_failure(pod, container="workload")) == expected


def test_default_message_rules_are_lowercase_and_the_user_errors_come_first() -> None:
    assert MESSAGE_RULES[0].action == "FailFast"
    for rule in MESSAGE_RULES:
        assert all(n == n.lower() for n in rule.needles)


# ---------------------------------------------------------------------------- per-resource rules


@pytest.mark.parametrize(
    "rules,pod,expected",
    [
        # a user rule beats the default table: an NCCL timeout this team knows is their bug
        (
            [{"messagePattern": "watchdog caught", "action": "FailFast"}],
            failed(1, WATCHDOG),
            ("FailFast", "NCCLError"),
        ),
        # a flaky storage mount that exits 1: retried, with the reason the rule names
        (
            [
                {
                    "exitCodes": [1],
                    "messagePattern": r"stale file handle|input/output error",
                    "action": "Retry",
                    "reason": "StorageFlake",
                }
            ],
            failed(1, "OSError: [Errno 5] Input/output error: '/mnt/pvc/x'"),
            ("Retry", "StorageFlake"),
        ),
        # every criterion must match (AND): the exit code differs, so the default applies
        (
            [{"exitCodes": [3], "messagePattern": "input/output", "action": "Retry"}],
            failed(1, "OSError: Input/output error"),
            ("FailFast", "ExitCode"),
        ),
        # by reason: an OOM kill will not fix itself here
        (
            [{"reasons": ["OOMKilled"], "action": "FailFast"}],
            failed(137, "", reason="OOMKilled"),
            ("FailFast", "OOMKilled"),
        ),
        # a preemption counted against backoffLimit
        ([{"reasons": ["Preempted"], "action": "Retry"}], preempted(), ("Retry", "Preempted")),
        # a retry that does not count
        (
            [{"exitCodes": [42], "action": "RetryUncounted"}],
            failed(42),
            ("RetryUncounted", "ExitCode"),
        ),
        # the first matching rule decides
        (
            [{"exitCodes": [1], "action": "FailFast"}, {"exitCodes": [1], "action": "Retry"}],
            failed(1, NCCL_REMOTE),
            ("FailFast", "NCCLError"),
        ),
        (
            [{"exitCodes": [9], "action": "FailFast"}, {"exitCodes": [1], "action": "Retry"}],
            failed(1, "x"),
            ("Retry", "ExitCode"),
        ),
    ],
)
def test_rules_override_the_defaults(
    rules: list[dict[str, Any]], pod: dict[str, Any], expected: tuple[str, str]
) -> None:
    got = pod_failure(pod, container="workload", rules=rules_of(policy(*rules)))
    assert verdict(got) == expected
    overridden = verdict(pod_failure(pod, container="workload")) != expected
    assert got is not None and ("runPolicy.failurePolicy.rules[" in got.message) is overridden


def test_retryable_exit_codes_are_a_retry_rule_after_the_rules() -> None:
    p = failed(3, "boom")
    assert verdict(pod_failure(p, [3], "workload")) == ("Retry", "RetryableExitCode")
    first = rules_of(policy({"exitCodes": [3], "action": "FailFast"}))
    assert verdict(pod_failure(p, [3], "workload", first)) == ("FailFast", "ExitCode")
    # a retryable exit code beats the default table's fail-fast messages (the user said so)
    p = failed(3, "RuntimeError: CUDA error: device-side assert triggered")
    assert verdict(pod_failure(p, [3], "workload")) == ("Retry", "RetryableExitCode")


def test_a_rule_that_agrees_with_the_default_changes_nothing() -> None:
    p = failed(1, NCCL_REMOTE)
    default = pod_failure(p, container="workload")
    same = pod_failure(
        p,
        container="workload",
        rules=rules_of(policy({"reasons": ["NCCLError"], "action": "Retry"})),
    )
    assert same == default and same is not None and "rules[" not in same.message


def test_rules_reach_a_job_whose_pod_is_gone() -> None:
    job = {
        "status": {
            "conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}]
        }
    }
    assert verdict(classify(job, [])) == ("Retry", "PodLost")
    rules = rules_of(policy({"reasons": ["PodLost"], "action": "RetryUncounted"}))
    assert verdict(classify(job, [], rules=rules)) == ("RetryUncounted", "PodLost")
    dead = {
        "status": {
            "conditions": [{"type": "Failed", "status": "True", "reason": "DeadlineExceeded"}]
        }
    }
    never = rules_of(policy({"reasons": ["DeadlineExceeded"], "action": "Retry"}))
    assert verdict(classify(dead, [], rules=never)) == ("FailFast", "DeadlineExceeded")


# ------------------------------------------------------------------------------- the API side


def test_rule_validation() -> None:
    with pytest.raises(pydantic.ValidationError, match="invalid messagePattern"):
        policy({"messagePattern": "NCCL (error", "action": "Retry"})
    with pytest.raises(pydantic.ValidationError, match="invalid messagePattern"):
        policy({"messagePattern": r"(a)\1", "action": "Retry"})  # no backreferences
    with pytest.raises(pydantic.ValidationError, match="invalid messagePattern"):
        policy({"messagePattern": "(?=x)y", "action": "Retry"})  # no look-arounds
    with pytest.raises(pydantic.ValidationError):
        policy({"messagePattern": "x" * 257, "action": "Retry"})
    with pytest.raises(pydantic.ValidationError):
        policy({"exitCodes": [1], "action": "Sometimes"})
    with pytest.raises(pydantic.ValidationError):
        policy({"exitCodes": [0], "action": "Retry"})
    with pytest.raises(pydantic.ValidationError):
        policy({"reasons": ["not a reason"], "action": "Retry"})
    rp = RunPolicy.model_validate(
        {"failurePolicy": {"rules": [{"exitCodes": [1], "action": "Retry"}]}}
    )
    assert rp.to_dict()["failurePolicy"]["rules"] == [{"exitCodes": [1], "action": "Retry"}]
    assert rp.to_dict()["restartDelay"] == {"initialSeconds": 10, "maxSeconds": 300, "factor": 2}


def test_a_bad_pattern_is_an_invalid_spec() -> None:
    from internlm_operator.reconcilers.controller import permanent_from

    try:
        RunPolicy.model_validate(
            {"failurePolicy": {"rules": [{"messagePattern": "a{3", "action": "Retry"}]}}
        )
    except pydantic.ValidationError as e:
        perm = permanent_from(e)
    assert perm is not None and perm.reason == "InvalidSpec"
    assert (
        "failurePolicy.rules.0.messagePattern" in perm.message
        and "unterminated '{'" in perm.message
    )


@pytest.mark.parametrize(
    "pattern,text,found",
    [
        ("nccl", "NCCL error", True),
        ("NCCL.*timeout", "nccl op timeout", True),
        ("NCCL.*timeout", "timeout before nccl", False),
        (r"^OSError\b", "x\nOSError: [Errno 5]", True),
        (r"^OSError\b", "x OSError: y", False),
        (r"exit(ed)? \d+$", "pod exited 3", True),
        (r"exit(?:ed)? \d+$", "pod exited 3 times", False),
        (r"[^a-z]ecc", "uncorrectable ECC", True),
        (r"[^a-z]ecc", "deccan", False),
        (r"a{2,3}b", "aab", True),
        (r"a{2,3}b", "ab", False),
        (r"(foo|bar)+baz", "xxbarfoobaz", True),
        (r"\bpeer\b", "peers", False),
        (r"\Bee", "peer", True),
        (r"\.", "a.b", True),
        (r"\.", "ab", False),
        (r"[.]", "a.b", True),
        (r"x*", "", True),
        (r"a.c", "a\nc", False),
        (r"[\d-]+z", "12-3z", True),
        (r"[]a]", "]", True),
    ],
)
def test_pattern_language(pattern: str, text: str, found: bool) -> None:
    assert compile_pattern(pattern).search(text) is found


@pytest.mark.parametrize(
    "pattern",
    [
        "",
        "(",
        ")",
        "a**",
        "*a",
        "a{101}",
        "a{3,2}",
        r"\p{L}",
        "(?i)x",
        "(?P<n>x)",
        "[a",
        r"\1",
        "a{1000000}",
    ],
)
def test_pattern_language_rejects(pattern: str) -> None:
    with pytest.raises(PatternError):
        compile_pattern(pattern)


def test_patterns_that_backtrack_exponentially_in_re_are_linear_here() -> None:
    text = "a" * 4000 + "!"
    for pattern in (r"(a+)+$x", r"(a|aa)*b", r".*.*.*.*x", r"(a*)*b"):
        t0 = time.monotonic()
        assert compile_pattern(pattern).search(text) is False
        assert time.monotonic() - t0 < 2.0, pattern


def test_pattern_state_budget() -> None:
    with pytest.raises(PatternError, match="too complex"):
        compile_pattern(r"((a{100}){100}){100}")


# ------------------------------------------------------------------------- the restart delay


def test_delay_schedule() -> None:
    d = RestartDelay()
    assert [d.seconds(n) for n in range(1, 8)] == [10, 20, 40, 80, 160, 300, 300]
    d = RestartDelay(initial_seconds=2, max_seconds=5, factor=3)
    assert [d.seconds(n) for n in (1, 2, 3)] == [2, 5, 5]
    assert RestartDelay(initial_seconds=0).seconds(5) == 0
    assert RestartDelay(factor=1).seconds(9) == 10
    with pytest.raises(pydantic.ValidationError, match="at least initialSeconds"):
        RestartDelay(initial_seconds=600)
    with pytest.raises(pydantic.ValidationError):
        RestartDelay(factor=0)


def job(attempt: int = 0, deleting: bool = False, failed_: bool = False) -> dict[str, Any]:
    md: dict[str, Any] = {
        "name": "j",
        "uid": "u",
        "labels": {"internlm.io/attempt": str(attempt)},
        "annotations": {"internlm.io/spec-hash": "h"},
    }
    if deleting:
        md["deletionTimestamp"] = "2026-01-01T11:00:00Z"
    conds = (
        [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}] if failed_ else []
    )
    return {"metadata": md, "spec": {}, "status": {"conditions": conds}}


def obs(status: dict[str, Any], now: dt.datetime, **kw: Any) -> BatchObservation:
    base: dict[str, Any] = dict(
        generation=1,
        status=status,
        suspend=False,
        queued=False,
        backoff_limit=5,
        active_deadline_seconds=None,
        ttl_seconds_after_finished=None,
        retryable_exit_codes=(),
        desired_hash="h",
        nodes=1,
        job=None,
        pods=[],
        now=now,
        restart_delay=RestartDelay(initial_seconds=10, max_seconds=25, factor=2),
    )
    base.update(kw)
    return BatchObservation(**base)


def ready(st: dict[str, Any]) -> dict[str, Any]:
    found = C.find(st["conditions"], "Ready")
    assert found is not None
    return found


def test_restart_waits_out_the_delay_with_an_injected_clock() -> None:
    """Decide -> Job deleted -> RestartBackoff until nextRestartTime -> create; the wait grows
    with each counted restart and is read from status (an operator restart keeps it)."""
    clock = T0
    status: dict[str, Any] = {"phase": "Running", "startTime": "2026-01-01T11:00:00Z"}
    waits = []
    for n in (1, 2, 3):
        pods = [failed(1, NCCL_REMOTE)]
        d = decide(obs(status, clock, job=job(attempt=n - 1), pods=pods))
        assert d.action == "restart" and d.counted and d.reason == "NCCLError"
        assert d.status["restarts"] == n
        due = C.parse_time(d.status["nextRestartTime"])
        assert due is not None
        waits.append((due - clock).total_seconds())
        assert f"in {int(waits[-1])}s" in ready(d.status)["message"]
        status = d.status
        # the Job is being deleted: already in backoff
        d = decide(obs(status, clock + dt.timedelta(seconds=1), job=job(n - 1, deleting=True)))
        assert d.action == "none" and ready(d.status)["reason"] == "RestartBackoff"
        assert d.requeue_after == pytest.approx(waits[-1] - 1)
        # gone; one second before the due time: still waiting, requeued for that second
        before = due - dt.timedelta(seconds=1)
        d = decide(obs(d.status, before))
        assert d.action == "none" and d.status["phase"] == "Pending"
        r = ready(d.status)
        assert r["reason"] == "RestartBackoff" and "NCCLError" in r["message"]
        assert "starts in 1s" in r["message"] and status["nextRestartTime"] in r["message"]
        assert C.is_true(d.status["conditions"], "Restarting")
        assert d.requeue_after == pytest.approx(1.0)
        # at the due time: create, and nextRestartTime is gone
        d = decide(obs(d.status, due))
        assert d.action == "create" and "nextRestartTime" not in d.status
        status = d.status
        clock = due + dt.timedelta(seconds=30)
    assert waits == [10, 20, 25]


def test_restart_time_is_rounded_up() -> None:
    now = T0 + dt.timedelta(microseconds=300_000)
    d = decide(
        obs(
            {"phase": "Running"},
            now,
            job=job(),
            pods=[failed(143)],
            restart_delay=RestartDelay(initial_seconds=2),
        )
    )
    due = C.parse_time(d.status["nextRestartTime"])
    assert due is not None and due >= now + dt.timedelta(seconds=2)
    assert (due - now).total_seconds() < 3


def test_uncounted_restarts_wait_the_initial_delay_and_zero_means_at_once() -> None:
    d = decide(obs({"phase": "Running", "restarts": 3}, T0, job=job(3), pods=[preempted()]))
    assert d.action == "restart" and not d.counted and d.status.get("restarts") == 3
    assert d.status["nextRestartTime"] == "2026-01-01T12:00:10Z"  # initialSeconds, not grown
    d = decide(
        obs(
            {"phase": "Running"},
            T0,
            job=job(),
            pods=[failed(143)],
            restart_delay=RestartDelay(initial_seconds=0),
        )
    )
    assert d.action == "restart" and "nextRestartTime" not in d.status
    d = decide(obs(d.status, T0))
    assert d.action == "create"


def test_suspend_during_the_backoff_and_no_delay_after_spec_changes() -> None:
    st = decide(obs({"phase": "Running"}, T0, job=job(), pods=[failed(143)])).status
    d = decide(obs(st, T0 + dt.timedelta(seconds=1), suspend=True))
    assert d.action == "create" and d.status["phase"] == "Suspended"
    assert "nextRestartTime" not in d.status
    spec_changed = dict(
        job(), metadata={**job()["metadata"], "annotations": {"internlm.io/spec-hash": "old"}}
    )
    d = decide(obs({"phase": "Running"}, T0, job=spec_changed))
    assert d.action == "restart" and d.reason == "SpecChanged" and "nextRestartTime" not in d.status


def test_fail_fast_by_default_and_by_rule() -> None:
    d = decide(obs({"phase": "Running"}, T0, job=job(), pods=[failed(1, "ValueError: bad config")]))
    assert (
        d.action == "none" and d.status["phase"] == "Failed" and "nextRestartTime" not in d.status
    )
    rules = rules_of(policy({"reasons": ["Signal"], "action": "FailFast", "reason": "Killed"}))
    d = decide(obs({"phase": "Running"}, T0, job=job(), pods=[failed(143)], failure_rules=rules))
    assert d.status["phase"] == "Failed" and ready(d.status)["reason"] == "Killed"


def test_a_lost_member_goes_through_the_rules() -> None:
    rules = rules_of(policy({"reasons": ["PodLost"], "action": "FailFast"}))
    d = decide(obs({"phase": "Running"}, T0, job=job(), pods=[], nodes=2, failure_rules=rules))
    assert d.status["phase"] == "Failed" and ready(d.status)["reason"] == "PodLost"


def test_requeue_contract() -> None:
    assert next_pass_in(None, 15) == 15
    assert next_pass_in(3.5, 15) == 3.5
    assert next_pass_in(60, 15) == 15
    assert next_pass_in(-1, 15) == 0
    assert next_pass_in(float("nan"), 15) == 0


def test_an_operator_restarted_between_the_record_and_the_delete_keeps_the_wait() -> None:
    """The restart (restarts, nextRestartTime) is written before the Job is deleted: a new
    operator that finds the old Job deletes it without counting again or moving the time."""
    st = decide(obs({"phase": "Running"}, T0, job=job(0), pods=[failed(1, NCCL_REMOTE)])).status
    assert st["restarts"] == 1 and st["nextRestartTime"] == "2026-01-01T12:00:10Z"
    later = T0 + dt.timedelta(seconds=4)
    d = decide(obs(st, later, job=job(0), pods=[failed(1, NCCL_REMOTE)]))
    assert d.action == "restart" and not d.counted
    assert d.status["restarts"] == 1 and d.status["nextRestartTime"] == "2026-01-01T12:00:10Z"
    d = decide(obs(d.status, later))
    assert d.action == "none" and d.requeue_after == pytest.approx(6.0)


def test_a_key_error_is_a_bug_not_an_invalid_spec() -> None:
    from internlm_operator.reconcilers.controller import permanent_from

    assert permanent_from(KeyError("spec")) is None  # retried and logged, not InvalidSpec
