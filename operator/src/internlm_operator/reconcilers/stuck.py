"""The reads behind the "stuck" reasons (:mod:`..status.stuck` classifies what they return).

- :func:`lookup`: does each PVC, Secret and ConfigMap a pod template names exist? Metadata-only
  GETs, so a Secret's data never reaches the operator; without permission to read a kind (the
  chart grants no Secret reads unless ``rbac.checkSecrets`` is set) the answer is ``None`` and
  that reference is not checked.
- :func:`events_of`: the Events of one object (a Job's ``FailedCreate``); ``[]`` without the
  permission to list Events.
- :func:`workload_for`: Kueue's Workload of a Job (for Kueue's reason while it is queued);
  ``None`` when Kueue is not installed (404) or the operator may not read Workloads (403).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ..status.kueue import JOB_UID_LABEL, workload_of
from ..status.stuck import Ref
from .kube import Kube, KubeError


def lookup(kube: Kube, namespace: str, refs: Iterable[Ref]) -> dict[Ref, bool | None]:
    found: dict[Ref, bool | None] = {}
    denied: set[str] = set()
    for kind, name in refs:
        if kind in denied:
            found[(kind, name)] = None
            continue
        ok = kube.exists("v1", kind, namespace, name)
        if ok is None:
            denied.add(kind)  # one 403 per kind and pass is enough
        found[(kind, name)] = ok
    return found


def events_of(kube: Kube, namespace: str, obj: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    uid = (obj or {}).get("metadata", {}).get("uid")
    if not uid:
        return []
    try:
        return kube.list("v1", "Event", namespace, fields={"involvedObject.uid": str(uid)})
    except KubeError as e:
        if e.status == 403:
            return []
        raise


def workload_for(kube: Kube, namespace: str, job: Mapping[str, Any] | None) -> Any:
    uid = (job or {}).get("metadata", {}).get("uid")
    if not uid:
        return None
    try:
        found = kube.list(WORKLOAD[0], WORKLOAD[1], namespace, {JOB_UID_LABEL: str(uid)})
    except KubeError as e:
        if e.status in (403, 404):
            return None
        raise
    return workload_of(found, str(uid))


WORKLOAD = ("kueue.x-k8s.io/v1beta2", "Workload")
