"""What the reconciler observed of a batch resource and what it is told to do, and the readings
taken from the Job, its pods and the previous status (result, progress, lost pods, backoff)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from ..api.v1alpha1 import RestartDelay
from .conditions import now_rfc3339, parse_time
from .failure_rules import Failure, Rule
from .pod_reports import pod_index, pod_result
from .stuck import Ref

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


def job_state(job: Mapping[str, Any] | None) -> tuple[bool, bool, bool]:
    """(exists, deleting, suspended)"""
    if not job:
        return False, False, False
    return (
        True,
        bool(job.get("metadata", {}).get("deletionTimestamp")),
        bool(job.get("spec", {}).get("suspend")),
    )


def job_label(job: Mapping[str, Any], key: str) -> str | None:
    return (job.get("metadata", {}).get("labels") or {}).get(key)


def job_annotation(job: Mapping[str, Any], key: str) -> str | None:
    return (job.get("metadata", {}).get("annotations") or {}).get(key)


def _rank0_first(pods: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return sorted(pods, key=pod_index)


def gang_succeeded(pods: Sequence[Mapping[str, Any]], nodes: int) -> bool:
    """Every completion index has a pod that succeeded: the Job has succeeded, whenever the
    Job controller (throttled by its own API rate limit on a busy cluster: tens of seconds)
    gets to saying so."""
    done = {pod_index(p) for p in pods if (p.get("status") or {}).get("phase") == "Succeeded"}
    return nodes > 0 and all(i in done for i in range(nodes))


def gang_result(pods: Sequence[Mapping[str, Any]], container: str) -> dict[str, Any] | None:
    for p in _rank0_first(pods):
        r = pod_result(p, container)
        if r is not None:
            return r
    return None


def progress_of(
    doc: Mapping[str, Any] | None,
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
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
