"""The pure decision for the batch kinds (TrainJob, FineTune, EvalRun): from what the reconciler
observed, one action on the Job, the complete new status and the Events to record. No I/O."""

from __future__ import annotations

from typing import Any

from ..api.labels import ATTEMPT_LABEL
from ..api.labels import SPEC_HASH_ANNOTATION as HASH_ANNOTATION
from .batch_observation import (
    NEXT_RESTART,
    Action,
    BatchDecision,
    BatchObservation,
    backoff_left,
    checkpoint_of,
    gang_result,
    gang_succeeded,
    job_annotation,
    job_label,
    job_state,
    lost_member,
    progress_of,
    restart_time,
)
from .batch_phase import SUSPENDED_QUEUED, TERMINAL, build_status, phase_conditions
from .conditions import TRUE, now_rfc3339, parse_time, transitions
from .failure_rules import Failure, apply_rules
from .kueue import queued_message
from .pod_failures import classify
from .pod_reports import job_condition
from .stuck import failed_create, missing, of_pods


def _in(seconds: int) -> str:
    return f" in {seconds}s" if seconds > 0 else ""


def decide(obs: BatchObservation) -> BatchDecision:
    prev = dict(obs.status)
    gen = obs.generation
    now = now_rfc3339(obs.now)
    phase_prev = prev.get("phase")
    restarts = int(prev.get("restarts") or 0)
    exists, deleting, job_suspended = job_state(obs.job)

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
        conds = phase_conditions(
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

    attempt = job_label(job, ATTEMPT_LABEL)
    stale = attempt is not None and attempt.isdigit() and int(attempt) < restarts

    # 5. The spec changed under a live Job: restart the gang with the new spec (not counted).
    if job_annotation(job, HASH_ANNOTATION) not in (None, obs.desired_hash) and not stale:
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
    if (
        job_condition(job, "Complete")
        or job_condition(job, "SuccessCriteriaMet")
        or gang_succeeded(obs.pods, obs.nodes)
    ):
        result = gang_result(obs.pods, obs.container) or {}
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
    progress, ck = progress_of(obs.progress)
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
