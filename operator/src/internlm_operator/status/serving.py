"""Pure status for the long-running kinds (ModelServe, Agent).

Input: what the reconciler observed (previous status, the Deployment and its pods, whether the
resource is blocked on something, the time). Output: the complete new status and the Events
worth recording. No I/O here.

Conditions: ``Ready`` (the endpoint answers: at least one server is ready), ``Progressing``
(a rollout or scale is under way), ``Degraded`` (fewer servers than wanted after having had
them, servers crashing, or the Agent's model endpoint gone), plus the kstatus pair
``Reconciling`` / ``Stalled``.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from .conditions import (
    FALSE,
    TRUE,
    Cond,
    find,
    is_true,
    merge,
    now_rfc3339,
    parse_time,
    transitions,
)
from .pod_reports import parse_result
from .stuck import REASONS as STUCK_REASONS
from .stuck import Stuck, of_pods, replica_failure, startup_budget

CRASH_WINDOW_SECONDS = 45.0
"""A server that crashed this recently keeps the resource Degraded (a crash is often over
before anyone looks: the ReplicaSet replaces the pod within seconds)."""

BAD_WAITING = {
    "CrashLoopBackOff",
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
}

BlockKind = Literal["dependency", "gate", "invalid", "upstream-failed", "llm", "missing"]


@dataclass(frozen=True)
class Blocker:
    """Why the desired children could not be (fully) applied this pass.

    - ``dependency``: an upstream has not produced its output yet (waits by itself);
    - ``gate``: the gating EvalRun has not passed yet (waits by itself);
    - ``upstream-failed``: an upstream failed or the gate failed (Stalled until changed);
    - ``invalid``: the spec cannot be run (Stalled until changed);
    - ``llm``: the Agent's ModelServe is gone or not Ready;
    - ``missing``: a PVC, Secret or ConfigMap the pods need does not exist (Stalled until it
      does; checked before the Deployment is created).
    """

    kind: BlockKind
    reason: str
    message: str

    @property
    def stalled(self) -> bool:
        return self.kind in ("invalid", "upstream-failed", "missing")


@dataclass(frozen=True)
class ServingObservation:
    generation: int
    status: Mapping[str, Any]
    deployment: Mapping[str, Any] | None
    pods: Sequence[Mapping[str, Any]]
    now: dt.datetime
    desired_replicas: int
    blocker: Blocker | None = None
    fields: Mapping[str, Any] = field(default_factory=dict)  # endpoint, selector, lineage, ...
    noun: str = "server"  # for messages: "server" or "agent pod"


@dataclass
class ServingDecision:
    status: dict[str, Any]
    events: list[tuple[str, str, str]]
    settled: bool  # nothing in flight: the slow timer is enough


def _int(v: Any) -> int:
    try:
        return int(v or 0)
    except (TypeError, ValueError):
        return 0


def _deploy_condition(deploy: Mapping[str, Any], type_: str) -> Mapping[str, Any] | None:
    for c in deploy.get("status", {}).get("conditions") or []:
        if c.get("type") == type_:
            return c  # type: ignore[no-any-return]
    return None


def crash(
    pods: Sequence[Mapping[str, Any]], now: dt.datetime, window: float = CRASH_WINDOW_SECONDS
) -> tuple[str, str] | None:
    """(reason, message) when a server is crashing or crashed within ``window`` seconds, or
    cannot start because a ``fetch-*`` init container failed (its own reason: RepoNotFound,
    Unauthorized, ...; the kubelet retries it meanwhile)."""
    for p in pods:
        name = p.get("metadata", {}).get("name", "?")
        st = p.get("status", {})
        fetch = fetch_failure(p)
        if fetch is not None:
            return fetch
        for cs in st.get("containerStatuses") or []:
            waiting = (cs.get("state") or {}).get("waiting") or {}
            if waiting.get("reason") in BAD_WAITING:
                msg = waiting.get("message") or waiting["reason"]
                return str(waiting["reason"]), f"pod {name}: {msg}"[:1024]
            for t in (
                (cs.get("state") or {}).get("terminated"),
                (cs.get("lastState") or {}).get("terminated"),
            ):
                if not t or (t.get("exitCode") == 0 and st.get("phase") != "Failed"):
                    continue
                done = parse_time(t.get("finishedAt"))
                if done is None or (now - done).total_seconds() > window:
                    continue
                why = t.get("reason") or "Error"
                detail = f" ({t['message'][:200]})" if t.get("message") else ""
                return "ServerCrashed", (
                    f"pod {name} exited with code {t.get('exitCode')}: {why}{detail}"
                )[:1024]
        if st.get("phase") == "Failed" and st.get("reason") in ("Evicted", "OOMKilled"):
            return str(st["reason"]), f"pod {name}: {st.get('message') or st['reason']}"[:1024]
    return None


def fetch_failure(pod: Mapping[str, Any]) -> tuple[str, str] | None:
    """(reason, message) of a failed ``fetch-*`` init container: the ``failure`` its result
    names (docs/workload-contract.md), else ``FetchFailed``."""
    name = pod.get("metadata", {}).get("name", "?")
    for cs in pod.get("status", {}).get("initContainerStatuses") or []:
        if not str(cs.get("name", "")).startswith("fetch-"):
            continue
        for t in (
            (cs.get("state") or {}).get("terminated"),
            (cs.get("lastState") or {}).get("terminated"),
        ):
            if not t or t.get("exitCode") in (0, None):
                continue
            result = parse_result(t.get("message")) or {}
            kind = str(result.get("failure") or "")
            reason = kind if re.fullmatch(r"[A-Z][A-Za-z0-9]{0,63}", kind) else "FetchFailed"
            detail = str(result.get("reason") or t.get("reason") or "failed")[:800]
            return reason, f"pod {name}: {cs['name']}: {detail}"[:1024]
    return None


def decide(obs: ServingObservation) -> ServingDecision:
    prev = dict(obs.status)
    gen = obs.generation
    now = now_rfc3339(obs.now)
    b = obs.blocker
    d = obs.deployment
    noun = obs.noun

    desired = obs.desired_replicas
    replicas = ready = available = updated = 0
    rolled_out = False
    deadline = False
    if d is not None:
        ds = d.get("status", {})
        desired = _int(d.get("spec", {}).get("replicas", desired))
        replicas, ready = _int(ds.get("replicas")), _int(ds.get("readyReplicas"))
        available, updated = _int(ds.get("availableReplicas")), _int(ds.get("updatedReplicas"))
        observed = _int(ds.get("observedGeneration")) >= _int(
            d.get("metadata", {}).get("generation")
        )
        rolled_out = (
            observed and updated == desired and replicas == desired and available == desired
        )
        prog = _deploy_condition(d, "Progressing")
        deadline = bool(prog and prog.get("reason") == "ProgressDeadlineExceeded")

    # -- why servers are missing (refused, unschedulable, cannot start, never ready) --------
    stuck: Stuck | None = None
    if d is not None and ready < desired:
        template = d.get("spec", {}).get("template", {}).get("spec")
        stuck = replica_failure(d) or of_pods(obs.pods, obs.now, startup_budget(template))

    was_ready = is_true(prev.get("conditions"), "Ready")
    was_degraded = is_true(prev.get("conditions"), "Degraded")
    prev_ready = _int(prev.get("readyReplicas"))

    # -- Degraded --------------------------------------------------------------------------
    degraded: tuple[str, str] | None = None
    if d is not None:
        crashed = crash(obs.pods, obs.now)
        if stuck is not None and (stuck.stalled or stuck.reason == "CrashLoopBackOff"):
            degraded = (stuck.reason, stuck.message)
        elif crashed:
            degraded = crashed
        elif ready < desired and ((was_ready and ready < prev_ready) or was_degraded):
            degraded = ("ReplicasUnavailable", f"{ready}/{desired} {noun}(s) ready")
        elif deadline:
            degraded = (
                "ProgressDeadlineExceeded",
                f"the rollout made no progress: {ready}/{desired} {noun}(s) ready",
            )
    if b is not None and b.kind == "llm":
        degraded = (b.reason, b.message)

    # -- Ready, Progressing, phase ----------------------------------------------------------
    serving = d is not None and (ready > 0 or (desired == 0 and rolled_out))
    llm_down = b is not None and b.kind == "llm"
    if d is None:
        if b is not None:
            ready_c = Cond("Ready", FALSE, b.reason, b.message)
            progressing = Cond("Progressing", FALSE, b.reason, b.message)
            phase = {"invalid": "Failed", "missing": "Pending"}.get(b.kind, "Waiting")
        else:
            msg = f"creating the {noun}s"
            ready_c = Cond("Ready", FALSE, "Creating", msg)
            progressing = Cond("Progressing", TRUE, "Creating", msg)
            phase = "Pending"
    else:
        counts = f"{ready}/{desired} {noun}(s) ready"
        if not rolled_out:
            progressing = Cond(
                "Progressing",
                TRUE,
                stuck.reason if stuck else "RollingOut",
                f"{updated}/{desired} updated, {counts}" + (f": {stuck.message}" if stuck else ""),
            )
        elif b is not None and b.kind in ("gate", "dependency"):
            progressing = Cond("Progressing", FALSE, b.reason, b.message)
        else:
            progressing = Cond("Progressing", FALSE, "RolloutComplete", counts)
        if llm_down:
            assert b is not None
            ready_c = Cond("Ready", FALSE, b.reason, b.message)
        elif serving:
            msg = counts
            if b is not None:
                msg += f"; {b.message}"
            ready_c = Cond("Ready", TRUE, "Serving" if desired else "ScaledToZero", msg)
        elif stuck is not None:
            ready_c = Cond("Ready", FALSE, stuck.reason, f"{counts}: {stuck.message}")
        elif deadline:
            ready_c = Cond("Ready", FALSE, "ProgressDeadlineExceeded", counts)
        else:
            ready_c = Cond(
                "Ready", FALSE, "ServersNotReady" if noun == "server" else "PodsNotReady", counts
            )
        if degraded:
            phase = "Degraded"
        elif ready_c.status == TRUE and rolled_out and b is None:
            phase = "Ready"
        elif b is not None and b.kind in ("gate", "dependency", "upstream-failed") and not serving:
            phase = "Waiting"
        elif b is not None and b.kind == "invalid" and not serving:
            phase = "Failed"
        else:
            phase = "Progressing" if not serving or not rolled_out else "Ready"

    stuck_stalled = stuck is not None and stuck.stalled
    stalled = (b is not None and b.stalled) or deadline or stuck_stalled
    if b is not None and b.stalled:
        stalled_c = Cond("Stalled", TRUE, b.reason, b.message)
    elif stuck is not None and stuck.stalled:
        stalled_c = Cond("Stalled", TRUE, stuck.reason, stuck.message)
    elif deadline:
        stalled_c = Cond(
            "Stalled",
            TRUE,
            "ProgressDeadlineExceeded",
            degraded[1] if degraded else "the rollout made no progress",
        )
    else:
        stalled_c = Cond("Stalled", FALSE, "NotStalled", "")
    in_flight = (
        (d is None and b is None)
        or (d is not None and not rolled_out)
        or (b is not None and b.kind in ("dependency", "gate", "llm"))
    )
    if stalled:
        reconciling = Cond("Reconciling", FALSE, stalled_c.reason, stalled_c.message)
    elif in_flight:
        why = (
            progressing
            if progressing.status == TRUE
            else (Cond("", "", b.reason, b.message) if b is not None else progressing)
        )
        reconciling = Cond("Reconciling", TRUE, why.reason, why.message)
    else:
        reconciling = Cond("Reconciling", FALSE, "Reconciled", "")
    degraded_c = (
        Cond("Degraded", TRUE, degraded[0], degraded[1])
        if degraded
        else Cond("Degraded", FALSE, "AsExpected", "")
    )

    conds = [ready_c, progressing, degraded_c, reconciling, stalled_c]
    st: dict[str, Any] = {k: v for k, v in prev.items() if k != "kopf"}
    st["phase"] = phase
    st["conditions"] = merge(prev.get("conditions"), conds, gen, now)
    st["replicas"] = replicas
    st["readyReplicas"] = ready
    for k, v in obs.fields.items():
        if v is None:
            st.pop(k, None)
        else:
            st[k] = v
    events = [
        (
            "Warning"
            if (c["type"] in ("Degraded", "Stalled") and c["status"] == TRUE)
            or (c["type"] == "Ready" and c["status"] == FALSE and was_ready)
            or (c["type"] == "Ready" and c["reason"] in STUCK_REASONS)
            else "Normal",
            c["reason"],
            c["message"] or f"{c['type']}={c['status']}",
        )
        for c in transitions(prev.get("conditions"), st["conditions"])
        if c["type"] in ("Ready", "Degraded", "Stalled")
        and not (
            c["status"] == FALSE
            and c["reason"] in ("AsExpected", "NotStalled")
            and find(prev.get("conditions"), c["type"]) is None
        )
    ]
    # One Event per cause: Ready, Degraded and Stalled often change together for one reason.
    seen: set[str] = set()
    unique = []
    for ev in events:
        if ev[1] in STUCK_REASONS and ev[1] in seen:
            continue
        seen.add(ev[1])
        unique.append(ev)
    settled = not in_flight and not degraded and not stalled
    return ServingDecision(st, unique, settled)
