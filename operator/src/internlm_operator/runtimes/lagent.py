"""Lagent agent server (stage ``agent``). Used by the Agent builder.

``ctx.extra`` carries the resolved LLM: ``llmUrl`` (base URL ending in ``/v1``) and
``llmModel``. The API key, if any, reaches the pod as ``OPENAI_API_KEY`` from a Secret.
"""

from __future__ import annotations

from typing import Any

from .base import InvalidSpec, RenderContext, Rendered, rendered

DEFAULT_PORT = 8000


class Lagent:
    name = "lagent"
    stage = "agent"

    def render(self, ctx: RenderContext) -> Rendered:
        s = ctx.spec
        port = int(getattr(s, "port", None) or DEFAULT_PORT)
        url, model = ctx.extra.get("llmUrl"), ctx.extra.get("llmModel")
        if not url or not model:
            raise InvalidSpec("the agent's LLM endpoint and model are not resolved")
        tools: list[dict[str, Any]] = [
            {"name": t.name, "params": dict(t.params or {})} for t in s.tools or []
        ]
        llm = s.llm
        spec = {
            "llm": {
                "url": url,
                "model": model,
                "temperature": float(llm.temperature),
                "maxNewTokens": int(llm.max_new_tokens),
            },
            "agentType": s.agent_type,
            "tools": tools,
            "systemPrompt": s.system_prompt,
            "port": port,
            "maxTurns": int(s.max_turns),
        }
        return rendered(
            ctx,
            self.stage,
            spec,
            env={"OPENAI_BASE_URL": url, "INTERNLM_LLM_MODEL": model},
            ports=[{"name": "http", "containerPort": port, "protocol": "TCP"}],
        )


RUNTIME = Lagent()
