"""Pure classification of why a resource's pods do not run: the "stuck" reasons.

Input: what the reconciler observed (the pod template it is about to create and which of the
objects it names exist, the pods, the Events of a Job, a Deployment's conditions, the time).
Output: at most one :class:`Stuck` per resource, the first cause in this order:

1. a PersistentVolumeClaim, Secret or ConfigMap the pods need does not exist (checked before
   the children are created);
2. pod creation refused (``FailedCreate`` on the Job, ``ReplicaFailure`` on the Deployment):
   a ResourceQuota, Pod Security admission, another admission webhook;
3. a pod the scheduler cannot place (``PodScheduled=False``, reason ``Unschedulable``);
4. a container that cannot start: image pull failures, ``CreateContainerConfigError``,
   ``CrashLoopBackOff`` (with the last termination);
5. readiness not reached within the startup budget (serving kinds).

``stalled`` says whether only a change by someone (the spec, the namespace, the registry) can
fix it: kstatus then reads the resource as Failed and Argo CD as Degraded; otherwise it is
InProgress / Progressing and the condition says what it waits for. docs/operator.md has the
table. No I/O here.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .conditions import parse_time

Ref = tuple[str, str]  # (kind, name): ("PersistentVolumeClaim" | "Secret" | "ConfigMap", name)

MISSING_REASON = {
    "PersistentVolumeClaim": "PVCNotFound",
    "Secret": "SecretNotFound",
    "ConfigMap": "ConfigMapNotFound",
}
IMAGE_REASONS = ("ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull")
CONFIG_REASONS = ("CreateContainerConfigError", "CreateContainerError", "RunContainerError")
DEFAULT_STARTUP_SECONDS = 600

# Every reason this module can return: status layers and Event filters use it.
REASONS = frozenset(
    {
        *MISSING_REASON.values(),
        "QuotaExceeded",
        "PodSecurityViolation",
        "FailedCreate",
        "Unschedulable",
        *IMAGE_REASONS,
        *CONFIG_REASONS,
        "CrashLoopBackOff",
        "StartupTimeout",
    }
)


@dataclass(frozen=True)
class Stuck:
    reason: str
    message: str
    stalled: bool  # only a change elsewhere fixes it (kstatus Failed, Argo CD Degraded)


def _trim(text: str, limit: int = 1024) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


# -- 1. references the pods need ------------------------------------------------------------


def refs_of(pod_spec: Mapping[str, Any], own_config_maps: Iterable[str] = ()) -> list[Ref]:
    """The PVCs, Secrets and ConfigMaps a pod spec needs to start, in order, without
    duplicates; ``optional`` references and the operator's own ConfigMaps are left out."""
    own = set(own_config_maps)
    out: list[Ref] = []

    def add(kind: str, name: Any, optional: Any = False) -> None:
        if not name or optional is True or (kind == "ConfigMap" and name in own):
            return
        ref = (kind, str(name))
        if ref not in out:
            out.append(ref)

    def projected(src: Mapping[str, Any]) -> None:
        for s in src.get("sources") or []:
            if s.get("secret"):
                add("Secret", s["secret"].get("name"), s["secret"].get("optional"))
            if s.get("configMap"):
                add("ConfigMap", s["configMap"].get("name"), s["configMap"].get("optional"))

    for v in pod_spec.get("volumes") or []:
        if v.get("persistentVolumeClaim"):
            add("PersistentVolumeClaim", v["persistentVolumeClaim"].get("claimName"))
        if v.get("secret"):
            add("Secret", v["secret"].get("secretName"), v["secret"].get("optional"))
        if v.get("configMap"):
            add("ConfigMap", v["configMap"].get("name"), v["configMap"].get("optional"))
        if v.get("projected"):
            projected(v["projected"])
    for c in [*(pod_spec.get("initContainers") or []), *(pod_spec.get("containers") or [])]:
        for e in c.get("env") or []:
            vf = e.get("valueFrom") or {}
            if vf.get("secretKeyRef"):
                add("Secret", vf["secretKeyRef"].get("name"), vf["secretKeyRef"].get("optional"))
            if vf.get("configMapKeyRef"):
                ref = vf["configMapKeyRef"]
                add("ConfigMap", ref.get("name"), ref.get("optional"))
        for ef in c.get("envFrom") or []:
            if ef.get("secretRef"):
                add("Secret", ef["secretRef"].get("name"), ef["secretRef"].get("optional"))
            if ef.get("configMapRef"):
                add("ConfigMap", ef["configMapRef"].get("name"), ef["configMapRef"].get("optional"))
    return out


def missing(found: Mapping[Ref, bool | None]) -> Stuck | None:
    """The references that do not exist (``False``; ``None`` = could not be checked, e.g. no
    permission to read Secrets), reported by the first one's kind and listed in the message."""
    gone = [ref for ref, ok in found.items() if ok is False]
    if not gone:
        return None
    names = "; ".join(f'{kind} "{name}" not found' for kind, name in gone)
    return Stuck(
        MISSING_REASON[gone[0][0]],
        _trim(f"{names} (named by the spec): create it; the operator checks again every pass"),
        stalled=True,
    )


# -- 2. pod creation refused ----------------------------------------------------------------


def refusal(message: str) -> Stuck:
    """A pod the API server refused to create, classified by the upstream message."""
    msg = _trim(message)
    low = msg.lower()
    if "exceeded quota" in low or "must specify limits" in low or "must specify requests" in low:
        # Quota frees up when other work finishes: waiting, not failed.
        return Stuck("QuotaExceeded", msg, stalled="must specify" in low)
    if "violates podsecurity" in low:
        return Stuck("PodSecurityViolation", msg, stalled=True)
    if "failed calling webhook" in low or "context deadline exceeded" in low:
        return Stuck("FailedCreate", msg, stalled=False)  # a webhook down: retried by the Job
    return Stuck("FailedCreate", msg, stalled=True)  # denied by admission


def _event_time(e: Mapping[str, Any]) -> str:
    return str(
        e.get("lastTimestamp")
        or (e.get("series") or {}).get("lastObservedTime")
        or e.get("eventTime")
        or e.get("firstTimestamp")
        or ""
    )


def failed_create(events: Sequence[Mapping[str, Any]]) -> Stuck | None:
    """The newest ``FailedCreate`` Event of a Job (events of that Job object only)."""
    refused = [e for e in events if e.get("reason") == "FailedCreate"]
    if not refused:
        return None
    newest = max(refused, key=_event_time)
    return refusal(str(newest.get("note") or newest.get("message") or "pod creation refused"))


def replica_failure(deployment: Mapping[str, Any] | None) -> Stuck | None:
    """A Deployment's ``ReplicaFailure`` condition (copied from its ReplicaSet's FailedCreate)."""
    for c in (deployment or {}).get("status", {}).get("conditions") or []:
        if c.get("type") == "ReplicaFailure" and c.get("status") == "True":
            return refusal(str(c.get("message") or c.get("reason") or "pod creation refused"))
    return None


# -- 3-5. pods that do not run ----------------------------------------------------------------


def _name(pod: Mapping[str, Any]) -> str:
    return str(pod.get("metadata", {}).get("name") or "?")


def unschedulable(pod: Mapping[str, Any]) -> Stuck | None:
    for c in pod.get("status", {}).get("conditions") or []:
        if c.get("type") == "PodScheduled" and c.get("status") == "False":
            if c.get("reason") not in ("Unschedulable", "SchedulerError"):
                return None
            msg = str(c.get("message") or c.get("reason"))
            low = msg.lower()
            if 'persistentvolumeclaim "' in low and "not found" in low:
                return Stuck("PVCNotFound", _trim(f"pod {_name(pod)}: {msg}"), stalled=True)
            return Stuck("Unschedulable", _trim(f"pod {_name(pod)}: {msg}"), stalled=False)
    return None


def _last_termination(cs: Mapping[str, Any]) -> str:
    t = (cs.get("lastState") or {}).get("terminated") or {}
    if not t:
        return ""
    detail = str(t.get("message") or "").strip()
    detail = detail.splitlines()[-1] if detail else ""
    out = f"last exit {t.get('exitCode')} ({t.get('reason') or 'Error'})"
    return f"{out}: {detail}" if detail else out


def container_stuck(pod: Mapping[str, Any]) -> Stuck | None:
    """An init or main container that cannot start or keeps crashing."""
    st = pod.get("status", {})
    for cs in [*(st.get("initContainerStatuses") or []), *(st.get("containerStatuses") or [])]:
        waiting = (cs.get("state") or {}).get("waiting") or {}
        reason = waiting.get("reason")
        where = f"pod {_name(pod)} container {cs.get('name')}"
        if reason in IMAGE_REASONS:
            msg = waiting.get("message") or f"cannot pull image {cs.get('image')}"
            return Stuck(str(reason), _trim(f"{where}: {msg}"), stalled=True)
        if reason in CONFIG_REASONS:
            msg = waiting.get("message") or reason
            return Stuck(str(reason), _trim(f"{where}: {msg}"), stalled=True)
        if reason == "CrashLoopBackOff":
            last = _last_termination(cs)
            msg = f"{where} keeps crashing (restarted {cs.get('restartCount', 0)} times)"
            return Stuck("CrashLoopBackOff", _trim(f"{msg}; {last}" if last else msg), False)
    return None


def startup_budget(pod_spec: Mapping[str, Any] | None) -> int:
    """Seconds a server may take to become ready: its startup probe's whole allowance (or the
    readiness probe's when it has none) plus one readiness round."""
    containers = (pod_spec or {}).get("containers") or []
    if not containers:
        return DEFAULT_STARTUP_SECONDS
    c = containers[0]

    def allowance(probe: Mapping[str, Any] | None) -> int:
        if not probe:
            return 0
        period = int(probe.get("periodSeconds") or 10)
        return int(probe.get("initialDelaySeconds") or 0) + period * int(
            probe.get("failureThreshold") or 3
        )

    total = allowance(c.get("startupProbe")) + allowance(c.get("readinessProbe"))
    return total or DEFAULT_STARTUP_SECONDS


def not_ready_in_time(pod: Mapping[str, Any], now: dt.datetime, budget: int) -> Stuck | None:
    """A running pod whose containers have not been ready for ``budget`` seconds since start."""
    st = pod.get("status", {})
    if st.get("phase") != "Running":
        return None
    ready = next((c for c in st.get("conditions") or [] if c.get("type") == "Ready"), None)
    if ready is not None and ready.get("status") == "True":
        return None
    started = parse_time(st.get("startTime"))
    if started is None or (now - started).total_seconds() <= budget:
        return None
    return Stuck(
        "StartupTimeout",
        f"pod {_name(pod)} is running but not ready after {int((now - started).total_seconds())}s"
        f" (startup budget {budget}s)",
        stalled=True,
    )


def of_pods(
    pods: Sequence[Mapping[str, Any]],
    now: dt.datetime | None = None,
    budget: int | None = None,
) -> Stuck | None:
    """The first cause among the live pods: unschedulable, a container that cannot start or
    crash-loops, then (with ``now`` and ``budget``) readiness overdue."""
    live = [p for p in pods if not p.get("metadata", {}).get("deletionTimestamp")]
    for check in (unschedulable, container_stuck):
        for p in live:
            found = check(p)
            if found is not None:
                return found
    if now is not None and budget is not None:
        for p in live:
            found = not_ready_in_time(p, now, budget)
            if found is not None:
                return found
    return None
