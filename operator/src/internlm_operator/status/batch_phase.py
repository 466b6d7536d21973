"""The conditions and status of a batch kind in each phase, and the statuses of one that waits
for its upstream or is stalled before its Job exists."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

from .conditions import FALSE, TRUE, Cond, merge, now_rfc3339

TERMINAL = ("Succeeded", "Failed")

SUSPENDED_QUEUED = (
    "suspended by spec.suspend: the Job is deleted so that Kueue releases its quota; "
    "resuming creates it again for Kueue to admit"
)


def phase_conditions(
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
    conds = phase_conditions(
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
