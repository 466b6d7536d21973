"""Pure status of the shared hub cache: a cache entry's state from its fetch Job, its pods and
the cache ConfigMap's record; whether a resource waits for its entries or fails with their
reason; the ``status.inputs`` rows. No I/O here (builders/hubcache.py renders the objects,
reconcilers/hubcache.py reads and creates them).
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from .batch_phase import build_status, phase_conditions
from .conditions import now_rfc3339
from .pod_reports import job_condition, parse_result, terminated

FETCHING = "FetchingInputs"
"""The ``Ready=False`` reason of a resource waiting for its cache entries."""
FETCH_CONTAINER = "fetch"
_FAILURE_KIND = re.compile(r"^[A-Z][A-Za-z0-9]{0,63}$")

State = Literal["Absent", "Fetching", "Complete", "Failed"]


@dataclass(frozen=True)
class EntryState:
    """Where one cache entry stands."""

    state: State
    fetched: Mapping[str, Any] | None = field(default=None, compare=False)  # the fetch's row
    requested_by: str | None = None  # <kind>/<name>/<uid> whose request created the fetch Job
    reason: str = ""
    message: str = ""
    finished_at: str | None = None  # when the fetch Job failed


def record_of(index: Mapping[str, Any] | None, entry_hash: str) -> dict[str, Any] | None:
    """The cache ConfigMap's record of a complete entry (``data[<hash>]``), if well formed."""
    raw = ((index or {}).get("data") or {}).get(entry_hash)
    if not raw:
        return None
    try:
        doc = json.loads(raw)
    except ValueError:
        return None
    return doc if isinstance(doc, dict) and doc.get("ok") is True else None


def record(state: EntryState, key: Mapping[str, Any], now: dt.datetime) -> str:
    """What the cache ConfigMap keeps of a complete entry (JSON, one line)."""
    doc = {
        "ok": True,
        "key": dict(key),
        "fetched": dict(state.fetched or {}),
        "requestedBy": state.requested_by,
        "completedAt": now_rfc3339(now),
    }
    return json.dumps(doc, sort_keys=True, separators=(",", ":"))


def _requested_by(job: Mapping[str, Any], annotation: str) -> str | None:
    value = (job.get("metadata", {}).get("annotations") or {}).get(annotation)
    return str(value) if value else None


def _by_finish(
    pods: Sequence[Mapping[str, Any]],
) -> list[tuple[Mapping[str, Any], Mapping[str, Any]]]:
    """(pod, terminated state of its fetch container), newest first."""
    out = [(p, t) for p in pods if (t := terminated(p, FETCH_CONTAINER)) is not None]
    out.sort(key=lambda pt: str(pt[1].get("finishedAt") or ""), reverse=True)
    return out


def entry_state(
    job: Mapping[str, Any] | None,
    pods: Sequence[Mapping[str, Any]],
    rec: Mapping[str, Any] | None,
    requested_by_annotation: str,
) -> EntryState:
    """The entry's state: complete by the ConfigMap's record, else from its fetch Job."""
    if rec is not None:
        fetched = rec.get("fetched")
        by = rec.get("requestedBy")
        return EntryState(
            "Complete",
            fetched if isinstance(fetched, Mapping) else None,
            str(by) if by else None,
        )
    if job is None:
        return EntryState("Absent")
    by = _requested_by(job, requested_by_annotation)
    name = job.get("metadata", {}).get("name", "?")
    if job.get("metadata", {}).get("deletionTimestamp"):
        return EntryState(
            "Fetching", requested_by=by, message=f"fetch Job {name} is being replaced"
        )
    ended = _by_finish(pods)
    if job_condition(job, "Complete") is not None:
        for _, t in ended:
            if int(t.get("exitCode", 1)) != 0:
                continue
            result = parse_result(t.get("message")) or {}
            rows = [f for f in result.get("fetched") or [] if isinstance(f, Mapping)]
            return EntryState("Complete", rows[0] if rows else None, by)
        return EntryState("Complete", None, by)
    failed = job_condition(job, "Failed")
    if failed is not None:
        reason, detail = "FetchFailed", str(failed.get("message") or failed.get("reason") or "")
        for _, t in ended:
            if int(t.get("exitCode", 0)) == 0:
                continue
            result = parse_result(t.get("message")) or {}
            kind = str(result.get("failure") or "")
            if _FAILURE_KIND.match(kind):
                reason = kind
            detail = str(result.get("reason") or t.get("reason") or detail or "failed")
            detail = f"exited {t.get('exitCode')}: {detail}"
            break
        return EntryState(
            "Failed",
            requested_by=by,
            reason=reason,
            message=f"fetch Job {name} {detail}".strip()[:800],
            finished_at=str(failed.get("lastTransitionTime") or "") or None,
        )
    return EntryState("Fetching", requested_by=by, message=f"fetch Job {name} is running")


def retry_failed(state: EntryState, resource_created: str | None) -> bool:
    """Whether a failed entry is fetched again for this resource: only for a resource created
    after the fetch failed (the resources that waited keep their failure; a new one may come
    with a fix: a token, a repo made public, a revision pushed). Both times have one-second
    granularity, so a resource created in the second the fetch failed counts as later: a
    resource that waited was created before its fetch Job, and at worst fetches once more."""
    return (
        state.state == "Failed"
        and bool(state.finished_at)
        and bool(resource_created)
        and str(resource_created) >= str(state.finished_at)
    )


@dataclass(frozen=True)
class Needed:
    """One of a resource's inputs served from the cache, and its entry's state."""

    input: str
    source: str  # hf://<repo>[@rev]
    revision: str | None  # the revision asked for
    what: str  # "model repo <repo>@<rev>" for messages
    job: str  # the fetch Job's name
    state: EntryState


@dataclass(frozen=True)
class Verdict:
    """``ready`` (every entry complete), ``fetching`` (wait) or ``failed`` (the first failed
    entry's reason), with the message naming the repos and revisions."""

    kind: Literal["ready", "fetching", "failed"]
    reason: str
    message: str


def verdict(needed: Sequence[Needed]) -> Verdict:
    failed = [n for n in needed if n.state.state == "Failed"]
    if failed:
        n = failed[0]
        return Verdict(
            "failed",
            n.state.reason or "FetchFailed",
            f"hub cache: fetching {n.what} failed: {n.state.message}"[:1024],
        )
    waiting = [n for n in needed if n.state.state != "Complete"]
    if waiting:
        what = "; ".join(f"{n.what} (Job {n.job})" for n in waiting)
        return Verdict("fetching", FETCHING, f"fetching into the hub cache: {what}"[:1024])
    return Verdict("ready", "", "")


def rows(needed: Sequence[Needed], me: str) -> list[dict[str, Any]]:
    """``status.inputs``: per input, what the cache fetched (commit, bytes, files, once known)
    and ``cached``: false for the resource whose request started the fetch, true for the others
    (and for everyone when the fetch found the entry already complete on the volume)."""
    out: list[dict[str, Any]] = []
    for n in needed:
        row: dict[str, Any] = {"name": n.input[:256], "source": n.source[:2048]}
        if n.revision:
            row["revision"] = n.revision[:128]
        f = n.state.fetched or {}
        if f.get("revision"):
            row["commit"] = str(f["revision"])[:128]
        for key in ("bytes", "files"):
            v = f.get(key)
            if isinstance(v, int) and not isinstance(v, bool) and v >= 0:
                row[key] = v
        by = n.state.requested_by
        if f.get("cached") is True:
            row["cached"] = True
        elif by:
            row["cached"] = by != me
        out.append(row)
    return out[:32]


def merge_rows(
    new: Sequence[Mapping[str, Any]] | None, cache: Sequence[Mapping[str, Any]] | None
) -> list[dict[str, Any]]:
    """The stage's own rows (inputs its init containers fetched) and the cache's rows."""
    names = {r.get("name") for r in new or []}
    out = [dict(r) for r in new or []]
    out += [dict(r) for r in cache or [] if r.get("name") not in names]
    return out[:32]


def batch_status(
    prev: Mapping[str, Any],
    generation: int,
    now: dt.datetime,
    v: Verdict,
    inputs: Sequence[Mapping[str, Any]],
) -> dict[str, Any]:
    """A batch resource's status while it waits for its entries (phase ``Waiting``, reason
    ``FetchingInputs``) or once one failed (phase ``Failed`` with the fetch's reason)."""
    failed = v.kind == "failed"
    phase = "Failed" if failed else "Waiting"
    conds = phase_conditions(
        phase,
        v.reason,
        v.message,
        created=False,
        running=False,
        restarting=None,
        suspended=False,
    )
    fields: dict[str, Any] = {"inputs": [dict(r) for r in inputs] or None}
    if failed:
        fields["completionTime"] = now_rfc3339(now)
    return build_status(prev, generation, now_rfc3339(now), phase, conds, **fields)
