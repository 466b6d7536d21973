"""Pure decision for the batch kinds (TrainJob, FineTune, EvalRun).

Input: what the reconciler observed (the resource's previous status, the current Job and its
pods, the time). Output: one action for the reconciler to take on the Job, the complete new
status, and the Events worth recording. No I/O here.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from ..api.labels import ATTEMPT_LABEL
from ..api.labels import SPEC_HASH_ANNOTATION as HASH_ANNOTATION
from ..api.v1alpha1 import RestartDelay
from .conditions import FALSE, TRUE, Cond, merge, now_rfc3339, parse_time, transitions
from .failures import Failure, Rule, apply_rules, classify, job_condition, pod_index, pod_result
from .kueue import queued_message
from .stuck import Ref, failed_create, missing, of_pods

TERMINAL = ("Succeeded", "Failed")

SUSPENDED_QUEUED = (
    "suspended by spec.suspend: the Job is deleted so that Kueue releases its quota; "
    "resuming creates it again for Kueue to admit"
)

Action = Literal["none", "create", "restart", "delete", "suspend", "unsuspend", "cleanup"]


@dataclass(frozen=True)
class BatchObservation:
    generation: int
    status: Mapping[str, Any]
    suspend: bool
    queued: bool  # a Kueue queue-name is set: Kueue decides when the Job runs
    backoff_limit: int
    active_deadline_seconds: int | None
    ttl_seconds_after_finished: int | None
    retryable_exit_codes: tuple[int, ...]
    desired_hash: str
    nodes: int
    job: Mapping[str, Any] | None
    pods: Sequence[Mapping[str, Any]]
    now: dt.datetime
    container: str = "workload"
    progress: Mapping[str, Any] | None = None
    # Whether each PVC / Secret / ConfigMap the pod template names exists (None: unknown);
    # only looked up before the Job is created.
    refs_found: Mapping[Ref, bool | None] = field(default_factory=dict)
    events: Sequence[Mapping[str, Any]] = ()  # the Job's own Events (FailedCreate)
    # Kueue's Workload of the Job (looked up only while the Job is suspended; None: none)
    workload: Mapping[str, Any] | None = None
    # runPolicy.failurePolicy.rules (failures.rules_of), tried before the default table
    failure_rules: Sequence[Rule] = ()
    # runPolicy.restartDelay: the wait between a retried failure and the new gang
    restart_delay: RestartDelay = field(default_factory=RestartDelay)


@dataclass
class BatchDecision:
    action: Action
    status: dict[str, Any]
    reason: str = ""  # why (for restart / delete)
    counted: bool = False  # a restart that counts against the backoff limit
    result: dict[str, Any] | None = None  # the workload's final JSON result
    events: list[tuple[str, str, str]] = field(default_factory=list)
    # Run the pass again after this many seconds (sooner than the resync): a restart backoff
    # that ends then. None: the resync is soon enough.
    requeue_after: float | None = None


def _phase_conditions(
    phase: str,
    reason: str,
    message: str,
    *,
    created: bool,
    running: bool,
    restarting: tuple[str, str] | None,
    suspended: bool,
    extra: Sequence[Cond] = (),
    stalled: bool = False,
) -> list[Cond]:
    done = phase in TERMINAL
    stuck = phase == "Failed" or stalled
    conds = [
        Cond("Ready", TRUE if phase == "Succeeded" else FALSE, reason, message),
        Cond("Reconciling", FALSE if done or stuck else TRUE, reason, message),
        Cond(
            "Stalled",
            TRUE if stuck else FALSE,
            reason if stuck else "NotStalled",
            message if stuck else "",
        ),
        Cond("Created", TRUE if created else FALSE, "JobCreated" if created else "NotCreated", ""),
        Cond(
            "Running",
            TRUE if running else FALSE,
            "PodsRunning" if running else ("Finished" if done else "NotRunning"),
            "",
        ),
        Cond(
            "Restarting",
            TRUE if restarting else FALSE,
            restarting[0] if restarting else "NotRestarting",
            restarting[1] if restarting else "",
        ),
        Cond(
            "Suspended",
            TRUE if suspended else FALSE,
            "Suspended" if suspended else "NotSuspended",
            "",
        ),
        Cond(
            "Complete",
            TRUE if phase == "Succeeded" else FALSE,
            "Succeeded" if phase == "Succeeded" else "NotComplete",
            "",
        ),
        Cond(
            "Failed",
            TRUE if phase == "Failed" else FALSE,
            reason if phase == "Failed" else "NotFailed",
            message if phase == "Failed" else "",
        ),
    ]
    return conds + list(extra)


def build_status(
    prev: Mapping[str, Any],
    generation: int,
    now: str,
    phase: str,
    conds: Sequence[Cond],
    **fields: Any,
) -> dict[str, Any]:
    """Previous status fields carried over, then the new phase, conditions and ``fields``."""
    st: dict[str, Any] = {k: v for k, v in prev.items() if k not in ("kopf",)}
    st["phase"] = phase
    mine = {c.type for c in conds}
    kept = [  # conditions a kind adds itself (EvalRun's Passed) survive later passes
        Cond(c["type"], c["status"], c["reason"], c.get("message", ""))
        for c in prev.get("conditions") or []
        if c.get("type") not in mine
    ]
    st["conditions"] = merge(prev.get("conditions"), [*conds, *kept], generation, now)
    for k, v in fields.items():
        if v is None:
            st.pop(k, None)
        else:
            st[k] = v
    return st


def waiting(
    prev: Mapping[str, Any], generation: int, now: dt.datetime, message: str
) -> dict[str, Any]:
    """Status of a resource whose upstream has not produced its output yet."""
    conds = _phase_conditions(
        "Waiting",
        "WaitingForDependency",
        message,
        created=False,
        running=False,
        restarting=None,
        suspended=False,
    )
    return build_status(prev, generation, now_rfc3339(now), "Waiting", conds)


def stalled(
    prev: Mapping[str, Any],
    generation: int,
    now: dt.datetime,
    reason: str,
    message: str,
    phase: str | None = None,
) -> dict[str, Any]:
    """Status of a resource that cannot proceed without a change (bad spec, failed upstream).

    The phase stays what it was (``Waiting`` or ``Pending``) unless given: the resource itself
    has not failed, it is blocked.
    """
    ph = phase or (prev.get("phase") if prev.get("phase") in ("Waiting", "Pending") else "Pending")
    conds = [
        Cond("Ready", FALSE, reason, message),
        Cond("Reconciling", FALSE, reason, message),
        Cond("Stalled", TRUE, reason, message),
    ]
    mine = {x.type for x in conds}
    keep = [
        Cond(c["type"], c["status"], c["reason"], c.get("message", ""))
        for c in prev.get("conditions") or []
        if c["type"] not in mine
    ]
    return build_status(prev, generation, now_rfc3339(now), str(ph), conds + keep)


def _job_state(job: Mapping[str, Any] | None) -> tuple[bool, bool, bool]:
    """(exists, deleting, suspended)"""
    if not job:
        return False, False, False
    return (
        True,
        bool(job.get("metadata", {}).get("deletionTimestamp")),
        bool(job.get("spec", {}).get("suspend")),
    )


def _label(job: Mapping[str, Any], key: str) -> str | None:
    return (job.get("metadata", {}).get("labels") or {}).get(key)


def _annotation(job: Mapping[str, Any], key: str) -> str | None:
    return (job.get("metadata", {}).get("annotations") or {}).get(key)


def _rank0_first(pods: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return sorted(pods, key=pod_index)


def _result(pods: Sequence[Mapping[str, Any]], container: str) -> dict[str, Any] | None:
    for p in _rank0_first(pods):
        r = pod_result(p, container)
        if r is not None:
            return r
    return None


def _progress(doc: Mapping[str, Any] | None) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """(progress, checkpoint) from the workload's progress JSON, unknown keys dropped."""
    if not doc:
        return None, None
    prog: dict[str, Any] = {}
    for key, typ in (
        ("step", int),
        ("totalSteps", int),
        ("loss", float),
        ("tokensPerSecond", float),
        ("epoch", int),
    ):
        v = doc.get(key)
        if not isinstance(v, int | float) or isinstance(v, bool):
            continue
        if v >= 0 or key == "loss":
            prog[key] = typ(v)
    return (prog or None), checkpoint_of(doc.get("checkpoint"))


def checkpoint_of(raw: Any) -> dict[str, Any] | None:
    if not isinstance(raw, Mapping):
        return None
    ck: dict[str, Any] = {}
    if isinstance(raw.get("step"), int) and raw["step"] >= 0:
        ck["step"] = raw["step"]
    if isinstance(raw.get("path"), str):
        ck["path"] = raw["path"][:2048]
    return ck or None


def lost_member(obs: BatchObservation) -> Failure | None:
    """A gang that was fully running has fewer live members than nodes: a pod vanished (its
    node was lost and the pod deleted) and the Job controller may be replacing it alone."""
    live = [
        p
        for p in obs.pods
        if not p.get("metadata", {}).get("deletionTimestamp")
        and p.get("status", {}).get("phase") in ("Running", "Succeeded")
    ]
    if len(live) >= obs.nodes:
        return None
    return Failure(
        True,
        "PodLost",
        f"{obs.nodes - len(live)} of {obs.nodes} pod(s) of the running gang were lost "
        "(node lost or pod deleted)",
    )


NEXT_RESTART = "nextRestartTime"


def restart_time(now: dt.datetime, seconds: int) -> str | None:
    """``status.nextRestartTime`` for a restart decided at ``now`` that waits ``seconds``:
    rounded up to the second (RFC 3339 has no fraction here), so it is never early. None for
    no wait."""
    if seconds <= 0:
        return None
    at = now + dt.timedelta(seconds=seconds)
    if at.microsecond:
        at = at.replace(microsecond=0) + dt.timedelta(seconds=1)
    return now_rfc3339(at)


def backoff_left(status: Mapping[str, Any], now: dt.datetime) -> float:
    """Seconds until ``status.nextRestartTime`` (0 when there is none or it has passed)."""
    at = parse_time(status.get(NEXT_RESTART))
    return max(0.0, (at - now).total_seconds()) if at else 0.0


def _in(seconds: int) -> str:
    return f" in {seconds}s" if seconds > 0 else ""


def decide(obs: BatchObservation) -> BatchDecision:
    prev = dict(obs.status)
    gen = obs.generation
    now = now_rfc3339(obs.now)
    phase_prev = prev.get("phase")
    restarts = int(prev.get("restarts") or 0)
    exists, deleting, job_suspended = _job_state(obs.job)

    def out(
        action: Action,
        phase: str,
        reason: str,
        message: str = "",
        *,
        running: bool = False,
        restarting: tuple[str, str] | None = None,
        suspended: bool = False,
        created: bool | None = None,
        stalled: bool = False,
        **fields: Any,
    ) -> BatchDecision:
        conds = _phase_conditions(
            phase,
            reason,
            message,
            created=exists and not deleting if created is None else created,
            running=running,
            restarting=restarting,
            suspended=suspended,
            stalled=stalled,
        )
        st = build_status(prev, gen, now, phase, conds, **fields)
        if action == "create" or not restarting:
            st.pop(NEXT_RESTART, None)  # the wait is over (or there is none)
        events = [
            (
                "Warning" if c["type"] in ("Failed", "Stalled", "Restarting") else "Normal",
                c["reason"],
                c["message"] or f"{c['type']}={c['status']}",
            )
            for c in transitions(prev.get("conditions"), st["conditions"])
            if c["status"] == TRUE and c["type"] not in ("Reconciling",)
        ]
        return BatchDecision(action, st, events=events)

    # 1. Finished resources stay finished; only the TTL clean-up remains to do.
    if phase_prev in TERMINAL:
        failed_c = next(
            (c for c in prev.get("conditions") or [] if c.get("type") == "Failed"), None
        )
        reason = (
            "Succeeded"
            if phase_prev == "Succeeded"
            else (str(failed_c.get("reason")) if failed_c and failed_c.get("reason") else "Failed")
        )
        message = next(
            (
                c.get("message", "")
                for c in prev.get("conditions") or []
                if c.get("type") == ("Ready" if phase_prev == "Succeeded" else "Failed")
            ),
            "",
        )
        action: Action = "none"
        ttl = obs.ttl_seconds_after_finished
        done_at = parse_time(prev.get("completionTime"))
        if ttl is not None and done_at and (obs.now - done_at).total_seconds() >= ttl:
            action = "cleanup"
        elif (
            phase_prev == "Failed"
            and exists
            and not deleting
            and int((obs.job or {}).get("status", {}).get("active") or 0) > 0
        ):
            action = "delete"  # never leave pods of a failed run burning GPUs
        d = out(action, phase_prev, reason, message, created=exists)
        d.events = []
        return d

    start_time = prev.get("startTime")

    # 2. The whole-run deadline (wall time since the first start, restarts included).
    started = parse_time(start_time)
    if (
        obs.active_deadline_seconds
        and started
        and (obs.now - started).total_seconds() > obs.active_deadline_seconds
    ):
        d = out(
            "delete" if exists and not deleting else "none",
            "Failed",
            "DeadlineExceeded",
            f"the run exceeded activeDeadlineSeconds={obs.active_deadline_seconds}",
            completionTime=now,
        )
        d.reason = "DeadlineExceeded"
        return d

    restarting_prev = next(
        (
            c
            for c in prev.get("conditions") or []
            if c.get("type") == "Restarting" and c.get("status") == TRUE
        ),
        None,
    )
    still_restarting = (
        (restarting_prev["reason"], restarting_prev.get("message", "")) if restarting_prev else None
    )
    left = backoff_left(prev, obs.now) if still_restarting else 0.0

    def backoff_message(before: str = "") -> str:
        assert still_restarting is not None
        return (
            f"{before}restart backoff: the new gang starts in {int(left + 0.999)}s "
            f"(at {prev.get(NEXT_RESTART)}, runPolicy.restartDelay) after "
            f"{still_restarting[0]}: {still_restarting[1]}"
        )

    # 3. No Job: create it (first start, after a restart, or after a resume).
    if not exists:
        if obs.suspend:
            # Queued: no Job while suspended (Kueue owns a queued Job's suspend; see step 8).
            return out(
                "none" if obs.queued else "create",
                "Suspended",
                "Suspended",
                SUSPENDED_QUEUED if obs.queued else "suspended by spec.suspend",
                suspended=True,
                created=False,
            )
        if left > 0:  # a retried failure: wait out runPolicy.restartDelay, then create
            d = out(
                "none",
                "Pending",
                "RestartBackoff",
                backoff_message(),
                restarting=still_restarting,
                created=False,
            )
            d.requeue_after = left
            return d
        gone = missing(obs.refs_found)
        if gone is not None:  # what the pods need is not there: create nothing yet
            return out("none", "Pending", gone.reason, gone.message, stalled=True, created=False)
        d = out(
            "create",
            "Pending",
            "Creating",
            "creating the Job",
            restarting=still_restarting,
            created=False,
        )
        return d

    job = obs.job
    assert job is not None

    # 4. A Job being deleted (gang restart in progress): wait for it to be gone.
    if deleting and obs.suspend:
        msg = SUSPENDED_QUEUED if obs.queued else "suspended by spec.suspend"
        return out("none", "Suspended", "Suspended", msg, suspended=True, created=False)
    if deleting:
        if left > 0:
            d = out(
                "none",
                "Running",
                "RestartBackoff",
                backoff_message("waiting for the previous pods to terminate; "),
                restarting=still_restarting,
                created=False,
            )
            d.requeue_after = left
            return d
        return out(
            "none",
            "Running" if still_restarting else (phase_prev or "Pending"),
            still_restarting[0] if still_restarting else "Deleting",
            "waiting for the previous pods to terminate",
            restarting=still_restarting,
            created=False,
        )

    attempt = _label(job, ATTEMPT_LABEL)
    stale = attempt is not None and attempt.isdigit() and int(attempt) < restarts

    # 5. The spec changed under a live Job: restart the gang with the new spec (not counted).
    if _annotation(job, HASH_ANNOTATION) not in (None, obs.desired_hash) and not stale:
        d = out(
            "restart",
            "Running" if phase_prev == "Running" else "Pending",
            "SpecChanged",
            "the spec changed: restarting the gang with the new spec",
            restarting=("SpecChanged", "the spec changed: restarting with the new spec"),
        )
        d.reason = "SpecChanged"
        return d

    # 6. Success.
    if job_condition(job, "Complete") or job_condition(job, "SuccessCriteriaMet"):
        result = _result(obs.pods, obs.container) or {}
        ok = result.get("ok", True) is not False
        if not ok:
            msg = str(result.get("reason") or "the workload reported ok=false")[:1024]
            d = out("none", "Failed", "WorkloadFailed", msg, completionTime=now)
        else:
            ck = checkpoint_of(result.get("checkpoint"))
            d = out(
                "none",
                "Succeeded",
                "Succeeded",
                "the run completed",
                completionTime=now,
                lastCheckpoint=ck or prev.get("lastCheckpoint"),
            )
        d.result = result
        return d

    # 7. Failure: restart the gang or fail. Pods of a suspended Job end because of the
    # suspension (spec.suspend, Kueue eviction or preemption): never a failure.
    failure: Failure | None = None
    if not job_suspended:
        failure = classify(
            job, obs.pods, obs.retryable_exit_codes, obs.container, obs.failure_rules
        )
    if failure is None and phase_prev == "Running" and not job_suspended:
        failure = lost_member(obs)
        if failure is not None:
            failure = apply_rules(failure, obs.failure_rules, None, "")
    delay = obs.restart_delay
    if failure is not None and failure.retryable and not failure.counted and not stale:
        # Preempted or evicted: the gang restarts without using up the backoff limit, after
        # the initial delay (it does not grow: the cause was not the job's).
        wait = delay.initial_seconds
        d = out(
            "restart",
            "Running" if phase_prev == "Running" else "Pending",
            failure.reason,
            f"restart (not counted: {failure.reason}){_in(wait)}: {failure.message}",
            restarting=(failure.reason, failure.message),
            nextRestartTime=restart_time(obs.now, wait),
        )
        d.reason = failure.reason
        return d
    if failure is not None:
        if stale:  # a restart already counted (operator restarted mid-way): just delete it
            d = out(
                "restart",
                "Running",
                "Restarting",
                failure.message,
                restarting=(failure.reason, failure.message),
            )
            d.reason = failure.reason
            return d
        if not failure.retryable:
            d = out("none", "Failed", failure.reason, failure.message, completionTime=now)
            d.result = dict(failure.result) if failure.result else None
            return d
        if restarts >= obs.backoff_limit:
            d = out(
                "delete",
                "Failed",
                "BackoffLimitExceeded",
                f"{restarts} restart(s) used up (backoffLimit {obs.backoff_limit}); "
                f"last failure: {failure.message}",
                completionTime=now,
            )
            d.reason = "BackoffLimitExceeded"
            return d
        wait = delay.seconds(restarts + 1)
        d = out(
            "restart",
            "Running",
            failure.reason,
            f"restart {restarts + 1}/{obs.backoff_limit}{_in(wait)}: {failure.message}",
            restarting=(failure.reason, failure.message),
            restarts=restarts + 1,
            nextRestartTime=restart_time(obs.now, wait),
        )
        d.reason, d.counted = failure.reason, True
        return d

    # 8. Suspend / resume. A queued Job's spec.suspend belongs to Kueue (it unsuspends on
    # admission and suspends on eviction or preemption): the operator never patches it. A
    # queued resource is suspended by deleting its Job (its Workload goes with it and the
    # quota is released); resuming creates a new one for Kueue to admit.
    if obs.queued:
        if obs.suspend:
            d = out("delete", "Suspended", "Suspended", SUSPENDED_QUEUED, suspended=True)
            d.reason = "Suspended"
            return d
        if job_suspended and phase_prev == "Suspended":
            # A Job left from a suspension (an older operator suspended Jobs in place):
            # replace it with a fresh one for Kueue to admit.
            d = out("restart", "Pending", "Resumed", "resumed: recreating the Job")
            d.reason = "Resumed"
            return d
        if job_suspended:
            again = " again (the run was preempted or evicted)" if phase_prev == "Running" else ""
            msg = queued_message(obs.workload) or f"waiting for Kueue to admit the Job{again}"
            return out("none", "Pending", "Queued", msg)
    else:
        if obs.suspend and not job_suspended:
            return out(
                "suspend", "Suspended", "Suspended", "suspended by spec.suspend", suspended=True
            )
        if not obs.suspend and job_suspended:
            if phase_prev == "Suspended":  # the operator suspended it: resume
                return out("unsuspend", "Pending", "Resumed", "resumed by spec.suspend=false")
            # Suspended by someone else (Kueue's manageJobsWithoutQueueName): theirs to resume.
            return out(
                "none",
                "Pending",
                "Queued",
                queued_message(obs.workload)
                or "the Job is suspended by another controller (Kueue?): waiting for it to resume",
            )
        if job_suspended:
            return out(
                "none", "Suspended", "Suspended", "suspended by spec.suspend", suspended=True
            )

    # 9. Running or starting.
    pods = [p for p in obs.pods if not p.get("metadata", {}).get("deletionTimestamp")]
    running = [p for p in pods if p.get("status", {}).get("phase") == "Running"]
    progress, ck = _progress(obs.progress)
    fields: dict[str, Any] = {}
    if progress:
        fields["progress"] = progress
    if ck:
        fields["lastCheckpoint"] = ck
    if len(running) >= obs.nodes:
        if not start_time:
            fields["startTime"] = now
        return out(
            "none",
            "Running",
            "Running",
            f"{len(running)}/{obs.nodes} pod(s) running",
            running=True,
            **fields,
        )
    counts = f"{len(running)}/{obs.nodes} pod(s) running"
    why = (failed_create(obs.events) if len(pods) < obs.nodes else None) or of_pods(pods)
    if why is not None:
        return out(
            "none",
            "Pending",
            why.reason,
            f"{counts}: {why.message}",
            restarting=still_restarting,
            stalled=why.stalled,
            **fields,
        )
    return out(
        "none",
        "Pending",
        "PodsStarting",
        counts,
        restarting=still_restarting,
        **fields,
    )
