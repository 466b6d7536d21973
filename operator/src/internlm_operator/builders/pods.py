"""Pieces of the children's pod specs: container resources, the rendered config, placement,
containers and the hardened pod spec."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from ..runtimes import CONFIG_DIR, RenderContext, Rendered, for_resource
from .owner import Owner
from .security import harden

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
