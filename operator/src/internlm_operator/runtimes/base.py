"""What a framework plugin is: spec + resolved paths -> container command, env and files."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

CONFIG_DIR = "/etc/internlm"
CONFIG_FILE = f"{CONFIG_DIR}/config.json"
WORKLOADS_API_VERSION = "workloads.internlm.io/v1"


class InvalidSpec(ValueError):
    """The spec passed the CRD schema but cannot be run (a permanent error)."""


@dataclass(frozen=True)
class RenderContext:
    kind: str
    namespace: str
    name: str
    uid: str
    spec: Any  # the kind's pydantic spec model
    paths: Mapping[str, str]  # resolved inputs as paths (or URLs) inside the pod
    output_dir: str
    nodes: int = 1
    gpus_per_node: int = 0
    extra: Mapping[str, Any] = field(default_factory=dict)  # e.g. a resolved endpoint


@dataclass(frozen=True)
class Rendered:
    stage: str
    files: dict[str, str]  # file name -> content, mounted under CONFIG_DIR
    command: list[str]
    env: dict[str, str] = field(default_factory=dict)
    ports: list[dict[str, Any]] = field(default_factory=list)
    # the pods' terminationGracePeriodSeconds when the stage needs longer than Kubernetes' 30 s
    # to stop cleanly (a checkpoint written on SIGTERM)
    stop_grace_seconds: int | None = None


class Runtime(Protocol):
    name: str
    stage: str

    def render(self, ctx: RenderContext) -> Rendered: ...


def entrypoint(stage: str) -> list[str]:
    return ["python", "-m", "internlm_workloads", stage]


def rendered(
    ctx: RenderContext,
    stage: str,
    spec: Mapping[str, Any],
    files: Mapping[str, str] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    ports: list[dict[str, Any]] | None = None,
) -> Rendered:
    """What every workload gets: the stage's entrypoint and ``config.json`` with ``spec``,
    next to the framework's own config ``files``."""
    return Rendered(
        stage=stage,
        files={"config.json": config_json(ctx, stage, spec), **(files or {})},
        command=entrypoint(stage),
        env=dict(env or {}),
        ports=list(ports or []),
    )


def config_json(ctx: RenderContext, stage: str, spec: Mapping[str, Any]) -> str:
    """``config.json`` as docs/workload-contract.md defines it (None values dropped)."""
    doc = {
        "apiVersion": WORKLOADS_API_VERSION,
        "stage": stage,
        "resource": {
            "kind": ctx.kind,
            "namespace": ctx.namespace,
            "name": ctx.name,
            "uid": ctx.uid,
        },
        "outputDir": ctx.output_dir,
        "spec": drop_none(dict(spec)),
    }
    return json.dumps(doc, indent=2, sort_keys=True) + "\n"


def drop_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: drop_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [drop_none(v) for v in value]
    return value


def py_literal(value: Any) -> str:
    """A Python literal for a JSON-able value (for the Python-syntax tool configs): JSON
    spelling (double-quoted strings, sorted keys, ", " and ": "), which Python reads, except
    that true, false and null become True, False and None -- as tokens only, never inside a
    string (a path such as /data/true-north stays as it is)."""
    if value is None:
        return "None"
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, dict):
        items = sorted((str(k), v) for k, v in value.items())
        return "{" + ", ".join(f"{json.dumps(k)}: {py_literal(v)}" for k, v in items) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(py_literal(v) for v in value) + "]"
    return json.dumps(value)  # str, int, float
