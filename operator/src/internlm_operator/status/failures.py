"""Pure classification of why a gang's pods ended, and parsing of what the workload reported."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

COMPLETION_INDEX = "batch.kubernetes.io/job-completion-index"
# The workload's "transient" exit code (EX_TEMPFAIL, docs/workload-contract.md): e.g. a training
# rank that lost a peer of its gang. Retried like a signal.
EXIT_TRANSIENT = 75

# DisruptionTarget condition reasons -> our reason. All of them are retryable; a preemption or
# an eviction (UNCOUNTED) restarts the gang without using up runPolicy.backoffLimit.
DISRUPTION_REASONS = {
    "DeletionByTaintManager": "NodeLost",
    "DeletionByPodGC": "NodeLost",
    "EvictionByEvictionAPI": "Evicted",
    "PreemptionByScheduler": "Preempted",
    "PreemptionByKubeScheduler": "Preempted",
    "TerminationByKubelet": "Evicted",
}
UNCOUNTED = ("Preempted", "Evicted")


@dataclass(frozen=True)
class Failure:
    retryable: bool
    reason: str
    message: str
    pod: str | None = None
    result: Mapping[str, Any] | None = field(default=None, compare=False)
    counted: bool = True  # a retry uses up one of runPolicy.backoffLimit


def pod_index(pod: Mapping[str, Any]) -> int:
    md = pod.get("metadata", {})
    raw = (md.get("annotations") or {}).get(COMPLETION_INDEX) or (md.get("labels") or {}).get(
        COMPLETION_INDEX
    )
    try:
        return int(raw) if raw is not None else 1 << 30
    except ValueError:
        return 1 << 30


def _cond(pod: Mapping[str, Any], type_: str) -> Mapping[str, Any] | None:
    for c in pod.get("status", {}).get("conditions") or []:
        if c.get("type") == type_ and c.get("status") == "True":
            return c  # type: ignore[no-any-return]
    return None


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


def _when(pod: Mapping[str, Any], container: str | None) -> str:
    t = terminated(pod, container)
    if t and t.get("finishedAt"):
        return str(t["finishedAt"])
    dt_ = _cond(pod, "DisruptionTarget")
    if dt_ and dt_.get("lastTransitionTime"):
        return str(dt_["lastTransitionTime"])
    return str(pod.get("metadata", {}).get("deletionTimestamp") or "9999")


def pod_failure(
    pod: Mapping[str, Any], retryable_codes: Iterable[int] = (), container: str | None = None
) -> Failure | None:
    """Why this pod failed, or None if it has not (yet) failed."""
    name = pod.get("metadata", {}).get("name")
    st = pod.get("status", {})
    disruption = _cond(pod, "DisruptionTarget")
    if disruption is not None:
        reason = DISRUPTION_REASONS.get(str(disruption.get("reason")), "Disrupted")
        msg = disruption.get("message") or disruption.get("reason") or "disrupted"
        return Failure(True, reason, f"pod {name}: {msg}", name, counted=reason not in UNCOUNTED)
    if st.get("phase") != "Failed":
        return None
    if st.get("reason") in ("Evicted", "Preempting", "NodeLost", "Shutdown", "Terminated"):
        reason = "NodeLost" if st["reason"] in ("NodeLost", "Shutdown") else "Evicted"
        return Failure(
            True,
            reason,
            f"pod {name}: {st.get('message') or st['reason']}",
            name,
            counted=reason not in UNCOUNTED,
        )
    init = init_failure(pod, retryable_codes)
    if init is not None:
        return init
    t = terminated(pod, container)
    deleted = bool(pod.get("metadata", {}).get("deletionTimestamp"))
    if deleted and (not t or int(t.get("exitCode", 0)) >= 128):
        # Deleted, then ended by SIGTERM/SIGKILL: stopped by whoever deleted it (the Job
        # controller suspending the Job for spec.suspend or Kueue), not a failure of the run.
        # A deletion that breaks a running gang still shows, as the Job's own failure.
        return None
    if not t:
        return Failure(True, "PodFailed", f"pod {name} failed without an exit code", name)
    code = int(t.get("exitCode", 0))
    result = parse_result(t.get("message"))
    detail = (result or {}).get("reason") or t.get("message") or t.get("reason") or ""
    detail = str(detail).strip().splitlines()[-1][:512] if str(detail).strip() else ""
    suffix = f": {detail}" if detail else ""
    if t.get("reason") == "OOMKilled":
        return Failure(True, "OOMKilled", f"pod {name} was OOM-killed{suffix}", name, result)
    if code >= 128:
        return Failure(
            True,
            "Signal",
            f"pod {name} killed by signal {code - 128} (exit {code}){suffix}",
            name,
            result,
        )
    if code == EXIT_TRANSIENT:
        return Failure(True, "Transient", f"pod {name} exited {code}{suffix}", name, result)
    if code in set(retryable_codes):
        return Failure(True, "RetryableExitCode", f"pod {name} exited {code}{suffix}", name, result)
    if code == 0:
        return None
    return Failure(False, _kind(result), f"pod {name} exited {code}{suffix}", name, result)


# The workload names some failures itself (``failure`` in its result: RepoNotFound,
# BucketNotFound, UploadFailed, ...; docs/workload-contract.md): that is the reason.
_FAILURE_KIND = re.compile(r"^[A-Z][A-Za-z0-9]{0,63}$")


def _kind(result: Mapping[str, Any] | None, default: str = "ExitCode") -> str:
    kind = str((result or {}).get("failure") or "")
    return kind if _FAILURE_KIND.match(kind) else default


def init_failure(pod: Mapping[str, Any], retryable_codes: Iterable[int] = ()) -> Failure | None:
    """A failed init container (the ``fetch-<input>`` downloads): permanent with the reason its
    result names (RepoNotFound, Unauthorized, NoSpaceLeft, ...; FetchFailed if none), retried
    for exit 75 (the source did not answer), a signal or a retryable code."""
    name = pod.get("metadata", {}).get("name")
    for cs in pod.get("status", {}).get("initContainerStatuses") or []:
        t = (cs.get("state") or {}).get("terminated")
        if not t or int(t.get("exitCode", 0)) == 0:
            continue
        code = int(t["exitCode"])
        result = parse_result(t.get("message"))
        detail = str((result or {}).get("reason") or t.get("reason") or "").strip()
        msg = f"pod {name}: {cs.get('name')} exited {code}" + (
            f": {detail[:512]}" if detail else ""
        )
        if code == EXIT_TRANSIENT:
            return Failure(True, "Transient", msg, name, result)
        if code >= 128 or code in set(retryable_codes):
            return Failure(
                True, "Signal" if code >= 128 else "RetryableExitCode", msg, name, result
            )
        return Failure(False, _kind(result, "FetchFailed"), msg, name, result)
    return None


def classify(
    job: Mapping[str, Any] | None,
    pods: Sequence[Mapping[str, Any]],
    retryable_codes: Iterable[int] = (),
    container: str | None = None,
) -> Failure | None:
    """The root-cause failure of the gang: the earliest failed pod, else the Job's own verdict."""
    codes = tuple(retryable_codes)
    failed = [(p, f) for p in pods if (f := pod_failure(p, codes, container)) is not None]
    if failed:
        failed.sort(key=lambda pf: (_when(pf[0], container), pf[1].retryable, pod_index(pf[0])))
        return failed[0][1]
    jc = job_condition(job, "Failed")
    if jc is None:
        return None
    if jc.get("reason") == "DeadlineExceeded":
        return Failure(False, "DeadlineExceeded", "the run exceeded its active deadline")
    return Failure(
        True,
        "PodLost",
        f"the Job failed ({jc.get('reason')}) and its failed pod is gone (node lost?)",
    )


def job_condition(job: Mapping[str, Any] | None, type_: str) -> Mapping[str, Any] | None:
    if not job:
        return None
    for c in job.get("status", {}).get("conditions") or []:
        if c.get("type") == type_ and c.get("status") == "True":
            return c  # type: ignore[no-any-return]
    return None
