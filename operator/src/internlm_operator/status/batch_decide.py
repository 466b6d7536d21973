"""The pure decision for the batch kinds (TrainJob, FineTune, EvalRun): from what the reconciler
observed, one action on the Job, the complete new status and the Events to record. No I/O.

A pass is an ordered list of small steps (``STEPS``), each a pure check of the
:class:`BatchContext` built once from the observation that returns a decision or None;
``decide`` returns the first decision. The steps, in order (``batch_steps`` has 1-16,
``batch_steps_run`` 17-26, ``batch_context`` what they share):

1. ``terminal_stays``: Succeeded or Failed stays so; TTL clean-up, or delete a failed run's
   active pods.
2. ``deadline_exceeded``: past activeDeadlineSeconds since the first start: Failed.

   No Job:

3. ``suspended_without_job``: spec.suspend: Suspended (a queued resource has no Job, otherwise
   it is created suspended).
4. ``backoff_before_create``: a retried failure's runPolicy.restartDelay is not over: wait.
5. ``references_missing``: a PVC, Secret or ConfigMap the pods need is missing: create nothing.
6. ``create_job``: create the Job.

   The Job is being deleted (a gang restart in progress):

7. ``deleting_while_suspended``: spec.suspend: Suspended.
8. ``backoff_while_deleting``: the restart backoff is not over: wait for it.
9. ``wait_for_deletion``: wait for the previous pods to terminate.

   A live Job:

10. ``spec_changed``: the Job is of an older spec: restart the gang, not counted.
11. ``completed``: the Job completed: Succeeded, or WorkloadFailed if it reported ok=false.

    The gang failed (``BatchContext.failure``):

12. ``restart_not_counted``: preempted or evicted: restart without using up the backoff limit.
13. ``stale_attempt_failed``: its restart was already counted: just delete the Job.
14. ``permanent_failure``: not retryable: Failed.
15. ``backoff_limit_exceeded``: the backoff limit is used up: Failed, the Job deleted.
16. ``restart_counted``: restart the gang after the restart delay, counted.

    Suspend and resume, queued (Kueue owns the Job's spec.suspend):

17. ``queued_suspend``: spec.suspend: delete the Job so that Kueue releases its quota.
18. ``queued_resume``: resumed, the Job left suspended in place: recreate it.
19. ``queued_waiting``: the Job is suspended: Pending, waiting for Kueue to admit it.

    Suspend and resume, not queued:

20. ``suspend_job``: spec.suspend and the Job runs: suspend it.
21. ``resume_job``: spec.suspend unset, the Job suspended by the operator: resume it.
22. ``suspended_elsewhere``: the Job suspended by another controller: Pending (Queued).
23. ``stays_suspended``: spec.suspend and the Job suspended: Suspended.

    Running or starting:

24. ``running``: every member of the gang runs: Running, with the workload's progress.
25. ``pods_stuck``: pods that cannot be created, scheduled or started: Pending, named.
26. ``pods_starting``: otherwise Pending (PodsStarting); always answers.
"""

from __future__ import annotations

from .batch_context import BatchContext, Step
from .batch_observation import BatchDecision, BatchObservation
from .batch_steps import (
    backoff_before_create,
    backoff_limit_exceeded,
    backoff_while_deleting,
    completed,
    create_job,
    deadline_exceeded,
    deleting_while_suspended,
    permanent_failure,
    references_missing,
    restart_counted,
    restart_not_counted,
    spec_changed,
    stale_attempt_failed,
    suspended_without_job,
    terminal_stays,
    wait_for_deletion,
)
from .batch_steps_run import (
    pods_starting,
    pods_stuck,
    queued_resume,
    queued_suspend,
    queued_waiting,
    resume_job,
    running,
    stays_suspended,
    suspend_job,
    suspended_elsewhere,
)

STEPS: tuple[Step, ...] = (
    terminal_stays,
    deadline_exceeded,
    suspended_without_job,
    backoff_before_create,
    references_missing,
    create_job,
    deleting_while_suspended,
    backoff_while_deleting,
    wait_for_deletion,
    spec_changed,
    completed,
    restart_not_counted,
    stale_attempt_failed,
    permanent_failure,
    backoff_limit_exceeded,
    restart_counted,
    queued_suspend,
    queued_resume,
    queued_waiting,
    suspend_job,
    resume_job,
    suspended_elsewhere,
    stays_suspended,
    running,
    pods_stuck,
    pods_starting,
)


def decide(obs: BatchObservation) -> BatchDecision:
    """The first decision of ``STEPS`` for ``obs`` (the last step always answers)."""
    ctx = BatchContext.of(obs)
    for step in STEPS:
        d = step(ctx)
        if d is not None:
            return d
    raise AssertionError("the last step always answers")  # pragma: no cover


__all__ = [
    "STEPS",
    "BatchContext",
    "BatchDecision",
    "BatchObservation",
    "Step",
    "backoff_before_create",
    "backoff_limit_exceeded",
    "backoff_while_deleting",
    "completed",
    "create_job",
    "deadline_exceeded",
    "decide",
    "deleting_while_suspended",
    "permanent_failure",
    "pods_starting",
    "pods_stuck",
    "queued_resume",
    "queued_suspend",
    "queued_waiting",
    "references_missing",
    "restart_counted",
    "restart_not_counted",
    "resume_job",
    "running",
    "spec_changed",
    "stale_attempt_failed",
    "stays_suspended",
    "suspend_job",
    "suspended_elsewhere",
    "terminal_stays",
    "wait_for_deletion",
]
