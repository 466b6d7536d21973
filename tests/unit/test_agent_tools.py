"""Agent spec.tools: names resolved to Lagent actions or AgentLego tools of the agent image,
and rejected with a reason (status reason InvalidSpec) if the image cannot run them (pure, no
cluster). That the table matches the real libraries is tests/workloads/test_agent_tools.py's job."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
from internlm_operator.api.v1alpha1.agent import AgentSpec, Tool
from internlm_operator.builders import agent as ba
from internlm_operator.builders.common import Owner
from internlm_operator.reconcilers.controller import permanent_from
from internlm_operator.runtimes import InvalidSpec
from internlm_operator.runtimes.lagent import render_tools
from pydantic import ValidationError

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "images" / "workloads" / "src"))

from internlm_workloads.config import parse_config  # noqa: E402

LLM = {"url": "http://llm:8000/v1", "model": "m"}


def spec(tools: list[dict[str, Any]], **kw: Any) -> AgentSpec:
    return AgentSpec.model_validate({"llm": LLM, "tools": tools, **kw})


def rendered_tools(s: AgentSpec) -> list[dict[str, Any]]:
    ch = ba.build(
        ba.AgentInputs(
            owner=Owner("internlm.io/v1alpha1", "Agent", "ns1", "a", "uid"),
            spec=s,
            image="agent:1",
            llm=ba.ResolvedLLM(LLM["url"], LLM["model"]),
        )
    )
    cfg = json.loads(ch.config_map["data"]["config.json"])
    parse_config(cfg, "agent")  # the workload accepts what the operator renders
    tools: list[dict[str, Any]] = cfg["spec"]["tools"]
    return tools


def test_names_resolve_to_their_library() -> None:
    tools = rendered_tools(
        spec(
            [
                {"name": "Calculator", "params": {"timeout": 5}},
                {"name": "IPythonInterpreter", "params": {"timeout": 20}},
                {"name": "GoogleSearch", "params": {"api_key": "k"}},  # in both: Lagent's
                {"name": "agentlego.Translation"},
            ]
        )
    )
    assert tools == [
        {"name": "Calculator", "params": {"timeout": 5}, "library": "agentlego"},
        {"name": "IPythonInterpreter", "params": {"timeout": 20}, "library": "lagent"},
        {"name": "GoogleSearch", "params": {"api_key": "k"}, "library": "lagent"},
        {"name": "agentlego.Translation", "params": {}, "library": "agentlego"},
    ]
    prefixed = rendered_tools(spec([{"name": "agentlego.GoogleSearch", "params": {"k": 3}}]))
    assert prefixed[0]["library"] == "agentlego"


@pytest.mark.parametrize(
    ("tools", "reason"),
    [
        ([{"name": "NoSuchTool"}], "unknown tool 'NoSuchTool' (available: Lagent actions: "),
        ([{"name": "lagent.Calculator"}], "lagent has no tool 'Calculator'"),
        ([{"name": "TextToImage"}], "AgentLego's TextToImage needs diffusers"),
        ([{"name": "agentlego.OCR"}], "AgentLego's OCR needs easyocr"),
        (
            [{"name": "Calculator", "params": {"expression": "1+1"}}],
            "spec.tools Calculator: unknown params ['expression'] (accepted: timeout)",
        ),
        (
            [{"name": "GoogleSearch"}, {"name": "agentlego.GoogleSearch"}],
            "'GoogleSearch' and 'agentlego.GoogleSearch' are both the tool 'GoogleSearch'",
        ),
    ],
)
def test_what_the_image_cannot_run_is_rejected(tools: list[dict[str, Any]], reason: str) -> None:
    """Refused when the spec is parsed, so the Agent is InvalidSpec at once, even while its
    ModelServe is not ready yet (the builder, which needs the endpoint, checks too)."""
    with pytest.raises(ValidationError) as e:
        spec(tools)
    perm = permanent_from(e.value)
    assert perm is not None and perm.reason == "InvalidSpec"
    assert reason in perm.message
    with pytest.raises(InvalidSpec) as direct:
        render_tools([Tool.model_validate(t) for t in tools], custom_image=False)
    assert reason in str(direct.value)


def test_custom_image_defers_unknown_names_to_the_pod() -> None:
    """With spec.image the operator does not know the image's tools: the name goes through and
    the agent resolves it at start-up (or fails, naming the tools it has)."""
    tools = rendered_tools(
        spec(
            [{"name": "TextToImage", "params": {"device": "cuda"}}, {"name": "lagent.PPT"}],
            image="my/agent:1",
        )
    )
    assert tools == [
        {"name": "TextToImage", "params": {"device": "cuda"}},  # no library: the pod resolves it
        {"name": "lagent.PPT", "params": {}, "library": "lagent"},
    ]


@pytest.mark.parametrize("name", ["mmcv.Calculator", "Calc ulator", "lagent.", ".Calculator"])
def test_crd_pattern_rejects_other_prefixes(name: str) -> None:
    with pytest.raises(ValidationError):
        spec([{"name": name}])
