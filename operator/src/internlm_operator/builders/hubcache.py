"""Pure builders of the shared hub cache (docs/inputs-and-outputs.md, "The shared hub cache").

With the operator's ``--hub-cache-storage-class`` set, a Hugging Face / ModelScope input is not
fetched by an init container of every pod: it is fetched once per namespace into one
ReadWriteMany PVC (:data:`CLAIM`) by a small Job per cache entry, and the workload pods mount
the entry read-only (``subPath``). An entry is keyed by ``(hub, repo type, repo, revision,
include)``; its hash names the entry's directory on the PVC and its fetch Job. The Job and the
PVC are owned by the namespace's cache ConfigMap (:data:`INDEX`), not by a resource, so they
outlive the resource that first asked and later resources reuse them; the ConfigMap records
what each entry fetched (``data[<hash>]``: repo, commit, bytes, files).

Layout of the PVC: ``<hash>/data/`` the files (what the pods see at ``/mnt/inputs/<input>``),
``<hash>/COMPLETE`` the marker the fetch writes last (the result, JSON), so a fetch Job run
again on a complete entry downloads nothing.

No I/O here, and nothing from the other builders' modules (:mod:`.common` imports this one).
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .security import harden

CLAIM = "internlm-hub-cache"
"""The namespace's cache PVC (ReadWriteMany)."""
INDEX = "internlm-hub-cache"
"""The namespace's cache ConfigMap: owner of the PVC and the fetch Jobs, record of the entries."""
VOLUME = "hub-cache"
COMPONENT = "hub-cache"
ENTRY_LABEL = "internlm.io/hub-cache-entry"
REQUESTED_BY = "internlm.io/requested-by"
"""On a fetch Job: ``<kind>/<name>/<uid>`` of the resource whose request created it."""
KEY_ANNOTATION = "internlm.io/hub-cache-key"
FETCH_CONTAINER = "fetch"
JOB_ROOT = "/mnt/hub-cache"
"""Where the fetch Job mounts the whole PVC (the entry directory is created by the fetch)."""
DATA_DIR = "data"
MARKER = "COMPLETE"
FETCH_COMMAND = ["python", "-m", "internlm_workloads", "fetch"]
HUBS = {"hf://": "huggingFace", "ms://": "modelScope"}
MANAGED_LABELS = {
    "app.kubernetes.io/name": "hub-cache",
    "app.kubernetes.io/component": COMPONENT,
    "app.kubernetes.io/managed-by": "internlm-operator",
    "app.kubernetes.io/part-of": "internlm",
}
# A fetch that fails with an exit code the workload calls permanent (1: RepoNotFound, ...)
# fails the Job at once; 75 (Unreachable) and signals are retried up to BACKOFF_LIMIT.
BACKOFF_LIMIT = 3
RETRIED_EXIT_CODES = [0, 75, 137, 143]
FETCH_RESOURCES = {"requests": {"cpu": "500m", "memory": "512Mi"}}


@dataclass(frozen=True)
class CacheSettings:
    """The operator's hub-cache flags."""

    storage_class: str
    size: str = "1Ti"


@dataclass(frozen=True)
class CacheEntry:
    """One input of a resource served from the cache."""

    input: str  # the resource's input key: model, dataset, data, tokenizer, custom:<name>, ...
    hub: str  # huggingFace | modelScope
    repo_type: str  # model | dataset
    repo: str
    revision: str | None
    include: tuple[str, ...] = ()

    @property
    def key(self) -> dict[str, Any]:
        return {
            "hub": self.hub,
            "repoType": self.repo_type,
            "repo": self.repo,
            "revision": self.revision or "",
            "include": sorted(self.include),
        }

    @property
    def hash(self) -> str:
        data = json.dumps(self.key, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(data.encode()).hexdigest()[:16]

    @property
    def job_name(self) -> str:
        return f"hub-fetch-{self.hash}"

    @property
    def source(self) -> str:
        scheme = next(s for s, h in HUBS.items() if h == self.hub)
        return f"{scheme}{self.repo}" + (f"@{self.revision}" if self.revision else "")

    @property
    def sub_path(self) -> str:
        return f"{self.hash}/{DATA_DIR}"

    def describe(self) -> str:
        """``<repo>@<revision>`` for messages (``main`` when no revision was asked)."""
        return f"{self.repo_type} repo {self.repo}@{self.revision or 'main'}"


def entry_for(
    key: str, loc: str, include: Sequence[str] | None, repo_type: str
) -> CacheEntry | None:
    """The cache entry of an input at location ``loc``; None when the cache does not serve it
    (only ``hf://`` and ``ms://`` repos are cached; ``s3://`` keeps its init container)."""
    for scheme, hub in HUBS.items():
        if loc.startswith(scheme):
            repo, _, rev = loc[len(scheme) :].partition("@")
            return CacheEntry(key, hub, repo_type, repo, rev or None, tuple(include or ()))
    return None


def pod_volume() -> dict[str, Any]:
    """The workload pods' volume of the cache PVC (read-only)."""
    return {"name": VOLUME, "persistentVolumeClaim": {"claimName": CLAIM, "readOnly": True}}


def pod_mount(entry: CacheEntry, path: str) -> dict[str, Any]:
    """The entry's files, read-only, at ``path`` (``/mnt/inputs/<input>``)."""
    return {"name": VOLUME, "mountPath": path, "subPath": entry.sub_path, "readOnly": True}


def _labels(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    return {**MANAGED_LABELS, **(extra or {})}


def index_config_map(namespace: str) -> dict[str, Any]:
    """The namespace's cache ConfigMap (created empty; entries are added by merge patch)."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": INDEX, "namespace": namespace, "labels": _labels()},
        "data": {},
    }


def owner_reference(index: Mapping[str, Any]) -> dict[str, Any]:
    """An ownerReference to the cache ConfigMap (not a controller: nothing reconciles it)."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "name": str(index["metadata"]["name"]),
        "uid": str(index["metadata"]["uid"]),
    }


def claim(namespace: str, settings: CacheSettings, owner: Mapping[str, Any]) -> dict[str, Any]:
    """The namespace's ReadWriteMany cache PVC."""
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {
            "name": CLAIM,
            "namespace": namespace,
            "labels": _labels(),
            "ownerReferences": [dict(owner)],
        },
        "spec": {
            "accessModes": ["ReadWriteMany"],
            "storageClassName": settings.storage_class,
            "resources": {"requests": {"storage": settings.size}},
        },
    }


@dataclass(frozen=True)
class FetchJobInputs:
    namespace: str
    entry: CacheEntry
    image: str
    pull_policy: str
    owner: Mapping[str, Any]  # ownerReference of the cache ConfigMap
    requested_by: str  # <kind>/<name>/<uid>
    env: Sequence[Mapping[str, Any]] = ()  # the requester's hub tokens / object store env
    scheduling: Mapping[str, Any] = field(default_factory=dict)  # node selector, tolerations


def fetch_input(entry: CacheEntry) -> dict[str, Any]:
    """The ``INTERNLM_INPUTS`` entry of the fetch Job."""
    root = f"{JOB_ROOT}/{entry.hash}"
    out: dict[str, Any] = {
        "name": entry.input,
        "source": entry.source,
        "dest": f"{root}/{DATA_DIR}",
        "repoType": entry.repo_type,
        "completeMarker": f"{root}/{MARKER}",
    }
    if entry.include:
        out["allowPatterns"] = list(entry.include)
    return out


def fetch_job(inp: FetchJobInputs) -> dict[str, Any]:
    """The Job that fetches one entry into the PVC (the same ``fetch`` command as the init
    containers, with a ``COMPLETE`` marker)."""
    e = inp.entry
    env = [
        {"name": "INTERNLM_INPUTS", "value": json.dumps([fetch_input(e)], sort_keys=True)},
        *(copy.deepcopy(dict(x)) for x in inp.env),
    ]
    container = {
        "name": FETCH_CONTAINER,
        "image": inp.image,
        "imagePullPolicy": inp.pull_policy,
        "command": list(FETCH_COMMAND),
        "env": env,
        "volumeMounts": [{"name": VOLUME, "mountPath": JOB_ROOT}],
        "resources": copy.deepcopy(FETCH_RESOURCES),
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    pod: dict[str, Any] = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "containers": [container],
        "volumes": [{"name": VOLUME, "persistentVolumeClaim": {"claimName": CLAIM}}],
        **copy.deepcopy(dict(inp.scheduling)),
    }
    harden(pod)
    labels = _labels({ENTRY_LABEL: e.hash})
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": e.job_name,
            "namespace": inp.namespace,
            "labels": labels,
            "annotations": {
                REQUESTED_BY: inp.requested_by,
                KEY_ANNOTATION: json.dumps(e.key, sort_keys=True, separators=(",", ":")),
            },
            "ownerReferences": [dict(inp.owner)],
        },
        "spec": {
            "backoffLimit": BACKOFF_LIMIT,
            "podFailurePolicy": {
                "rules": [
                    {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
                    {
                        "action": "FailJob",
                        "onExitCodes": {
                            "containerName": FETCH_CONTAINER,
                            "operator": "NotIn",
                            "values": list(RETRIED_EXIT_CODES),
                        },
                    },
                ]
            },
            "template": {"metadata": {"labels": labels}, "spec": pod},
        },
    }


def fetch_scheduling(pod_spec: Mapping[str, Any]) -> dict[str, Any]:
    """The placement fields of a requester's pod spec the fetch Job copies (the nodes that may
    run the requester's pods may run its fetch), without the GPU product selector."""
    out: dict[str, Any] = {}
    sel = {k: v for k, v in (pod_spec.get("nodeSelector") or {}).items() if "nvidia.com" not in k}
    if sel:
        out["nodeSelector"] = sel
    if pod_spec.get("tolerations"):
        out["tolerations"] = copy.deepcopy(pod_spec["tolerations"])
    return out
