"""Pure helpers for Kubernetes conditions (metav1.Condition shape, plain dicts)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

TRUE, FALSE, UNKNOWN = "True", "False", "Unknown"


def now_rfc3339(now: dt.datetime | None = None) -> str:
    now = now or dt.datetime.now(dt.UTC)
    return now.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    try:
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


@dataclass(frozen=True)
class Cond:
    """A desired condition; ``lastTransitionTime`` is filled in by :func:`merge`."""

    type: str
    status: str
    reason: str
    message: str = ""


def find(conditions: Iterable[dict[str, Any]] | None, type_: str) -> dict[str, Any] | None:
    for c in conditions or []:
        if c.get("type") == type_:
            return c
    return None


def is_true(conditions: Iterable[dict[str, Any]] | None, type_: str) -> bool:
    c = find(conditions, type_)
    return bool(c and c.get("status") == TRUE)


def merge(
    old: Sequence[dict[str, Any]] | None,
    new: Sequence[Cond],
    generation: int | None,
    now: str,
) -> list[dict[str, Any]]:
    """The full new conditions list, in the order of ``new``.

    ``lastTransitionTime`` is kept from ``old`` when a condition's status did not change, so a
    pass that changes nothing writes back exactly what it read.
    """
    out: list[dict[str, Any]] = []
    for c in new:
        prev = find(old, c.type)
        ltt = prev.get("lastTransitionTime") if prev and prev.get("status") == c.status else None
        d: dict[str, Any] = {
            "type": c.type,
            "status": c.status,
            "reason": c.reason,
            "message": c.message[:32768],
            "lastTransitionTime": ltt or now,
        }
        if generation is not None:
            d["observedGeneration"] = generation
        out.append(d)
    return out


def transitions(
    old: Sequence[dict[str, Any]] | None, new: Sequence[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Conditions of ``new`` whose status or reason differs from ``old`` (for Events)."""
    changed = []
    for c in new:
        prev = find(old, c["type"])
        if prev is None or prev.get("status") != c["status"] or prev.get("reason") != c["reason"]:
            changed.append(c)
    return changed
