"""Hugging Face ``transformers serve`` (stage ``serve``, ModelServe ``engine: transformers``).

LMDeploy's inference is CUDA-only; ``transformers serve`` is transformers' own OpenAI-compatible
server (FastAPI + uvicorn: ``/v1/chat/completions`` with streaming, ``/v1/models``, ``/health``)
and runs on CPU, so this is the engine of CPU-only nodes. Evidence and the choice against vLLM's
CPU build: docs/serving.md.

The operator writes the served model name, the model path and the flag list into
``config.json``; the workload runs ``transformers serve <servedModelName> <spec.args...>`` with the
served name resolving to the model directory (a link in its working directory): a server pinned
to one model lists it under, and only answers for, the name it was started with, and that name
must be the one the LMDeploy path serves (``--model-name``), so an Agent works with either engine.
"""

from __future__ import annotations

from typing import Any

from .base import RenderContext, Rendered, rendered
from .lmdeploy import DEFAULT_PORT, served_model_name

ENGINE = "transformers"


def server_args(spec: Any, *, port: int, gpus: int) -> list[str]:
    """The ``transformers serve`` flags (the model name excluded).

    - ``--device cpu`` without GPUs, so nothing probes for CUDA; with GPUs ``auto`` uses them
      when the node really has them and falls back to CPU where it only advertises them.
    - ``--trust-remote-code``: InternLM2 checkpoints ship their modelling code (as LMDeploy,
      which loads them with remote code, the model directory is the user's own choice).
    - ``--log-level info``: the server logs each request, as LMDeploy's does.
    """
    return [
        "--host",
        "0.0.0.0",
        "--port",
        str(port),
        "--device",
        "auto" if gpus > 0 else "cpu",
        "--dtype",
        "auto",
        "--trust-remote-code",
        "--log-level",
        "info",
    ]


class TransformersServe:
    name = "transformers"
    stage = "serve"

    def render(self, ctx: RenderContext) -> Rendered:
        """``ctx.paths``: ``model`` (path in the pod). Adapters are refused by the API."""
        s = ctx.spec
        port = int(getattr(s, "port", None) or DEFAULT_PORT)
        spec = {
            "engine": ENGINE,
            "modelPath": ctx.paths["model"],
            "servedModelName": served_model_name(ctx.name, s),
            "args": server_args(s, port=port, gpus=ctx.gpus_per_node),
            "port": port,
        }
        return rendered(
            ctx,
            self.stage,
            spec,
            ports=[{"name": "http", "containerPort": port, "protocol": "TCP"}],
        )


RUNTIME = TransformersServe()
