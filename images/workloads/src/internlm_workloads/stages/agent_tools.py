"""The agent's tools: ``spec.tools`` names resolved to Lagent actions or AgentLego tools and
constructed with their params (docs/agent-api.md, "Tools").

A name is ``lagent.<Action>``, ``agentlego.<Tool>`` or bare. A bare name is a Lagent action when
Lagent has one (Lagent is the agent framework, so its own action wins a clash: ``GoogleSearch``
exists in both), else an AgentLego tool. The operator resolves names it knows and renders the
library; a name it does not know (a custom image) arrives without one and is resolved here.
AgentLego tools are wrapped with AgentLego's own Lagent adapter, so the agent sees one kind.
"""

from __future__ import annotations

from typing import Any

from ..config import ConfigError, Tool

LIBRARIES = ("lagent", "agentlego")
# Lagent's building blocks, not tools an agent is configured with.
_NOT_TOOLS = ("BaseAction", "FinishAction", "InvalidAction", "NoAction")


def lagent_actions() -> dict[str, type]:
    import lagent.actions as actions

    out = {}
    for n in actions.__all__:
        c = getattr(actions, n, None)
        if isinstance(c, type) and issubclass(c, actions.BaseAction) and n not in _NOT_TOOLS:
            out[n] = c
    return out


def agentlego_tools() -> dict[str, Any]:
    """AgentLego's registry; empty when AgentLego is not installed (a custom image)."""
    try:
        from agentlego.apis.tool import NAMES2TOOLS
    except ImportError:
        return {}
    return dict(NAMES2TOOLS)


def split_name(name: str) -> tuple[str | None, str]:
    """(library or None, class name) of a spec.tools name."""
    head, dot, tail = name.partition(".")
    if dot and head in LIBRARIES:
        return head, tail
    return None, name


def available(lagent: dict[str, Any], agentlego: dict[str, Any]) -> str:
    return (
        f"Lagent actions: {', '.join(sorted(lagent))}; "
        f"AgentLego tools: {', '.join(sorted(agentlego)) or '(AgentLego not installed)'}"
    )


def resolve(tool: Tool, lagent: dict[str, Any], agentlego: dict[str, Any]) -> tuple[str, str]:
    """(library, class name) for one spec.tools entry, or a ConfigError naming what exists."""
    prefix, cls = split_name(tool.name)
    library = tool.library or prefix
    if library is None:
        library = "lagent" if cls in lagent else "agentlego" if cls in agentlego else None
    registry = {"lagent": lagent, "agentlego": agentlego}.get(library or "", {})
    if cls not in registry:
        where = f"{library} has no tool {cls!r}" if library else f"unknown tool {tool.name!r}"
        raise ConfigError(f"spec.tools: {where} (available: {available(lagent, agentlego)})")
    assert library is not None
    return library, cls


def construct(tool: Tool, library: str, cls: str, registry: dict[str, Any]) -> Any:
    """The Lagent action for one entry; AgentLego tools through their Lagent adapter."""
    try:
        obj = registry[cls](**tool.params)
        if library == "agentlego":
            # AgentLego loads models on first call; loading now fails at start-up instead,
            # before /readyz says every tool is ready.
            obj.setup()
    except TypeError as e:
        raise ConfigError(f"spec.tools {tool.name}: bad params: {e}") from e
    except ImportError as e:
        # AgentLego's model tools need extras (torch, mmcv, diffusers...) the image lacks.
        raise ConfigError(
            f"spec.tools {tool.name}: {e} (not in this image: use a spec.image that has it)"
        ) from e
    except ValueError as e:  # e.g. a search tool without its API key
        raise ConfigError(f"spec.tools {tool.name}: {e}") from e
    if library == "lagent":
        return obj
    return obj.to_lagent()


def load_tools(tools: list[Tool]) -> list[Any]:
    lagent, agentlego = lagent_actions(), agentlego_tools()
    out, seen = [], {}
    for t in tools:
        library, cls = resolve(t, lagent, agentlego)
        action = construct(t, library, cls, lagent if library == "lagent" else agentlego)
        # Lagent's executor keys actions by name: a second one would silently replace the first.
        if action.name in seen:
            raise ConfigError(
                f"spec.tools: {seen[action.name]!r} and {t.name!r} are both the tool "
                f"{action.name!r}; keep one"
            )
        seen[action.name] = t.name
        out.append(action)
    return out
