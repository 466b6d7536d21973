"""What a Job and its pods report: the completion index, the terminated state of a container,
the workload's JSON result and the Job's conditions."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

COMPLETION_INDEX = "batch.kubernetes.io/job-completion-index"


def pod_index(pod: Mapping[str, Any]) -> int:
    md = pod.get("metadata", {})
    raw = (md.get("annotations") or {}).get(COMPLETION_INDEX) or (md.get("labels") or {}).get(
        COMPLETION_INDEX
    )
    try:
        return int(raw) if raw is not None else 1 << 30
    except ValueError:
        return 1 << 30


def terminated(pod: Mapping[str, Any], container: str | None = None) -> Mapping[str, Any] | None:
    """The ``state.terminated`` of the workload container (the first one if unnamed)."""
    for cs in pod.get("status", {}).get("containerStatuses") or []:
        if container and cs.get("name") != container:
            continue
        t = (cs.get("state") or {}).get("terminated")
        if t:
            return t  # type: ignore[no-any-return]
        if container:
            return None
    return None


def parse_result(message: str | None) -> dict[str, Any] | None:
    """The workload's JSON result from a termination message (the last JSON line wins)."""
    if not message:
        return None
    for line in reversed(message.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                doc = json.loads(line)
            except ValueError:
                continue
            if isinstance(doc, dict):
                return doc
    return None


def pod_result(pod: Mapping[str, Any], container: str | None = None) -> dict[str, Any] | None:
    t = terminated(pod, container)
    return parse_result(t.get("message")) if t else None


def job_condition(job: Mapping[str, Any] | None, type_: str) -> Mapping[str, Any] | None:
    if not job:
        return None
    for c in job.get("status", {}).get("conditions") or []:
        if c.get("type") == type_ and c.get("status") == "True":
            return c  # type: ignore[no-any-return]
    return None
