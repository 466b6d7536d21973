"""The resource that owns the children: their names, labels (Kueue's passed on) and owner
references."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..api.labels import KIND_LABEL, MANAGED_BY, RESOURCE_LABEL
from ..runtimes import InvalidSpec

PART_OF = "internlm"
QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
PRIORITY_LABEL = "kueue.x-k8s.io/priority-class"
KUEUE_LABELS = (QUEUE_LABEL, PRIORITY_LABEL)
"""The resource's labels that Kueue reads, passed on to the children (Job, pod template)."""
SHORT = {"TrainJob": "tj", "FineTune": "ft", "EvalRun": "er", "ModelServe": "ms", "Agent": "ag"}


@dataclass(frozen=True)
class Owner:
    """The identity of the resource that owns the children."""

    api_version: str
    kind: str
    namespace: str
    name: str
    uid: str
    generation: int = 1
    labels: Mapping[str, str] = field(default_factory=dict)

    @property
    def base_name(self) -> str:
        """``<name>-<short kind>``: children of different kinds never collide."""
        return f"{self.name}-{SHORT[self.kind]}"

    def owner_reference(self) -> dict[str, Any]:
        return {
            "apiVersion": self.api_version,
            "kind": self.kind,
            "name": self.name,
            "uid": self.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }

    def labels_for(self, component: str) -> dict[str, str]:
        out = {
            "app.kubernetes.io/name": self.kind.lower(),
            "app.kubernetes.io/instance": self.name,
            "app.kubernetes.io/component": component,
            "app.kubernetes.io/managed-by": MANAGED_BY,
            "app.kubernetes.io/part-of": PART_OF,
            RESOURCE_LABEL: self.name,
            KIND_LABEL: self.kind,
        }
        for key in KUEUE_LABELS:
            value = self.labels.get(key)
            if value:
                out[key] = value
        return out

    def metadata(
        self, name: str, component: str, annotations: Mapping[str, str] | None = None
    ) -> dict[str, Any]:
        md: dict[str, Any] = {
            "name": name,
            "namespace": self.namespace,
            "labels": self.labels_for(component),
            "ownerReferences": [self.owner_reference()],
        }
        if annotations:
            md["annotations"] = dict(annotations)
        return md


def with_queue(o: Owner, spec: Any) -> Owner:
    """``o`` labelled with ``spec.scheduling.queueName`` (it wins over a queue label on the
    resource), so the children carry it as if the resource had the label."""
    s = getattr(spec, "scheduling", None)
    queue = getattr(s, "queue_name", None)
    if not queue:
        return o
    return dataclasses.replace(o, labels={**o.labels, QUEUE_LABEL: queue})


def check_name(name: str, limit: int, what: str) -> str:
    if len(name) > limit:
        raise InvalidSpec(f"the name is too long: {what} {name!r} would exceed {limit} characters")
    return name


def stable_hash(*parts: Any) -> str:
    data = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(data.encode()).hexdigest()[:16]
