"""What the steps of a batch pass share (``batch_decide``): the readings taken once from the
observation (the previous phase, the restarts, the state of the Job, the restart being waited
out, the failure of the gang, the live pods) and ``out``, which builds a decision. No I/O.

The readings that not every step needs are computed on first use (``cached_property``), in the
order the steps read them: a step reads only what it needs, and a reading that a step before it
made is not made again."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from ..api.labels import ATTEMPT_LABEL
from .batch_observation import (
    NEXT_RESTART,
    Action,
    BatchDecision,
    BatchObservation,
    backoff_left,
    job_label,
    job_state,
    lost_member,
    progress_of,
)
from .batch_phase import build_status, phase_conditions
from .conditions import TRUE, now_rfc3339, transitions
from .failure_rules import Failure, apply_rules
from .pod_failures import classify


@dataclass(frozen=True)
class BatchContext:
    """The observation and what every step reads of it; built once per pass by :meth:`of`."""

    obs: BatchObservation
    prev: dict[str, Any]  # the previous status (a copy)
    now: str  # obs.now, RFC 3339
    phase_prev: str | None
    restarts: int  # restarts counted so far (status.restarts)
    exists: bool  # the Job exists
    deleting: bool  # ... and is being deleted
    job_suspended: bool  # ... and its spec.suspend is set

    @classmethod
    def of(cls, obs: BatchObservation) -> BatchContext:
        prev = dict(obs.status)
        exists, deleting, job_suspended = job_state(obs.job)
        return cls(
            obs=obs,
            prev=prev,
            now=now_rfc3339(obs.now),
            phase_prev=prev.get("phase"),
            restarts=int(prev.get("restarts") or 0),
            exists=exists,
            deleting=deleting,
            job_suspended=job_suspended,
        )

    @property
    def job(self) -> Mapping[str, Any]:
        """The Job: only for the steps after those that answer when there is none."""
        assert self.obs.job is not None
        return self.obs.job

    @property
    def start_time(self) -> str | None:
        return self.prev.get("startTime")

    @cached_property
    def still_restarting(self) -> tuple[str, str] | None:
        """(reason, message) of the previous status's Restarting=True condition, if any."""
        restarting_prev = next(
            (
                c
                for c in self.prev.get("conditions") or []
                if c.get("type") == "Restarting" and c.get("status") == TRUE
            ),
            None,
        )
        if not restarting_prev:
            return None
        return (restarting_prev["reason"], restarting_prev.get("message", ""))

    @cached_property
    def left(self) -> float:
        """Seconds left of the restart backoff (runPolicy.restartDelay) being waited out."""
        return backoff_left(self.prev, self.obs.now) if self.still_restarting else 0.0

    def backoff_message(self, before: str = "") -> str:
        assert self.still_restarting is not None
        return (
            f"{before}restart backoff: the new gang starts in {int(self.left + 0.999)}s "
            f"(at {self.prev.get(NEXT_RESTART)}, runPolicy.restartDelay) after "
            f"{self.still_restarting[0]}: {self.still_restarting[1]}"
        )

    @cached_property
    def stale(self) -> bool:
        """The Job is of an attempt before the restarts counted (the operator restarted
        between counting a restart and deleting the Job)."""
        attempt = job_label(self.job, ATTEMPT_LABEL)
        return attempt is not None and attempt.isdigit() and int(attempt) < self.restarts

    @cached_property
    def failure(self) -> Failure | None:
        """Why the gang failed, if it did. Pods of a suspended Job end because of the
        suspension (spec.suspend, Kueue eviction or preemption): never a failure."""
        obs = self.obs
        failure: Failure | None = None
        if not self.job_suspended:
            failure = classify(
                self.job, obs.pods, obs.retryable_exit_codes, obs.container, obs.failure_rules
            )
        if failure is None and self.phase_prev == "Running" and not self.job_suspended:
            failure = lost_member(obs)
            if failure is not None:
                failure = apply_rules(failure, obs.failure_rules, None, "")
        return failure

    @cached_property
    def live_pods(self) -> list[Mapping[str, Any]]:
        """The pods not being deleted."""
        return [p for p in self.obs.pods if not p.get("metadata", {}).get("deletionTimestamp")]

    @cached_property
    def running_pods(self) -> list[Mapping[str, Any]]:
        return [p for p in self.live_pods if p.get("status", {}).get("phase") == "Running"]

    def progress_fields(self) -> dict[str, Any]:
        """status.progress and status.lastCheckpoint from the workload's progress report (a
        new dict each call)."""
        progress, ck = progress_of(self.obs.progress)
        fields: dict[str, Any] = {}
        if progress:
            fields["progress"] = progress
        if ck:
            fields["lastCheckpoint"] = ck
        return fields

    def out(
        self,
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
        """The decision: ``action`` and the complete new status in ``phase`` (its conditions
        from ``reason``/``message`` and the flags, the ``fields`` set), with an Event for each
        condition that turned True."""
        prev = self.prev
        conds = phase_conditions(
            phase,
            reason,
            message,
            created=self.exists and not self.deleting if created is None else created,
            running=running,
            restarting=restarting,
            suspended=suspended,
            stalled=stalled,
        )
        st = build_status(prev, self.obs.generation, self.now, phase, conds, **fields)
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


# One step of a pass: its decision, or None to leave it to the next step.
Step = Callable[[BatchContext], BatchDecision | None]
