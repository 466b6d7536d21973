"""What Kueue says about a queued Job, from its Workload (pure).

Kueue creates one Workload per Job it manages (owned by the Job, labelled
``kueue.x-k8s.io/job-uid``). While the Job waits, the Workload's ``QuotaReserved`` condition is
False with the scheduler's reason (``couldn't assign flavors to pod set main: insufficient
unused quota for nvidia.com/gpu in flavor default, 8 more needed``); with quota reserved but
admission checks pending, ``Admitted`` is False with theirs; after a preemption or eviction
``Evicted`` is True with why.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

JOB_UID_LABEL = "kueue.x-k8s.io/job-uid"
MAX_MESSAGE = 1024


def _conditions(workload: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    return {
        str(c.get("type")): c
        for c in (workload.get("status") or {}).get("conditions") or []
        if isinstance(c, Mapping)
    }


def workload_of(workloads: Sequence[Mapping[str, Any]], job_uid: str) -> Mapping[str, Any] | None:
    """The Workload of the Job with ``job_uid``: owned by it, or labelled with its uid."""
    for w in workloads:
        md = w.get("metadata") or {}
        if any(r.get("uid") == job_uid for r in md.get("ownerReferences") or []):
            return w
    for w in workloads:
        if ((w.get("metadata") or {}).get("labels") or {}).get(JOB_UID_LABEL) == job_uid:
            return w
    return None


def queued_message(workload: Mapping[str, Any] | None) -> str | None:
    """Kueue's own reason why the Workload is not admitted, or ``None`` (no Workload, it is
    admitted, or Kueue has not said anything yet)."""
    if not workload:
        return None
    conds = _conditions(workload)
    admitted = conds.get("Admitted")
    if admitted is not None and admitted.get("status") == "True":
        return None
    queue = (workload.get("spec") or {}).get("queueName")
    where = f"Kueue (LocalQueue {queue})" if queue else "Kueue"
    parts = []
    quota = conds.get("QuotaReserved")
    if quota is not None and quota.get("status") == "False" and quota.get("message"):
        parts.append(str(quota["message"]))
    elif admitted is not None and admitted.get("status") == "False" and admitted.get("message"):
        parts.append(str(admitted["message"]))
    evicted = conds.get("Evicted")
    if evicted is not None and evicted.get("status") == "True" and evicted.get("message"):
        parts.append(f"evicted ({evicted.get('reason') or 'Evicted'}): {evicted['message']}")
    if not parts:
        return None
    return f"waiting for {where} to admit the Job: {'; '.join(parts)}"[:MAX_MESSAGE]
