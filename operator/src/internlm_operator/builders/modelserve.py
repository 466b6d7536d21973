"""Pure builder for ModelServe: (resource, resolved model location) -> ConfigMap, Deployment,
Service, and optionally a HorizontalPodAutoscaler and a PodDisruptionBudget.

Scaling: ``spec.replicas`` is the one source of truth for the Deployment's replica count. The
HPA (when ``spec.autoscaling`` is set) targets the ModelServe's own scale subresource, so the
HPA, ``kubectl scale modelserve`` and the operator never fight over the Deployment.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..api.v1alpha1 import ModelServeSpec
from ..api.v1alpha1.common import API_VERSION
from ..runtimes import Rendered
from ..runtimes.base import InvalidSpec
from ..runtimes.lmdeploy import API_KEYS_ENV, served_model_name
from .common import (
    Owner,
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
    storage_for,
    with_queue,
    without_user_env,
)
from .hubcache import CacheEntry
from .longrunning import (
    CONTAINER,
    base_env,
    deployment,
    endpoint,
    names,
    selector,
    service,
    spec_hash_of,
)

# Probes sized for big models: weights can take many minutes to load, a busy server must not
# be killed, and only a server that lists its model takes traffic.
STARTUP_PERIOD_SECONDS = 10
STARTUP_FAILURE_THRESHOLD = 180  # 30 minutes of weight loading
READINESS_PATH = "/v1/models"
HEALTH_PATH = "/health"
TERMINATION_GRACE_SECONDS = 120
PROGRESS_DEADLINE_SECONDS = 3600
MODEL_ANNOTATION = "internlm.io/model-source"
"""On the Deployment: the model location its pods serve (to tell a model change from others)."""


@dataclass(frozen=True)
class ServeInputs:
    owner: Owner
    spec: ModelServeSpec
    image: str
    pull_policy: str = "IfNotPresent"
    model_location: str | None = None  # resolved location when spec.model is fromResource
    adapter_locations: Mapping[str, str] = field(default_factory=dict)  # fromResource adapters
    # the operator's --default-storage-class: hub downloads go to an ephemeral PVC of it
    storage_class: str | None = None
    # the operator's --hub-cache-storage-class is set: hub repos come from the shared cache
    hub_cache: bool = False
    # the operator's --default-resources: cpu/memory where spec.resources sets none
    default_resources: Mapping[str, Mapping[str, str]] = field(default_factory=dict)


@dataclass(frozen=True)
class ServeChildren:
    config_map: dict[str, Any]
    deployment: dict[str, Any]
    service: dict[str, Any]
    hpa: dict[str, Any] | None
    pdb: dict[str, Any] | None
    endpoint: str
    served_model_name: str
    model_location: str
    spec_hash: str
    rendered: Rendered
    cache: tuple[CacheEntry, ...] = ()  # the hub-cache entries the pods mount

    @property
    def name(self) -> str:
        return str(self.deployment["metadata"]["name"])

    def present(self) -> list[dict[str, Any]]:
        """The children to apply, in order (config first, so pods find it)."""
        return [
            m
            for m in (self.config_map, self.service, self.deployment, self.hpa, self.pdb)
            if m is not None
        ]

    def absent(self) -> list[tuple[str, str, str]]:
        """(apiVersion, kind, name) of optional children that must not exist."""
        out = []
        if self.hpa is None:
            out.append(("autoscaling/v2", "HorizontalPodAutoscaler", self.name))
        if self.pdb is None:
            out.append(("policy/v1", "PodDisruptionBudget", self.name))
        return out


def _location(src: Any, resolved: str | None, what: str) -> str:
    loc = source_location(src, resolved)
    if not loc.startswith(("pvc://", "hf://", "ms://", "s3://")):
        raise InvalidSpec(
            f"{what} {loc!r} cannot be served: the server reads a local directory, so use a "
            "pvc, huggingFace, modelScope or s3:// source (or a producer writing to one)"
        )
    return loc


def effective_min_replicas(spec: ModelServeSpec) -> int:
    """The fewest servers there will be (for the PodDisruptionBudget decision)."""
    if spec.autoscaling is not None:
        return max(int(spec.replicas), int(spec.autoscaling.min_replicas))
    return int(spec.replicas)


def build(inp: ServeInputs) -> ServeChildren:
    spec = inp.spec
    o = with_queue(inp.owner, spec)
    name, cm_name = names(o)
    image = spec.image or inp.image
    pull = spec.image_pull_policy or inp.pull_policy
    served = served_model_name(o.name, spec)

    storage = storage_for(o, image, pull, hub_env(spec), inp.storage_class, inp.hub_cache)
    model_loc = _location(spec.model, inp.model_location, "the model")
    paths = {"model": storage.mount("model", model_loc, hub_includes(spec.model))}
    for a in spec.adapters or []:
        loc = _location(a.source, inp.adapter_locations.get(a.name), f"adapter {a.name}")
        key = f"adapter:{a.name}"
        paths[key] = storage.mount(key, loc, hub_includes(a.source))

    rendered = render(
        o,
        spec,
        paths=paths,
        output_dir="",
        nodes=1,
        gpus_per_node=int(spec.resources.gpus_per_node),
    )

    env = base_env(o, rendered)
    if spec.api_key_secret is not None:
        env.append(secret_env(API_KEYS_ENV, spec.api_key_secret))
    env += without_user_env(storage.hub_env, spec)
    env += [e.to_dict() for e in spec.env or []]

    cfg_vol, cfg_mount = config_volume(cm_name)
    shm_vol, shm_mount = shm_volume(spec.resources)
    volumes = [cfg_vol, shm_vol, *storage.volumes.values()]
    mounts = [cfg_mount, shm_mount, *storage.mounts.values()]

    # With API keys every OpenAI route needs a key, so readiness uses the unauthenticated
    # /health. Both engines only answer HTTP once the weights are loaded (transformers serve
    # preloads the model it is pinned to before uvicorn starts), so one probe contract fits.
    ready_path = HEALTH_PATH if spec.api_key_secret is not None else READINESS_PATH
    probes = {
        "startupProbe": {
            "httpGet": {"path": ready_path, "port": "http"},
            "periodSeconds": STARTUP_PERIOD_SECONDS,
            "timeoutSeconds": 5,
            "failureThreshold": STARTUP_FAILURE_THRESHOLD,
        },
        "readinessProbe": {
            "httpGet": {"path": ready_path, "port": "http"},
            "periodSeconds": 10,
            "timeoutSeconds": 5,
            "failureThreshold": 3,
        },
        # A TCP accept is answered by the kernel even while the server is saturated, so a busy
        # server is never killed; a wedged or dead process is, after two minutes.
        "livenessProbe": {
            "tcpSocket": {"port": "http"},
            "periodSeconds": 20,
            "timeoutSeconds": 10,
            "failureThreshold": 6,
        },
    }
    main = container(
        CONTAINER,
        image,
        pull,
        rendered.command,
        env=env,
        ports=list(rendered.ports),
        mounts=mounts,
        resources=container_resources(spec.resources, inp.default_resources),
        probes=probes,
    )
    pod = pod_spec(
        spec,
        main,
        volumes,
        storage.init_containers,
        terminationGracePeriodSeconds=TERMINATION_GRACE_SECONDS,
    )

    cm = config_map(o, cm_name, rendered)
    deploy = deployment(
        o,
        name,
        replicas=int(spec.replicas),
        pod_spec=pod,
        config_data=cm["data"],
        progress_deadline_seconds=PROGRESS_DEADLINE_SECONDS,
    )
    deploy["metadata"]["annotations"][MODEL_ANNOTATION] = model_loc
    svc = service(o, name, int(spec.port))

    hpa = None
    if spec.autoscaling is not None:
        scale = spec.autoscaling
        hpa = {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": o.metadata(name, "autoscaler"),
            "spec": {
                "scaleTargetRef": {"apiVersion": API_VERSION, "kind": o.kind, "name": o.name},
                "minReplicas": int(scale.min_replicas),
                "maxReplicas": int(scale.max_replicas),
                "metrics": [
                    {
                        "type": "Resource",
                        "resource": {
                            "name": "cpu",
                            "target": {
                                "type": "Utilization",
                                "averageUtilization": int(scale.target_cpu_utilization_percentage),
                            },
                        },
                    }
                ],
            },
        }

    pdb = None
    if effective_min_replicas(spec) > 1:
        max_unavailable = (
            spec.disruption_budget.max_unavailable if spec.disruption_budget is not None else 1
        )
        pdb = {
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": o.metadata(name, "disruption-budget"),
            "spec": {
                "maxUnavailable": int(max_unavailable),
                "selector": {"matchLabels": selector(o)},
            },
        }

    return ServeChildren(
        config_map=cm,
        deployment=deploy,
        service=svc,
        hpa=hpa,
        pdb=pdb,
        endpoint=endpoint(name, o.namespace, int(spec.port)),
        served_model_name=served,
        model_location=model_loc,
        spec_hash=spec_hash_of(deploy),
        rendered=rendered,
        cache=tuple(storage.cache_entries),
    )
