"""The steps of a batch pass up to the gang's failure, in the order ``batch_decide.STEPS`` tries
them: each one a pure check of the :class:`BatchContext` that returns its decision, or None to
leave the pass to the next step. ``batch_steps_run`` has the steps after these (a live Job
that neither completed nor failed)."""

from __future__ import annotations

from ..api.labels import SPEC_HASH_ANNOTATION as HASH_ANNOTATION
from .batch_context import BatchContext
from .batch_observation import (
    Action,
    BatchDecision,
    checkpoint_of,
    gang_result,
    gang_succeeded,
    job_annotation,
    restart_time,
)
from .batch_phase import SUSPENDED_QUEUED, TERMINAL
from .conditions import parse_time
from .pod_reports import job_condition
from .stuck import missing


def _in(seconds: int) -> str:
    return f" in {seconds}s" if seconds > 0 else ""


def _spec_suspended(ctx: BatchContext) -> str:
    return SUSPENDED_QUEUED if ctx.obs.queued else "suspended by spec.suspend"


# Finished resources stay finished; only the TTL clean-up remains to do.


def terminal_stays(ctx: BatchContext) -> BatchDecision | None:
    """Succeeded or Failed before: stays so (no Events); the TTL clean-up once it is due, and
    the pods of a failed run still active deleted (never left burning GPUs)."""
    prev, phase_prev, obs = ctx.prev, ctx.phase_prev, ctx.obs
    if phase_prev not in TERMINAL:
        return None
    failed_c = next((c for c in prev.get("conditions") or [] if c.get("type") == "Failed"), None)
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
        and ctx.exists
        and not ctx.deleting
        and int((obs.job or {}).get("status", {}).get("active") or 0) > 0
    ):
        action = "delete"  # never leave pods of a failed run burning GPUs
    d = ctx.out(action, phase_prev, reason, message, created=ctx.exists)
    d.events = []
    return d


# The whole-run deadline (wall time since the first start, restarts included).


def deadline_exceeded(ctx: BatchContext) -> BatchDecision | None:
    """Past activeDeadlineSeconds since status.startTime: Failed, the Job deleted."""
    obs = ctx.obs
    started = parse_time(ctx.start_time)
    if not (
        obs.active_deadline_seconds
        and started
        and (obs.now - started).total_seconds() > obs.active_deadline_seconds
    ):
        return None
    d = ctx.out(
        "delete" if ctx.exists and not ctx.deleting else "none",
        "Failed",
        "DeadlineExceeded",
        f"the run exceeded activeDeadlineSeconds={obs.active_deadline_seconds}",
        completionTime=ctx.now,
    )
    d.reason = "DeadlineExceeded"
    return d


# No Job: create it (first start, after a restart, or after a resume).


def suspended_without_job(ctx: BatchContext) -> BatchDecision | None:
    """No Job and spec.suspend: Suspended. A queued resource has no Job while suspended (Kueue
    owns a queued Job's suspend; see ``queued_suspend``); otherwise the Job is created
    suspended."""
    # The restart being waited out is read on every path past the deadline, as the pass always
    # has: a Restarting condition without a reason (which the CRD refuses) raises here.
    _ = ctx.left
    if ctx.exists or not ctx.obs.suspend:
        return None
    return ctx.out(
        "none" if ctx.obs.queued else "create",
        "Suspended",
        "Suspended",
        _spec_suspended(ctx),
        suspended=True,
        created=False,
    )


def backoff_before_create(ctx: BatchContext) -> BatchDecision | None:
    """No Job after a retried failure: wait out runPolicy.restartDelay, then create."""
    if ctx.exists or not ctx.left > 0:
        return None
    d = ctx.out(
        "none",
        "Pending",
        "RestartBackoff",
        ctx.backoff_message(),
        restarting=ctx.still_restarting,
        created=False,
    )
    d.requeue_after = ctx.left
    return d


def references_missing(ctx: BatchContext) -> BatchDecision | None:
    """No Job and a PVC, Secret or ConfigMap the pods need is not there: create nothing yet."""
    if ctx.exists:
        return None
    gone = missing(ctx.obs.refs_found)
    if gone is None:
        return None
    return ctx.out("none", "Pending", gone.reason, gone.message, stalled=True, created=False)


def create_job(ctx: BatchContext) -> BatchDecision | None:
    """No Job: create it."""
    if ctx.exists:
        return None
    return ctx.out(
        "create",
        "Pending",
        "Creating",
        "creating the Job",
        restarting=ctx.still_restarting,
        created=False,
    )


# A Job being deleted (gang restart in progress): wait for it to be gone.


def deleting_while_suspended(ctx: BatchContext) -> BatchDecision | None:
    """The Job is being deleted and spec.suspend is set: Suspended."""
    if not (ctx.deleting and ctx.obs.suspend):
        return None
    return ctx.out(
        "none", "Suspended", "Suspended", _spec_suspended(ctx), suspended=True, created=False
    )


def backoff_while_deleting(ctx: BatchContext) -> BatchDecision | None:
    """The Job of a retried failure is being deleted and the restart backoff is not over."""
    if not (ctx.deleting and ctx.left > 0):
        return None
    d = ctx.out(
        "none",
        "Running",
        "RestartBackoff",
        ctx.backoff_message("waiting for the previous pods to terminate; "),
        restarting=ctx.still_restarting,
        created=False,
    )
    d.requeue_after = ctx.left
    return d


def wait_for_deletion(ctx: BatchContext) -> BatchDecision | None:
    """The Job is being deleted: wait for its pods to terminate."""
    if not ctx.deleting:
        return None
    still_restarting = ctx.still_restarting
    return ctx.out(
        "none",
        "Running" if still_restarting else (ctx.phase_prev or "Pending"),
        still_restarting[0] if still_restarting else "Deleting",
        "waiting for the previous pods to terminate",
        restarting=still_restarting,
        created=False,
    )


# The spec changed under a live Job: restart the gang with the new spec (not counted).


def spec_changed(ctx: BatchContext) -> BatchDecision | None:
    """The Job's spec hash is not the spec's (and the Job is not of a stale attempt): restart
    the gang with the new spec, not counted."""
    stale = ctx.stale
    if job_annotation(ctx.job, HASH_ANNOTATION) in (None, ctx.obs.desired_hash) or stale:
        return None
    d = ctx.out(
        "restart",
        "Running" if ctx.phase_prev == "Running" else "Pending",
        "SpecChanged",
        "the spec changed: restarting the gang with the new spec",
        restarting=("SpecChanged", "the spec changed: restarting with the new spec"),
    )
    d.reason = "SpecChanged"
    return d


# Success.


def completed(ctx: BatchContext) -> BatchDecision | None:
    """The Job completed (or every completion index's pod succeeded): Succeeded with the
    workload's result and checkpoint, or Failed (WorkloadFailed) when it reported ok=false."""
    obs, job = ctx.obs, ctx.job
    if not (
        job_condition(job, "Complete")
        or job_condition(job, "SuccessCriteriaMet")
        or gang_succeeded(obs.pods, obs.nodes)
    ):
        return None
    result = gang_result(obs.pods, obs.container) or {}
    ok = result.get("ok", True) is not False
    if not ok:
        msg = str(result.get("reason") or "the workload reported ok=false")[:1024]
        d = ctx.out("none", "Failed", "WorkloadFailed", msg, completionTime=ctx.now)
    else:
        ck = checkpoint_of(result.get("checkpoint"))
        d = ctx.out(
            "none",
            "Succeeded",
            "Succeeded",
            "the run completed",
            completionTime=ctx.now,
            lastCheckpoint=ck or ctx.prev.get("lastCheckpoint"),
        )
    d.result = result
    return d


# Failure (BatchContext.failure): restart the gang or fail.


def restart_not_counted(ctx: BatchContext) -> BatchDecision | None:
    """Preempted or evicted (a retryable failure that does not count): the gang restarts
    without using up the backoff limit, after the initial delay (it does not grow: the cause
    was not the job's)."""
    failure = ctx.failure
    if failure is None or not failure.retryable or failure.counted or ctx.stale:
        return None
    wait = ctx.obs.restart_delay.initial_seconds
    d = ctx.out(
        "restart",
        "Running" if ctx.phase_prev == "Running" else "Pending",
        failure.reason,
        f"restart (not counted: {failure.reason}){_in(wait)}: {failure.message}",
        restarting=(failure.reason, failure.message),
        nextRestartTime=restart_time(ctx.obs.now, wait),
    )
    d.reason = failure.reason
    return d


def stale_attempt_failed(ctx: BatchContext) -> BatchDecision | None:
    """A failure of a stale attempt: its restart was already counted (the operator restarted
    mid-way), so just delete the Job."""
    failure = ctx.failure
    if failure is None or not ctx.stale:
        return None
    d = ctx.out(
        "restart",
        "Running",
        "Restarting",
        failure.message,
        restarting=(failure.reason, failure.message),
    )
    d.reason = failure.reason
    return d


def permanent_failure(ctx: BatchContext) -> BatchDecision | None:
    """A failure that is not retryable: Failed, with the workload's result if it gave one."""
    failure = ctx.failure
    if failure is None or failure.retryable:
        return None
    d = ctx.out("none", "Failed", failure.reason, failure.message, completionTime=ctx.now)
    d.result = dict(failure.result) if failure.result else None
    return d


def backoff_limit_exceeded(ctx: BatchContext) -> BatchDecision | None:
    """A retryable failure with the backoff limit used up: Failed, the Job deleted."""
    failure, obs = ctx.failure, ctx.obs
    if failure is None or ctx.restarts < obs.backoff_limit:
        return None
    d = ctx.out(
        "delete",
        "Failed",
        "BackoffLimitExceeded",
        f"{ctx.restarts} restart(s) used up (backoffLimit {obs.backoff_limit}); "
        f"last failure: {failure.message}",
        completionTime=ctx.now,
    )
    d.reason = "BackoffLimitExceeded"
    return d


def restart_counted(ctx: BatchContext) -> BatchDecision | None:
    """A retryable failure: restart the gang after runPolicy.restartDelay, counted."""
    failure, obs = ctx.failure, ctx.obs
    if failure is None:
        return None
    restarts = ctx.restarts
    wait = obs.restart_delay.seconds(restarts + 1)
    d = ctx.out(
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
