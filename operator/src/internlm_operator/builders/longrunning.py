"""Pure helpers shared by the long-running kinds (ModelServe, Agent): a zero-downtime
Deployment, its ClusterIP Service, the in-cluster endpoint URL."""

from __future__ import annotations

from typing import Any

from ..api.labels import SPEC_HASH_ANNOTATION
from ..runtimes import CONFIG_FILE, Rendered
from .common import Owner, check_name, stable_hash

CONTAINER = "server"
COMPONENT = "server"
CONFIG_HASH_ANNOTATION = "internlm.io/config-hash"
CLUSTER_DOMAIN = "cluster.local"


def names(o: Owner) -> tuple[str, str]:
    """(Deployment/Service name, ConfigMap name)."""
    base = check_name(o.base_name, 63, "Service")
    return base, f"{base}-config"


def selector(o: Owner, component: str = COMPONENT) -> dict[str, str]:
    """The (immutable) pod selector of a Deployment and its Service."""
    return {
        "app.kubernetes.io/name": o.kind.lower(),
        "app.kubernetes.io/instance": o.name,
        "app.kubernetes.io/component": component,
    }


def selector_string(o: Owner, component: str = COMPONENT) -> str:
    """The selector as ``status.selector`` (the scale subresource's labelSelectorPath)."""
    return ",".join(f"{k}={v}" for k, v in sorted(selector(o, component).items()))


def endpoint(service: str, namespace: str, port: int, path: str = "/v1") -> str:
    return f"http://{service}.{namespace}.svc.{CLUSTER_DOMAIN}:{port}{path}"


def base_env(o: Owner, rendered: Rendered) -> list[dict[str, Any]]:
    """The env every server gets: where its config is, its stage and resource, then the
    runtime's own variables."""
    return [
        {"name": "INTERNLM_CONFIG", "value": CONFIG_FILE},
        {"name": "INTERNLM_STAGE", "value": rendered.stage},
        {"name": "INTERNLM_RESOURCE", "value": f"{o.kind}/{o.namespace}/{o.name}"},
        *({"name": k, "value": v} for k, v in sorted(rendered.env.items())),
    ]


def deployment(
    o: Owner,
    name: str,
    *,
    replicas: int,
    pod_spec: dict[str, Any],
    config_data: dict[str, str],
    progress_deadline_seconds: int = 600,
) -> dict[str, Any]:
    """A Deployment that rolls out with surge and never below the ready count
    (``maxUnavailable: 0``, ``maxSurge: 1``). A change of the rendered config (the
    ConfigMap's ``config_data``) changes the pod template (``internlm.io/config-hash``), so it
    rolls out too; ``internlm.io/spec-hash`` covers the pod spec and the config."""
    config_hash = stable_hash(config_data)
    spec_hash = stable_hash(pod_spec, config_data)
    md = o.metadata(name, COMPONENT, {SPEC_HASH_ANNOTATION: spec_hash})
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": md,
        "spec": {
            "replicas": int(replicas),
            "revisionHistoryLimit": 5,
            "progressDeadlineSeconds": int(progress_deadline_seconds),
            "selector": {"matchLabels": selector(o)},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
            },
            "template": {
                "metadata": {
                    "labels": o.labels_for(COMPONENT),
                    "annotations": {CONFIG_HASH_ANNOTATION: config_hash},
                },
                "spec": pod_spec,
            },
        },
    }


def spec_hash_of(deploy: dict[str, Any]) -> str:
    return str(deploy["metadata"]["annotations"][SPEC_HASH_ANNOTATION])


def service(o: Owner, name: str, port: int) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": o.metadata(name, COMPONENT),
        "spec": {
            "type": "ClusterIP",
            "selector": selector(o),
            "ports": [
                {
                    "name": "http",
                    "port": int(port),
                    "targetPort": "http",
                    "protocol": "TCP",
                    "appProtocol": "http",
                }
            ],
        },
    }
