"""Why a gang's pods ended, by the default table (disruptions, exit codes, signals, failed init
containers) and then the resource's rules, and which failure is the gang's root cause."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from .failure_rules import Failure, Rule, apply_rules, exit_code_rule, message_rule
from .pod_reports import job_condition, parse_result, pod_index, terminated

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

# A process that aborted itself (SIGABRT: torch's NCCL watchdog, a C++ exception escaping): its
# message is read like an exit code 1-127's. Other signals came from outside and stay Signal.
EXIT_ABORT = 134
MAX_TEXT = 4096  # the kubelet keeps at most 4096 bytes of a termination message


def _cond(pod: Mapping[str, Any], type_: str) -> Mapping[str, Any] | None:
    for c in pod.get("status", {}).get("conditions") or []:
        if c.get("type") == type_ and c.get("status") == "True":
            return c  # type: ignore[no-any-return]
    return None


def _when(pod: Mapping[str, Any], container: str | None) -> str:
    t = terminated(pod, container)
    if t and t.get("finishedAt"):
        return str(t["finishedAt"])
    dt_ = _cond(pod, "DisruptionTarget")
    if dt_ and dt_.get("lastTransitionTime"):
        return str(dt_["lastTransitionTime"])
    return str(pod.get("metadata", {}).get("deletionTimestamp") or "9999")


def pod_failure(
    pod: Mapping[str, Any],
    retryable_codes: Iterable[int] = (),
    container: str | None = None,
    rules: Sequence[Rule] = (),
) -> Failure | None:
    """Why this pod failed, or None if it has not (yet) failed. ``rules`` (the resource's
    failure policy) are tried first; ``retryable_codes`` is a Retry rule after them."""
    found = _default_pod_failure(pod, container)
    if found is None:
        return None
    failure, code, text = found
    return apply_rules(failure, (*rules, *exit_code_rule(retryable_codes)), code, text)


def _default_pod_failure(
    pod: Mapping[str, Any], container: str | None
) -> tuple[Failure, int | None, str] | None:
    """The default table: (failure, exit code, text to match) or None (not failed)."""
    name = pod.get("metadata", {}).get("name")
    st = pod.get("status", {})
    disruption = _cond(pod, "DisruptionTarget")
    if disruption is not None:
        reason = DISRUPTION_REASONS.get(str(disruption.get("reason")), "Disrupted")
        msg = disruption.get("message") or disruption.get("reason") or "disrupted"
        failure = Failure(True, reason, f"pod {name}: {msg}", name, counted=reason not in UNCOUNTED)
        return failure, None, str(msg)
    if st.get("phase") != "Failed":
        return None
    if st.get("reason") in ("Evicted", "Preempting", "NodeLost", "Shutdown", "Terminated"):
        reason = "NodeLost" if st["reason"] in ("NodeLost", "Shutdown") else "Evicted"
        msg = str(st.get("message") or st["reason"])
        failure = Failure(True, reason, f"pod {name}: {msg}", name, counted=reason not in UNCOUNTED)
        return failure, None, msg
    init = _default_init_failure(pod)
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
        return Failure(True, "PodFailed", f"pod {name} failed without an exit code", name), None, ""
    code = int(t.get("exitCode", 0))
    if code == 0:
        return None
    result = parse_result(t.get("message"))
    detail = (result or {}).get("reason") or t.get("message") or t.get("reason") or ""
    detail = str(detail).strip().splitlines()[-1][:512] if str(detail).strip() else ""
    suffix = f": {detail}" if detail else ""
    text = _text(t)
    if t.get("reason") == "OOMKilled":
        return (
            Failure(True, "OOMKilled", f"pod {name} was OOM-killed{suffix}", name, result),
            code,
            text,
        )
    if code == EXIT_TRANSIENT:
        return (
            Failure(True, "Transient", f"pod {name} exited {code}{suffix}", name, result),
            code,
            text,
        )
    if code >= 128:
        what = f"pod {name} killed by signal {code - 128} (exit {code}){suffix}"
    else:
        what = f"pod {name} exited {code}{suffix}"
    known = message_rule(text) if code < 128 or code == EXIT_ABORT else None
    if known is not None and known.action == "FailFast":
        return Failure(False, _kind(result), what, name, result), code, text
    if known is not None:
        return Failure(True, known.reason, what, name, result), code, text
    if code >= 128:
        return Failure(True, "Signal", what, name, result), code, text
    return Failure(False, _kind(result), what, name, result), code, text


def _text(t: Mapping[str, Any]) -> str:
    """What message rules are matched against: the termination message (the workload's result
    or the tail of its log) and the container's terminated reason, the last MAX_TEXT chars."""
    text = f"{t.get('message') or ''}\n{t.get('reason') or ''}"
    return text[-MAX_TEXT:]


# The workload names some failures itself (``failure`` in its result: RepoNotFound,
# BucketNotFound, UploadFailed, ...; docs/workload-contract.md): that is the reason.
_FAILURE_KIND = re.compile(r"^[A-Z][A-Za-z0-9]{0,63}$")


def _kind(result: Mapping[str, Any] | None, default: str = "ExitCode") -> str:
    kind = str((result or {}).get("failure") or "")
    return kind if _FAILURE_KIND.match(kind) else default


def init_failure(
    pod: Mapping[str, Any], retryable_codes: Iterable[int] = (), rules: Sequence[Rule] = ()
) -> Failure | None:
    """A failed init container (the ``fetch-<input>`` downloads): permanent with the reason its
    result names (RepoNotFound, Unauthorized, NoSpaceLeft, ...; FetchFailed if none), retried
    for exit 75 (the source did not answer), a signal or a retryable code."""
    found = _default_init_failure(pod)
    if found is None:
        return None
    failure, code, text = found
    return apply_rules(failure, (*rules, *exit_code_rule(retryable_codes)), code, text)


def _default_init_failure(pod: Mapping[str, Any]) -> tuple[Failure, int, str] | None:
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
        text = _text(t)
        if code == EXIT_TRANSIENT:
            return Failure(True, "Transient", msg, name, result), code, text
        if code >= 128:
            return Failure(True, "Signal", msg, name, result), code, text
        return Failure(False, _kind(result, "FetchFailed"), msg, name, result), code, text
    return None


def classify(
    job: Mapping[str, Any] | None,
    pods: Sequence[Mapping[str, Any]],
    retryable_codes: Iterable[int] = (),
    container: str | None = None,
    rules: Sequence[Rule] = (),
) -> Failure | None:
    """The root-cause failure of the gang: the earliest failed pod, else the Job's own verdict."""
    codes = tuple(retryable_codes)
    failed = [(p, f) for p in pods if (f := pod_failure(p, codes, container, rules)) is not None]
    if failed:
        failed.sort(key=lambda pf: (_when(pf[0], container), pf[1].retryable, pod_index(pf[0])))
        return failed[0][1]
    jc = job_condition(job, "Failed")
    if jc is None:
        return None
    if jc.get("reason") == "DeadlineExceeded":
        return Failure(False, "DeadlineExceeded", "the run exceeded its active deadline")
    lost = Failure(
        True,
        "PodLost",
        f"the Job failed ({jc.get('reason')}) and its failed pod is gone (node lost?)",
    )
    return apply_rules(lost, rules, None, "")
