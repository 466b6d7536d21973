"""Pure builder for Agent: (resource, resolved LLM endpoint) -> ConfigMap, Deployment, Service."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..api.v1alpha1 import AgentSpec
from ..runtimes import Rendered
from .common import (
    Owner,
    config_map,
    config_volume,
    container,
    container_resources,
    pod_spec,
    render,
    secret_env,
    with_queue,
)
from .longrunning import CONTAINER, base_env, deployment, endpoint, names, service, spec_hash_of

API_KEY_ENV = "OPENAI_API_KEY"
PROBES: dict[str, Any] = {
    "startupProbe": {
        "httpGet": {"path": "/healthz", "port": "http"},
        "periodSeconds": 5,
        "failureThreshold": 60,
    },
    "readinessProbe": {
        "httpGet": {"path": "/readyz", "port": "http"},
        "periodSeconds": 10,
        "timeoutSeconds": 5,
        "failureThreshold": 3,
    },
    "livenessProbe": {
        "httpGet": {"path": "/healthz", "port": "http"},
        "periodSeconds": 20,
        "timeoutSeconds": 10,
        "failureThreshold": 6,
    },
}
"""Probes of the Lagent server (up to five minutes to start)."""


@dataclass(frozen=True)
class ResolvedLLM:
    """Where the agent's model is: base URL (ending in /v1), model name, and the Secret key
    holding the API key (the Agent's own, else its ModelServe's)."""

    url: str
    model: str
    api_key_secret: Any = None  # SecretKeyRef | None


@dataclass(frozen=True)
class AgentInputs:
    owner: Owner
    spec: AgentSpec
    image: str
    llm: ResolvedLLM
    pull_policy: str = "IfNotPresent"
    # the operator's --default-resources: cpu/memory where spec.resources sets none
    default_resources: Mapping[str, Mapping[str, str]] = field(default_factory=dict)


@dataclass(frozen=True)
class AgentChildren:
    config_map: dict[str, Any]
    deployment: dict[str, Any]
    service: dict[str, Any]
    endpoint: str
    spec_hash: str
    rendered: Rendered

    def present(self) -> list[dict[str, Any]]:
        return [self.config_map, self.service, self.deployment]

    def absent(self) -> list[tuple[str, str, str]]:
        """An Agent has no optional children."""
        return []


def build(inp: AgentInputs) -> AgentChildren:
    spec = inp.spec
    o = with_queue(inp.owner, spec)
    name, cm_name = names(o)
    image = spec.image or inp.image
    pull = spec.image_pull_policy or inp.pull_policy

    rendered = render(
        o,
        spec,
        paths={},
        output_dir="",
        extra={"llmUrl": inp.llm.url, "llmModel": inp.llm.model},
    )
    env = base_env(o, rendered)
    if inp.llm.api_key_secret is not None:
        env.append(secret_env(API_KEY_ENV, inp.llm.api_key_secret))
    env += [e.to_dict() for e in spec.env or []]

    cfg_vol, cfg_mount = config_volume(cm_name)
    main = container(
        CONTAINER,
        image,
        pull,
        rendered.command,
        env=env,
        ports=list(rendered.ports),
        mounts=[cfg_mount, {"name": "tmp", "mountPath": "/tmp"}],
        resources=container_resources(spec.resources, inp.default_resources),
        probes=PROBES,
    )
    pod = pod_spec(spec, main, [cfg_vol, {"name": "tmp", "emptyDir": {}}])
    cm = config_map(o, cm_name, rendered)
    deploy = deployment(
        o,
        name,
        replicas=int(spec.replicas),
        pod_spec=pod,
        config_data=cm["data"],
    )
    port = int(spec.port)
    return AgentChildren(
        config_map=cm,
        deployment=deploy,
        service=service(o, name, port),
        endpoint=endpoint(name, o.namespace, port),
        spec_hash=spec_hash_of(deploy),
        rendered=rendered,
    )
