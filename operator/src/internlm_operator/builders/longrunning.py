"""Pure helpers shared by the long-running kinds (ModelServe, Agent): a zero-downtime
Deployment, its ClusterIP Service, the in-cluster endpoint URL."""

from __future__ import annotations

from typing import Any

from ..runtimes import CONFIG_DIR, CONFIG_FILE, Rendered
from .common import Owner

CONTAINER = "server"
COMPONENT = "server"
CONFIG_HASH_ANNOTATION = "internlm.io/config-hash"
SPEC_HASH_ANNOTATION = "internlm.io/spec-hash"
CLUSTER_DOMAIN = "cluster.local"


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
    return [
        {"name": "INTERNLM_CONFIG", "value": CONFIG_FILE},
        {"name": "INTERNLM_STAGE", "value": rendered.stage},
        {"name": "INTERNLM_RESOURCE", "value": f"{o.kind}/{o.namespace}/{o.name}"},
    ]


def secret_env(name: str, ref: Any) -> dict[str, Any]:
    """An env var from a Secret key (the value never leaves the Secret)."""
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}}}


def config_map(o: Owner, name: str, rendered: Rendered) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": o.metadata(name, "config"),
        "data": dict(sorted(rendered.files.items())),
    }


def config_volume(cm_name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    return (
        {"name": "config", "configMap": {"name": cm_name}},
        {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
    )


def deployment(
    o: Owner,
    name: str,
    *,
    replicas: int,
    pod_spec: dict[str, Any],
    config_hash: str,
    spec_hash: str,
    progress_deadline_seconds: int = 600,
) -> dict[str, Any]:
    """A Deployment that rolls out with surge and never below the ready count
    (``maxUnavailable: 0``, ``maxSurge: 1``). A change of the rendered config changes the
    pod template (``internlm.io/config-hash``), so it rolls out too."""
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
