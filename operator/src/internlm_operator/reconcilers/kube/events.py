"""Kubernetes Events (core/v1) about our resources. Best effort: never fails a reconcile."""

from __future__ import annotations

import datetime as dt
import logging
import secrets
from typing import Any

from .client import Kube, KubeError

COMPONENT = "internlm-operator"
log = logging.getLogger(__name__)


def record(kube: Kube, obj: dict[str, Any], type_: str, reason: str, message: str) -> None:
    md = obj.get("metadata", {})
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    ns = md.get("namespace") or "default"
    event = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": f"{md.get('name')}.{secrets.token_hex(8)}", "namespace": ns},
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
        log.warning("could not record event %s on %s/%s: %s", reason, ns, md.get("name"), e)
