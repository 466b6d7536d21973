"""Lagent agent server (stage ``agent``). Used by the Agent reconciler."""

from __future__ import annotations

from typing import Any

from .base import RenderContext, Rendered, config_json, entrypoint


class Lagent:
    name = "lagent"
    stage = "agent"

    def render(self, ctx: RenderContext) -> Rendered:
        s = ctx.spec
        port = int(ctx.extra.get("port", 8080))
        tools: list[dict[str, Any]] = [
            {"name": t.name, "params": dict(getattr(t, "params", None) or {})}
            for t in getattr(s, "tools", None) or []
        ]
        spec = {
            "llm": {"url": ctx.extra["llmUrl"], "model": ctx.extra["llmModel"]},
            "agentType": getattr(s, "agent_type", None),
            "tools": tools,
            "systemPrompt": getattr(s, "system_prompt", None),
            "port": port,
            "maxTurns": getattr(s, "max_turns", None),
        }
        return Rendered(
            stage=self.stage,
            files={"config.json": config_json(ctx, self.stage, spec)},
            command=entrypoint(self.stage),
            ports=[{"name": "http", "containerPort": port, "protocol": "TCP"}],
        )


RUNTIME = Lagent()
