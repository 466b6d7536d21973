"""Framework plugins: one module per framework, one line per framework in :data:`REGISTRY`.

A plugin turns a spec plus resolved input paths into the container command, env and the files
of the config ConfigMap (see :mod:`.base`). Adding a framework = one module + one line here.
"""

from __future__ import annotations

from typing import Any

from . import deepspeed, internevo, lagent, lmdeploy, opencompass, transformers_serve, xtuner
from .base import CONFIG_DIR, CONFIG_FILE, InvalidSpec, RenderContext, Rendered, Runtime

REGISTRY: dict[str, Runtime] = {
    "deepspeed": deepspeed.RUNTIME,
    "internevo": internevo.RUNTIME,
    "xtuner": xtuner.RUNTIME,
    "opencompass": opencompass.RUNTIME,
    "lmdeploy": lmdeploy.RUNTIME,
    "transformers": transformers_serve.RUNTIME,
    "lagent": lagent.RUNTIME,
}


def for_resource(kind: str, spec: Any) -> Runtime:
    """The plugin that runs a resource of ``kind`` with this spec."""
    name = {
        "TrainJob": getattr(spec, "framework", "deepspeed"),
        "FineTune": "xtuner",
        "EvalRun": "opencompass",
        # engine turbomind/pytorch are LMDeploy's backends; transformers is its own server
        "ModelServe": (
            transformers_serve.ENGINE
            if getattr(spec, "engine", None) == transformers_serve.ENGINE
            else "lmdeploy"
        ),
        "Agent": "lagent",
    }[kind]
    return REGISTRY[name]


__all__ = [
    "CONFIG_DIR",
    "CONFIG_FILE",
    "REGISTRY",
    "InvalidSpec",
    "RenderContext",
    "Rendered",
    "Runtime",
    "for_resource",
]
