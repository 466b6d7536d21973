"""Pure builders for the batch kinds: (resource, resolved inputs) -> ConfigMap, headless
Service and Indexed Job manifests (plain dicts, ready for server-side apply)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..api.labels import ATTEMPT_LABEL
from ..api.labels import SPEC_HASH_ANNOTATION as HASH_ANNOTATION
from ..api.v1alpha1 import EvalRunSpec, FineTuneSpec, TrainJobSpec
from ..runtimes import CONFIG_FILE, Rendered
from .common import (
    Owner,
    check_name,
    config_map,
    config_volume,
    container,
    container_resources,
    hub_env,
    hub_includes,
    pod_spec,
    render,
    secret_env,
    shm_volume,
    source_location,
    stable_hash,
    storage_for,
    with_queue,
    without_user_env,
)
from .hubcache import CacheEntry

CONTAINER = "workload"
MASTER_PORT = 29500
PROGRESS_PORT = 9400
PROGRESS_FILE = "/var/run/internlm/progress.json"
COMPLETION_INDEX_FIELD = "metadata.annotations['batch.kubernetes.io/job-completion-index']"
NCCL_ENV = {
    "NCCL_DEBUG": "WARN",
    "TORCH_NCCL_ASYNC_ERROR_HANDLING": "1",
    "NCCL_ASYNC_ERROR_HANDLING": "1",
    "OMP_NUM_THREADS": "1",
}

BatchSpec = TrainJobSpec | FineTuneSpec | EvalRunSpec


@dataclass(frozen=True)
class BatchInputs:
    owner: Owner
    spec: BatchSpec
    image: str  # the operator's image for this stage (spec.image overrides)
    pull_policy: str = "IfNotPresent"
    upstream: Mapping[str, str] = field(default_factory=dict)  # input key -> location
    extra: Mapping[str, Any] = field(default_factory=dict)  # e.g. a resolved endpoint
    attempt: int = 0  # restarts so far; stamped on the Job
    active_deadline_seconds: int | None = None  # remaining for this attempt
    # the operator's --default-storage-class: hub downloads go to an ephemeral PVC of it
    storage_class: str | None = None
    # the operator's --hub-cache-storage-class is set: hub repos come from the shared cache
    hub_cache: bool = False
    # the operator's --default-resources: cpu/memory where spec.resources sets none
    default_resources: Mapping[str, Mapping[str, str]] = field(default_factory=dict)


@dataclass(frozen=True)
class BatchChildren:
    config_map: dict[str, Any]
    service: dict[str, Any] | None
    job: dict[str, Any]
    spec_hash: str
    output_dir: str
    rendered: Rendered
    cache: tuple[CacheEntry, ...] = ()  # the hub-cache entries the pods mount

    @property
    def job_name(self) -> str:
        return str(self.job["metadata"]["name"])

    def all(self) -> list[dict[str, Any]]:
        return [m for m in (self.config_map, self.service, self.job) if m is not None]


def shape(kind: str, spec: BatchSpec) -> tuple[int, int]:
    """(nodes, GPUs per node)."""
    nodes = int(getattr(spec, "nodes", 1) or 1)
    return nodes, int(spec.resources.gpus_per_node)


def _sources(kind: str, spec: BatchSpec) -> dict[str, Any]:
    """Input key -> source model (ModelSource, DatasetSource, StorageLocation), per kind (the
    spec's type is its kind's: ``parse`` made it so)."""
    srcs: dict[str, Any] = {}
    if isinstance(spec, TrainJobSpec):
        if spec.model.source is not None:
            srcs["model"] = spec.model.source
        if spec.model.tokenizer is not None:
            srcs["tokenizer"] = spec.model.tokenizer
        srcs["data"] = spec.data
    elif isinstance(spec, FineTuneSpec):
        srcs["model"] = spec.model
        srcs["dataset"] = spec.dataset
    else:
        if spec.target.model is not None:
            srcs["model"] = spec.target.model
        if spec.target.tokenizer is not None:
            srcs["tokenizer"] = spec.target.tokenizer
        for c in spec.custom_datasets or []:
            srcs[f"custom:{c.name}"] = c
        if spec.data is not None:
            srcs["evalData"] = spec.data
    return srcs


def _inputs(kind: str, spec: BatchSpec, upstream: Mapping[str, str]) -> dict[str, str]:
    """Input key -> location string, per kind."""
    return {k: source_location(s, upstream.get(k)) for k, s in _sources(kind, spec).items()}


def build(inp: BatchInputs) -> BatchChildren:
    spec = inp.spec
    o = with_queue(inp.owner, spec)
    nodes, gpus = shape(o.kind, spec)
    job_name = check_name(o.base_name, 63 - 1 - len(str(max(nodes - 1, 0))), "Job")
    svc_name = job_name
    cm_name = f"{job_name}-config"
    image = spec.image or inp.image
    pull = spec.image_pull_policy or inp.pull_policy

    storage = storage_for(o, image, pull, hub_env(spec), inp.storage_class, inp.hub_cache)
    srcs = _sources(o.kind, spec)
    paths = {
        k: storage.mount(k, loc, hub_includes(srcs[k]))
        for k, loc in _inputs(o.kind, spec, inp.upstream).items()
    }
    output_dir = storage.output(getattr(spec, "output", None))

    rendered = render(
        o,
        spec,
        paths=paths,
        output_dir=output_dir,
        nodes=nodes,
        gpus_per_node=gpus,
        extra=inp.extra,
    )

    multi = nodes > 1 or o.kind == "TrainJob"
    env: list[dict[str, Any]] = [
        {"name": "INTERNLM_CONFIG", "value": CONFIG_FILE},
        {"name": "INTERNLM_STAGE", "value": rendered.stage},
        {"name": "INTERNLM_OUTPUT_DIR", "value": output_dir},
        {"name": "INTERNLM_PROGRESS_FILE", "value": PROGRESS_FILE},
        {"name": "INTERNLM_PROGRESS_PORT", "value": str(PROGRESS_PORT)},
        {"name": "INTERNLM_RESOURCE", "value": f"{o.kind}/{o.namespace}/{o.name}"},
        {"name": "NNODES", "value": str(nodes)},
        {"name": "NPROC_PER_NODE", "value": str(max(gpus, 1))},
        {"name": "NODE_RANK", "valueFrom": {"fieldRef": {"fieldPath": COMPLETION_INDEX_FIELD}}},
        {"name": "MASTER_ADDR", "value": f"{job_name}-0.{svc_name}" if multi else "127.0.0.1"},
        {"name": "MASTER_PORT", "value": str(MASTER_PORT)},
    ]
    if storage.output_uri:
        env.append({"name": "INTERNLM_OUTPUT_URI", "value": storage.output_uri})
    if gpus:
        env += [{"name": k, "value": v} for k, v in NCCL_ENV.items()]
    env += [{"name": k, "value": v} for k, v in sorted(rendered.env.items())]
    env += without_user_env(storage.hub_env, spec)
    env += storage.fetched_env()
    api_key = inp.extra.get("apiKeySecret")
    if api_key is not None:
        env.append(secret_env("OPENAI_API_KEY", api_key))
    for e in spec.env or []:
        env.append(e.to_dict())

    cfg_vol, cfg_mount = config_volume(cm_name)
    shm_vol, shm_mount = shm_volume(spec.resources)
    volumes = [
        cfg_vol,
        shm_vol,
        {"name": "progress", "emptyDir": {}},
        *storage.volumes.values(),
    ]
    mounts = [
        cfg_mount,
        shm_mount,
        {"name": "progress", "mountPath": PROGRESS_FILE.rsplit("/", 1)[0]},
        *storage.mounts.values(),
    ]
    ports = [{"name": "progress", "containerPort": PROGRESS_PORT, "protocol": "TCP"}]
    if multi:
        ports.append({"name": "rendezvous", "containerPort": MASTER_PORT, "protocol": "TCP"})
    main = container(
        CONTAINER,
        image,
        pull,
        rendered.command,
        env=env,
        ports=ports + list(rendered.ports),
        mounts=mounts,
        resources=container_resources(spec.resources, inp.default_resources),
    )
    grace = (
        {"terminationGracePeriodSeconds": rendered.stop_grace_seconds}
        if rendered.stop_grace_seconds is not None
        else {}
    )
    pod = pod_spec(spec, main, volumes, storage.init_containers, restartPolicy="Never", **grace)
    if multi:
        pod["subdomain"] = svc_name

    cm = config_map(o, cm_name, rendered)
    service = None
    if multi:
        service = {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": o.metadata(svc_name, "rendezvous"),
            "spec": {
                "clusterIP": "None",
                "publishNotReadyAddresses": True,
                "selector": {
                    "app.kubernetes.io/instance": o.name,
                    "app.kubernetes.io/name": o.kind.lower(),
                    "app.kubernetes.io/component": "worker",
                },
                "ports": [
                    {
                        "name": "rendezvous",
                        "port": MASTER_PORT,
                        "targetPort": MASTER_PORT,
                        "protocol": "TCP",
                    }
                ],
            },
        }
    job_spec: dict[str, Any] = {
        "completionMode": "Indexed",
        "completions": nodes,
        "parallelism": nodes,
        "backoffLimit": 0,  # one failed pod fails the gang; the operator restarts it whole
        "template": {
            "metadata": {"labels": o.labels_for("worker")},
            "spec": pod,
        },
    }
    spec_hash = stable_hash(job_spec, cm["data"], service and service["spec"])
    if inp.active_deadline_seconds:
        job_spec["activeDeadlineSeconds"] = max(1, int(inp.active_deadline_seconds))
    md = o.metadata(job_name, "worker", {HASH_ANNOTATION: spec_hash})
    md["labels"][ATTEMPT_LABEL] = str(inp.attempt)
    job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": md, "spec": job_spec}
    cache = tuple(storage.cache_entries)
    return BatchChildren(cm, service, job, spec_hash, output_dir, rendered, cache)


def with_suspend(job: Mapping[str, Any], suspend: bool) -> dict[str, Any]:
    out = {**job, "spec": {**job["spec"], "suspend": suspend}}
    return out
