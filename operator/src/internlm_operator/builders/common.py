"""Pure helpers shared by the builders: names, labels, owner references, storage mounts."""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..api.labels import KIND_LABEL, MANAGED_BY, RESOURCE_LABEL
from ..runtimes import CONFIG_DIR, InvalidSpec, RenderContext, Rendered, for_resource
from . import hubcache
from .security import harden

PART_OF = "internlm"
QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
PRIORITY_LABEL = "kueue.x-k8s.io/priority-class"
KUEUE_LABELS = (QUEUE_LABEL, PRIORITY_LABEL)
"""The resource's labels that Kueue reads, passed on to the children (Job, pod template)."""
SHORT = {"TrainJob": "tj", "FineTune": "ft", "EvalRun": "er", "ModelServe": "ms", "Agent": "ag"}
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


# -- compute -------------------------------------------------------------------------------

DEFAULTABLE = ("cpu", "memory")


def container_resources(
    res: Any, defaults: Mapping[str, Mapping[str, str]] | None = None
) -> dict[str, Any]:
    """A container's ``resources`` from the spec's ``resources`` (``gpusPerNode``, ``cpu``,
    ``memory``: request = limit), completed by the operator's defaults (``--default-resources``)
    for cpu and memory where the spec sets none. GPUs only ever come from the spec."""
    requests: dict[str, str] = {}
    limits: dict[str, str] = {}
    gpus = int(getattr(res, "gpus_per_node", 0) or 0)
    if gpus:
        requests["nvidia.com/gpu"] = limits["nvidia.com/gpu"] = str(gpus)
    for name in DEFAULTABLE:
        value = getattr(res, name, None)
        if value is not None:
            requests[name] = limits[name] = str(value)
            continue
        for part, out in (("requests", requests), ("limits", limits)):
            d = (defaults or {}).get(part) or {}
            if name in d:
                out[name] = str(d[name])
    result: dict[str, Any] = {}
    if requests:
        result["requests"] = requests
    if limits:
        result["limits"] = limits
    return result


# -- pods ----------------------------------------------------------------------------------


def render(
    o: Owner,
    spec: Any,
    *,
    paths: Mapping[str, str],
    output_dir: str,
    nodes: int = 1,
    gpus_per_node: int = 0,
    extra: Mapping[str, Any] | None = None,
) -> Rendered:
    """Render ``spec`` with the runtime registered for ``o``'s kind."""
    return for_resource(o.kind, spec).render(
        RenderContext(
            kind=o.kind,
            namespace=o.namespace,
            name=o.name,
            uid=o.uid,
            spec=spec,
            paths=paths,
            output_dir=output_dir,
            nodes=nodes,
            gpus_per_node=gpus_per_node,
            extra=extra if extra is not None else {},
        )
    )


def secret_env(name: str, ref: Any) -> dict[str, Any]:
    """An env var from a Secret key (the value never leaves the Secret)."""
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}}}


# The ``spec.env`` variables a fetch honours as well (a hub mirror such as HF_ENDPOINT, the
# clients' own settings, proxies, CA bundles): the fetch init containers and the hub cache's
# fetch Job get them too, not only the workload container.
FETCH_ENV_PREFIXES = ("HF_", "HUGGINGFACE_", "MODELSCOPE_", "AWS_", "INTERNLM_FETCH_")
FETCH_ENV_NAMES = frozenset(
    ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE")
)


def is_fetch_env(name: str) -> bool:
    return name.startswith(FETCH_ENV_PREFIXES) or name.upper() in FETCH_ENV_NAMES


def hub_env(spec: Any) -> list[dict[str, Any]]:
    """What fetching and uploading need: the model hub tokens of ``spec.hubTokens`` and the
    object-store credentials of ``spec.objectStore`` as env vars from their Secrets, the
    object-store endpoint, region and addressing style, and the fetch settings of
    ``spec.env`` (:func:`is_fetch_env`), which replace a variable of the same name."""
    env = []
    tokens = getattr(spec, "hub_tokens", None)
    if tokens is not None and tokens.hugging_face is not None:
        env.append(secret_env("HF_TOKEN", tokens.hugging_face))
    if tokens is not None and tokens.model_scope is not None:
        env.append(secret_env("MODELSCOPE_API_TOKEN", tokens.model_scope))
    env += object_store_env(spec)
    user = [e.to_dict() for e in getattr(spec, "env", None) or [] if is_fetch_env(e.name)]
    mine = {e["name"] for e in user}
    return [e for e in env if e["name"] not in mine] + user


def without_user_env(env: list[dict[str, Any]], spec: Any) -> list[dict[str, Any]]:
    """``env`` less the names ``spec.env`` sets (the workload container appends spec.env
    itself, last; a name twice in one container breaks server-side apply)."""
    mine = {e.name for e in getattr(spec, "env", None) or []}
    return [e for e in env if e["name"] not in mine]


def object_store_env(spec: Any) -> list[dict[str, Any]]:
    """``spec.objectStore`` as the env boto3 reads (AWS_ENDPOINT_URL_S3, AWS_DEFAULT_REGION,
    the key pair from its Secrets) and the addressing style (path with an endpoint)."""
    store = getattr(spec, "object_store", None)
    if store is None:
        return []
    env: list[dict[str, Any]] = []
    if store.endpoint:
        env.append({"name": "AWS_ENDPOINT_URL_S3", "value": store.endpoint})
    if store.region:
        env.append({"name": "AWS_DEFAULT_REGION", "value": store.region})
    style = store.addressing_style or ("path" if store.endpoint else None)
    if style:
        env.append({"name": "INTERNLM_S3_ADDRESSING_STYLE", "value": style})
    if store.access_key_id is not None and store.secret_access_key is not None:
        env.append(secret_env("AWS_ACCESS_KEY_ID", store.access_key_id))
        env.append(secret_env("AWS_SECRET_ACCESS_KEY", store.secret_access_key))
    return env


def hub_includes(src: Any) -> list[str] | None:
    """``include`` of a huggingFace / modelScope source, else None."""
    for attr in ("hugging_face", "model_scope"):
        repo = getattr(src, attr, None)
        if repo is not None and repo.include:
            return [str(p) for p in repo.include]
    return None


def scheduling(spec: Any) -> dict[str, Any]:
    """Pod-spec fields for placement: node selector (+ GPU product), tolerations, affinity,
    priority class and scheduler name."""
    out: dict[str, Any] = {}
    s = getattr(spec, "scheduling", None)
    selector: dict[str, str] = dict(s.node_selector or {}) if s is not None else {}
    product = getattr(spec.resources, "gpu_product", None)
    if product:
        selector["nvidia.com/gpu.product"] = product
    if selector:
        out["nodeSelector"] = selector
    if s is not None:
        if s.tolerations:
            out["tolerations"] = [t.to_dict() for t in s.tolerations]
        if s.affinity:
            out["affinity"] = dict(s.affinity)
        if s.priority_class_name:
            out["priorityClassName"] = s.priority_class_name
        if s.scheduler_name:
            out["schedulerName"] = s.scheduler_name
    return out


def config_map(o: Owner, name: str, rendered: Rendered) -> dict[str, Any]:
    """The ConfigMap holding the rendered files (mounted under ``CONFIG_DIR``)."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": o.metadata(name, "config"),
        "data": dict(sorted(rendered.files.items())),
    }


def config_volume(cm_name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(volume, read-only mount) of the rendered-files ConfigMap."""
    return (
        {"name": "config", "configMap": {"name": cm_name}},
        {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
    )


def shm_volume(res: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """(volume, mount) of a memory-backed ``/dev/shm``, sized by ``resources.sharedMemory``."""
    shm: dict[str, Any] = {"medium": "Memory"}
    if res.shared_memory is not None:
        shm["sizeLimit"] = str(res.shared_memory)
    return {"name": "dshm", "emptyDir": shm}, {"name": "dshm", "mountPath": "/dev/shm"}


def container(
    name: str,
    image: str,
    pull_policy: str,
    command: list[str],
    *,
    env: list[dict[str, Any]],
    ports: list[dict[str, Any]],
    mounts: list[dict[str, Any]],
    resources: Mapping[str, Any],
    probes: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A workload container; its logs stand in for a termination message it did not write."""
    out: dict[str, Any] = {
        "name": name,
        "image": image,
        "imagePullPolicy": pull_policy,
        "command": command,
        "env": env,
        "ports": ports,
        "volumeMounts": mounts,
        "terminationMessagePolicy": "FallbackToLogsOnError",
        **copy.deepcopy(dict(probes or {})),
    }
    if resources:
        out["resources"] = resources
    return out


def pod_spec(
    spec: Any,
    main: dict[str, Any],
    volumes: list[dict[str, Any]],
    init_containers: list[dict[str, Any]] | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """A pod spec running ``main``, with no service account token and no service links,
    placed by :func:`scheduling`, under Pod Security ``restricted`` (:mod:`.security`, with
    ``spec.podSecurityContext``'s IDs); ``fields`` are further pod-spec fields."""
    out: dict[str, Any] = {
        **fields,
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "containers": [main],
        "volumes": volumes,
        **scheduling(spec),
    }
    if init_containers:
        out["initContainers"] = init_containers
    return harden(out, getattr(spec, "pod_security_context", None))


# -- storage -------------------------------------------------------------------------------


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
