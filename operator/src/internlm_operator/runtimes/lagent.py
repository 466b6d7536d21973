"""Lagent agent server (stage ``agent``). Used by the Agent builder.

``ctx.extra`` carries the resolved LLM: ``llmUrl`` (base URL ending in ``/v1``) and
``llmModel``. The API key, if any, reaches the pod as ``OPENAI_API_KEY`` from a Secret.
"""

from __future__ import annotations

from typing import Any

from .agent_tools import resolve_all, split_name
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
        tools = render_tools(s.tools or [], custom_image=bool(getattr(s, "image", None)))
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


def render_tools(tools: list[Any], custom_image: bool) -> list[dict[str, Any]]:
    """spec.tools as the workload reads them, each with the library its name resolved to.

    The operator knows the tools of its own agent image and rejects the rest here; with
    spec.image the image's tools are unknown, so a name without a library prefix is resolved
    (or rejected, naming the available tools) when the agent starts.
    """
    if not custom_image:
        resolved = resolve_all([(t.name, t.params) for t in tools])
        return [
            {"name": t.name, "params": dict(t.params or {}), "library": r.library}
            for t, r in zip(tools, resolved, strict=True)
        ]
    return [
        {"name": t.name, "params": dict(t.params or {}), "library": split_name(t.name)[0]}
        for t in tools
    ]


RUNTIME = Lagent()
