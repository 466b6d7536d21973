"""The last steps of a batch pass, in the order ``batch_decide.STEPS`` tries them: a live Job
that neither completed nor failed is suspended, resumed, queued, running or starting. Each is a
pure check of the :class:`BatchContext` that returns its decision, or None to leave the pass to
the next step; ``pods_starting``, the last, always answers."""

from __future__ import annotations

from .batch_context import BatchContext
from .batch_observation import BatchDecision
from .batch_phase import SUSPENDED_QUEUED
from .kueue import queued_message
from .stuck import failed_create, of_pods

# Suspend / resume. A queued Job's spec.suspend belongs to Kueue (it unsuspends on
# admission and suspends on eviction or preemption): the operator never patches it. A
# queued resource is suspended by deleting its Job (its Workload goes with it and the
# quota is released); resuming creates a new one for Kueue to admit.


def queued_suspend(ctx: BatchContext) -> BatchDecision | None:
    """Queued and spec.suspend: delete the Job, so that Kueue releases its quota."""
    if not (ctx.obs.queued and ctx.obs.suspend):
        return None
    d = ctx.out("delete", "Suspended", "Suspended", SUSPENDED_QUEUED, suspended=True)
    d.reason = "Suspended"
    return d


def queued_resume(ctx: BatchContext) -> BatchDecision | None:
    """Queued, resumed, and the Job is one left from a suspension (an older operator suspended
    Jobs in place): replace it with a fresh one for Kueue to admit."""
    if not (ctx.obs.queued and ctx.job_suspended and ctx.phase_prev == "Suspended"):
        return None
    d = ctx.out("restart", "Pending", "Resumed", "resumed: recreating the Job")
    d.reason = "Resumed"
    return d


def queued_waiting(ctx: BatchContext) -> BatchDecision | None:
    """Queued and the Job suspended: Pending, waiting for Kueue to admit it (again, after a
    preemption or eviction)."""
    if not (ctx.obs.queued and ctx.job_suspended):
        return None
    again = " again (the run was preempted or evicted)" if ctx.phase_prev == "Running" else ""
    msg = queued_message(ctx.obs.workload) or f"waiting for Kueue to admit the Job{again}"
    return ctx.out("none", "Pending", "Queued", msg)


def suspend_job(ctx: BatchContext) -> BatchDecision | None:
    """Not queued, spec.suspend set and the Job not suspended: suspend it."""
    if ctx.obs.queued or not ctx.obs.suspend or ctx.job_suspended:
        return None
    return ctx.out("suspend", "Suspended", "Suspended", "suspended by spec.suspend", suspended=True)


def resume_job(ctx: BatchContext) -> BatchDecision | None:
    """Not queued, spec.suspend unset and the Job suspended by the operator: resume it."""
    if ctx.obs.queued or ctx.obs.suspend or not ctx.job_suspended:
        return None
    if ctx.phase_prev != "Suspended":
        return None
    return ctx.out("unsuspend", "Pending", "Resumed", "resumed by spec.suspend=false")


def suspended_elsewhere(ctx: BatchContext) -> BatchDecision | None:
    """Not queued, spec.suspend unset and the Job suspended by someone else (Kueue's
    manageJobsWithoutQueueName): theirs to resume; Pending (Queued)."""
    if ctx.obs.queued or ctx.obs.suspend or not ctx.job_suspended:
        return None
    return ctx.out(
        "none",
        "Pending",
        "Queued",
        queued_message(ctx.obs.workload)
        or "the Job is suspended by another controller (Kueue?): waiting for it to resume",
    )


def stays_suspended(ctx: BatchContext) -> BatchDecision | None:
    """Not queued, spec.suspend set and the Job suspended: Suspended."""
    if ctx.obs.queued or not ctx.job_suspended:
        return None
    return ctx.out("none", "Suspended", "Suspended", "suspended by spec.suspend", suspended=True)


# Running or starting.


def running(ctx: BatchContext) -> BatchDecision | None:
    """Every member of the gang runs: Running (startTime set the first time), with the
    workload's progress."""
    nodes, running_pods = ctx.obs.nodes, ctx.running_pods
    fields = ctx.progress_fields()
    if len(running_pods) < nodes:
        return None
    if not ctx.start_time:
        fields["startTime"] = ctx.now
    return ctx.out(
        "none",
        "Running",
        "Running",
        f"{len(running_pods)}/{nodes} pod(s) running",
        running=True,
        **fields,
    )


def _counts(ctx: BatchContext) -> str:
    return f"{len(ctx.running_pods)}/{ctx.obs.nodes} pod(s) running"


def pods_stuck(ctx: BatchContext) -> BatchDecision | None:
    """Not every pod runs and something keeps them from it (pod creation refused, a pod that
    cannot be scheduled, a container that cannot start): Pending, named in the status."""
    pods = ctx.live_pods
    why = (failed_create(ctx.obs.events) if len(pods) < ctx.obs.nodes else None) or of_pods(pods)
    if why is None:
        return None
    return ctx.out(
        "none",
        "Pending",
        why.reason,
        f"{_counts(ctx)}: {why.message}",
        restarting=ctx.still_restarting,
        stalled=why.stalled,
        **ctx.progress_fields(),
    )


def pods_starting(ctx: BatchContext) -> BatchDecision:
    """Otherwise the pods are starting: Pending (PodsStarting). Always answers."""
    return ctx.out(
        "none",
        "Pending",
        "PodsStarting",
        _counts(ctx),
        restarting=ctx.still_restarting,
        **ctx.progress_fields(),
    )
