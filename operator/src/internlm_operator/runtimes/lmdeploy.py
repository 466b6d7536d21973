"""LMDeploy ``api_server`` (stage ``serve``). Used by the ModelServe reconciler."""

from __future__ import annotations

from typing import Any

from .base import RenderContext, Rendered, config_json, entrypoint


def server_args(ctx: RenderContext) -> list[str]:
    """The ``lmdeploy serve api_server`` arguments the spec implies (best-effort over the
    ModelServe spec; fields are read defensively so this plugin tracks the API as it grows)."""
    s = ctx.spec
    port = int(ctx.extra.get("port", 23333))
    args = [ctx.paths["model"], "--server-name", "0.0.0.0", "--server-port", str(port)]

    def opt(flag: str, value: Any) -> None:
        if value is not None:
            args.extend([flag, str(value)])

    opt("--backend", getattr(s, "engine", None))
    opt("--tp", getattr(s, "tensor_parallel", None) or ctx.gpus_per_node or None)
    opt("--model-name", ctx.extra.get("servedModelName"))
    opt("--session-len", getattr(s, "session_length", None))
    opt("--max-batch-size", getattr(s, "max_batch_size", None))
    opt("--cache-max-entry-count", getattr(s, "cache_ratio", None))
    return args


class LMDeploy:
    name = "lmdeploy"
    stage = "serve"

    def render(self, ctx: RenderContext) -> Rendered:
        port = int(ctx.extra.get("port", 23333))
        spec = {"modelPath": ctx.paths["model"], "args": server_args(ctx), "port": port}
        return Rendered(
            stage=self.stage,
            files={"config.json": config_json(ctx, self.stage, spec)},
            command=entrypoint(self.stage),
            ports=[{"name": "http", "containerPort": port, "protocol": "TCP"}],
        )


RUNTIME = LMDeploy()
