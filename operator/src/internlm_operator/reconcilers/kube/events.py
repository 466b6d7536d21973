"""Kubernetes Events (core/v1) about our resources. Best effort: never fails a reconcile.

An Event's name is derived from the resource's identity and version and from what it says
(:func:`event_name`), so a pass that recorded its Events and then died before its status patch
(operator killed, API server gone) records the same names again on the retry and the API
server refuses the copies (409 AlreadyExists): the reconcilers record Events *before* the
status patch that makes the transition, so a kill in between loses none and duplicates none.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import secrets
from collections.abc import Mapping
from typing import Any

from .client import Kube, KubeError

COMPONENT = "internlm-operator"
log = logging.getLogger(__name__)


def event_name(obj: Mapping[str, Any], type_: str, reason: str, message: str) -> str:
    """``<resource>.<16 hex>``: the same for the same resource version (uid, resourceVersion)
    and the same Event, so a retried pass cannot record it twice (random without a version)."""
    md = obj.get("metadata", {})
    uid, version = md.get("uid"), md.get("resourceVersion")
    if not uid or not version:
        return f"{md.get('name')}.{secrets.token_hex(8)}"
    key = "\0".join((str(uid), str(version), type_, reason, message[:1024]))
    return f"{md.get('name')}.{hashlib.sha256(key.encode()).hexdigest()[:16]}"


def record(kube: Kube, obj: dict[str, Any], type_: str, reason: str, message: str) -> None:
    md = obj.get("metadata", {})
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    ns = md.get("namespace") or "default"
    event = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": event_name(obj, type_, reason, message), "namespace": ns},
        "involvedObject": {
            "apiVersion": obj.get("apiVersion"),
            "kind": obj.get("kind"),
            "name": md.get("name"),
            "namespace": ns,
            "uid": md.get("uid"),
            "resourceVersion": md.get("resourceVersion"),
        },
        "type": type_,
        "reason": reason,
        "message": message[:1024],
        "source": {"component": COMPONENT},
        "reportingComponent": COMPONENT,
        "reportingInstance": COMPONENT,
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    }
    try:
        kube.create(event)
    except KubeError as e:  # events are advisory
        if e.status == 409 and e.reason == "AlreadyExists":
            return  # recorded by a pass that died before its status patch
        log.warning("could not record event %s on %s/%s: %s", reason, ns, md.get("name"), e)
