"""Where a pod's inputs and outputs live: source locations, PVC mounts, the fetch init
containers and the hub cache volume, and the way back from a reported path to a location."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..runtimes import InvalidSpec
from . import hubcache
from .owner import KUEUE_LABELS, Owner

PVC_ROOT = "/mnt/pvc"
INPUTS_ROOT = "/mnt/inputs"
LOCAL_OUTPUT = "/mnt/output"
INPUTS_VOLUME = "inputs"
INPUTS_ENV = "INTERNLM_INPUTS"
"""The input a ``fetch-<input>`` init container fetches (a JSON list of one entry;
docs/workload-contract.md)."""
FETCHED_DIR_ENV = "INTERNLM_FETCHED_DIR"
FETCHED_DIR = f"{INPUTS_ROOT}/.fetched"
"""Where each fetch leaves what it fetched (repo, commit, size) for the stage's result."""
FETCH_COMMAND = ["python", "-m", "internlm_workloads", "fetch"]
FETCHED_SCHEMES = ("hf://", "ms://", "s3://")
CACHE_SIZE = {"TrainJob": "500Gi", "FineTune": "200Gi", "EvalRun": "200Gi", "ModelServe": "200Gi"}
"""Size of the hub download cache when it is a generic ephemeral volume (a default storage
class is set): the models (and, for the batch kinds, datasets) a pod downloads from the
Hugging Face Hub or ModelScope. A 7B model in bf16 is ~15 GiB, 70B ~140 GiB; a TrainJob may
also download its corpus."""


def hub_includes(src: Any) -> list[str] | None:
    """``include`` of a huggingFace / modelScope source, else None."""
    for attr in ("hugging_face", "model_scope"):
        repo = getattr(src, attr, None)
        if repo is not None and repo.include:
            return [str(p) for p in repo.include]
    return None


def source_location(src: Any, upstream: str | None = None) -> str:
    """A source model (ModelSource, DatasetSource, StorageLocation) as a location string:
    ``pvc://<claim>/<path>``, ``hf://<repo>[@rev]``, ``ms://<repo>[@rev]`` or a URI. A
    ``fromResource`` source takes the resolved upstream location."""
    if getattr(src, "from_resource", None) is not None:
        if not upstream:
            raise InvalidSpec("fromResource is not resolved")
        return upstream
    if getattr(src, "pvc", None) is not None:
        return pvc_uri(src.pvc.claim_name, src.pvc.path)
    for attr, scheme in (("hugging_face", "hf"), ("model_scope", "ms")):
        repo = getattr(src, attr, None)
        if repo is not None:
            rev = f"@{repo.revision}" if repo.revision else ""
            return f"{scheme}://{repo.repo}{rev}"
    if getattr(src, "uri", None):
        return str(src.uri)
    raise InvalidSpec("the source has no location")


def pvc_uri(claim: str, path: str = "") -> str:
    path = path.strip("/")
    return f"pvc://{claim}/{path}" if path else f"pvc://{claim}"


def split_pvc(loc: str) -> tuple[str, str]:
    rest = loc[len("pvc://") :]
    claim, _, path = rest.partition("/")
    return claim, path.strip("/")


@dataclass
class Storage:
    """Accumulates the volumes, mounts and fetch init-containers a pod needs."""

    image: str
    pull_policy: str
    hub_env: list[dict[str, Any]] = field(default_factory=list)
    volumes: dict[str, dict[str, Any]] = field(default_factory=dict)
    mounts: dict[str, dict[str, Any]] = field(default_factory=dict)
    init_containers: list[dict[str, Any]] = field(default_factory=list)
    output_uri: str | None = None
    # With a storage class, the hub download cache is a generic ephemeral volume of that class
    # (one ReadWriteOnce PVC per pod, created and deleted with it) instead of an emptyDir.
    cache_storage_class: str | None = None
    cache_size: str = "200Gi"
    cache_labels: Mapping[str, str] = field(default_factory=dict)
    # What the pod fetches (INTERNLM_INPUTS entries), one ``fetch-<input>`` init container each
    fetches: list[dict[str, Any]] = field(default_factory=list)
    # --hub-cache-storage-class set: hub repos come from the namespace's cache PVC (a subPath
    # mount per entry, builders/hubcache.py) instead of init containers
    hub_cache: bool = False
    cache_entries: list[hubcache.CacheEntry] = field(default_factory=list)

    def _pvc(self, claim: str, read_only: bool) -> str:
        vol = f"pvc-{claim}"[:63]
        mount = f"{PVC_ROOT}/{claim}"
        self.volumes.setdefault(vol, {"name": vol, "persistentVolumeClaim": {"claimName": claim}})
        prev = self.mounts.get(vol)
        ro = read_only and (prev is None or prev.get("readOnly", False))
        self.mounts[vol] = {"name": vol, "mountPath": mount, "readOnly": ro}
        return mount

    def _inputs(self) -> None:
        self.volumes.setdefault(INPUTS_VOLUME, self.cache_volume())
        self.mounts.setdefault(INPUTS_VOLUME, {"name": INPUTS_VOLUME, "mountPath": INPUTS_ROOT})

    def cache_volume(self) -> dict[str, Any]:
        """The volume hub sources are downloaded into: an emptyDir on the node's disk, or with
        a storage class a generic ephemeral volume (``ephemeral.volumeClaimTemplate``)."""
        if not self.cache_storage_class:
            return {"name": INPUTS_VOLUME, "emptyDir": {}}
        template: dict[str, Any] = {
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "storageClassName": self.cache_storage_class,
                "resources": {"requests": {"storage": self.cache_size}},
            }
        }
        if self.cache_labels:
            template["metadata"] = {"labels": dict(self.cache_labels)}
        return {"name": INPUTS_VOLUME, "ephemeral": {"volumeClaimTemplate": template}}

    def mount(self, key: str, loc: str, include: list[str] | None = None) -> str:
        """Make ``loc`` available in the pod; returns the path (or URI) the workload uses.
        Hub repos and ``s3://`` objects are fetched into ``/mnt/inputs/<key>`` (an S3 object
        or prefix keeps its last path segment: ``/mnt/inputs/<key>/<name>``)."""
        if loc.startswith("pvc://"):
            claim, path = split_pvc(loc)
            root = self._pvc(claim, read_only=True)
            return f"{root}/{path}" if path else root
        if not loc.startswith(FETCHED_SCHEMES):
            return loc  # another object-store / HTTP URI: passed to the workload as is
        safe = key.replace(":", "-")
        dest = f"{INPUTS_ROOT}/{safe}"
        repo_type = "dataset" if is_dataset_key(key) else "model"
        cached = hubcache.entry_for(key, loc, include, repo_type) if self.hub_cache else None
        if cached is not None:
            self.cache_entries.append(cached)
            self.volumes.setdefault(hubcache.VOLUME, hubcache.pod_volume())
            self.mounts[f"{hubcache.VOLUME}:{key}"] = hubcache.pod_mount(cached, dest)
            return dest
        self._inputs()
        if loc.startswith("s3://"):
            bucket, _, path = loc[len("s3://") :].partition("/")
            dest += "/" + (path.rstrip("/").rsplit("/", 1)[-1] or bucket)
        entry: dict[str, Any] = {"name": key, "source": loc, "dest": dest}
        if loc.startswith(("hf://", "ms://")):
            entry["repoType"] = repo_type
        if include:
            entry["allowPatterns"] = list(include)
        self.fetches.append(entry)
        self.init_containers.append(
            {
                "name": f"fetch-{safe.replace('_', '-').lower()}"[:63],
                "image": self.image,
                "imagePullPolicy": self.pull_policy,
                "command": list(FETCH_COMMAND),
                "env": [
                    {"name": INPUTS_ENV, "value": _compact([entry])},
                    {"name": FETCHED_DIR_ENV, "value": FETCHED_DIR},
                    *self.hub_env,
                ],
                "volumeMounts": [{"name": INPUTS_VOLUME, "mountPath": INPUTS_ROOT}],
                "terminationMessagePolicy": "FallbackToLogsOnError",
            }
        )
        return dest

    def fetched_env(self) -> list[dict[str, Any]]:
        """For the main container: where the init containers left what they fetched."""
        return [{"name": FETCHED_DIR_ENV, "value": FETCHED_DIR}] if self.fetches else []

    def output(self, loc: Any) -> str:
        """Mount the output location read-write; returns INTERNLM_OUTPUT_DIR."""
        if loc is None:
            self.volumes.setdefault("output", {"name": "output", "emptyDir": {}})
            self.mounts.setdefault("output", {"name": "output", "mountPath": LOCAL_OUTPUT})
            return LOCAL_OUTPUT
        if loc.pvc is not None:
            root = self._pvc(loc.pvc.claim_name, read_only=False)
            path = loc.pvc.path.strip("/")
            return f"{root}/{path}" if path else root
        self.output_uri = loc.uri
        self.volumes.setdefault("output", {"name": "output", "emptyDir": {}})
        self.mounts.setdefault("output", {"name": "output", "mountPath": LOCAL_OUTPUT})
        return LOCAL_OUTPUT


def is_dataset_key(key: str) -> bool:
    """Whether an input key names a dataset (a Hub dataset repo) rather than a model."""
    return key in ("data", "dataset", "evalData") or key.startswith("custom:")


def _compact(doc: Any) -> str:
    return json.dumps(doc, separators=(",", ":"), sort_keys=True)


def storage_for(
    o: Owner,
    image: str,
    pull_policy: str,
    hub_env: list[dict[str, Any]],
    storage_class: str | None = None,
    hub_cache: bool = False,
) -> Storage:
    """A :class:`Storage` for a pod of ``o``: the hub cache sized for its kind and labelled for
    it (without the Kueue labels: the PVC is not a workload); with ``hub_cache`` hub repos come
    from the namespace's shared cache."""
    labels = {k: v for k, v in o.labels_for("cache").items() if k not in KUEUE_LABELS}
    return Storage(
        image=image,
        pull_policy=pull_policy,
        hub_env=hub_env,
        cache_storage_class=storage_class or None,
        cache_size=CACHE_SIZE.get(o.kind, "200Gi"),
        cache_labels=labels,
        hub_cache=hub_cache,
    )


def to_location(path: str | None, output_dir: str, output_loc: Any) -> str | None:
    """Translate a path the workload reported into a location another pod can mount:
    ``/mnt/pvc/<claim>/x`` -> ``pvc://<claim>/x``; under a synced local output dir -> the URI."""
    if not path:
        return path
    if path.startswith(PVC_ROOT + "/"):
        claim, _, rest = path[len(PVC_ROOT) + 1 :].partition("/")
        return pvc_uri(claim, rest)
    if (
        output_loc is not None
        and getattr(output_loc, "uri", None)
        and path.startswith(LOCAL_OUTPUT)
    ):
        return str(output_loc.uri).rstrip("/") + path[len(LOCAL_OUTPUT) :]
    return path
