"""The agent image's tools with the real libraries (Lagent 0.2.4, AgentLego 0.2.0 in the agent
environment): every tool every sample names loads as the operator renders it, the operator's
tool table (runtimes/agent_tools.py) is what the libraries offer, and a tool the image cannot
run stops the agent at start-up with a reason naming the available tools."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from internlm_operator.api.v1alpha1.agent import AgentSpec
from internlm_operator.runtimes import agent_tools as table
from internlm_operator.runtimes.lagent import render_tools

from .conftest import HELPERS, REPO, WORKLOADS_SRC, free_port, image_env, make_stage, py

pytestmark = pytest.mark.workload


def sample_tools() -> list[tuple[str, list[dict[str, Any]]]]:
    out = []
    for path in sorted((REPO / "samples").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") == "Agent" and doc["spec"].get("tools"):
                spec = AgentSpec.model_validate(doc["spec"])
                rendered = render_tools(spec.tools or [], custom_image=bool(spec.image))
                out.append((f"{path.name}:{doc['metadata']['name']}", rendered))
    return out


def test_every_sample_tool_loads_with_the_real_libraries() -> None:
    samples = sample_tools()
    assert {n for n, _ in samples} == {
        "agent.yaml:research-assistant",
        "pipeline.yaml:pipeline-agent",
    }
    names = {t["name"] for _, tools in samples for t in tools}
    assert {"Calculator", "IPythonInterpreter", "ArxivSearch"} <= names
    out = py(
        "agent",
        "import json, sys\n"
        "from internlm_workloads.config import Tool\n"
        "from internlm_workloads.stages.agent_tools import load_tools\n"
        "for where, tools in json.load(sys.stdin):\n"
        "    actions = load_tools([Tool(**t) for t in tools])\n"
        "    print(json.dumps([where, [[type(a).__module__, a.name] for a in actions]]))\n",
        input=json.dumps(samples),
        env={"PYTHONPATH": str(WORKLOADS_SRC)},
    )
    loaded = dict(json.loads(line) for line in out.splitlines() if line.startswith("["))
    assert loaded["pipeline.yaml:pipeline-agent"] == [
        ["agentlego.tools.wrappers.lagent", "Calculator"],  # AgentLego's, through its adapter
        ["lagent.actions.ipython_interpreter", "IPythonInterpreter"],
    ]
    assert [n for _, n in loaded["agent.yaml:research-assistant"]] == [
        "ArxivSearch",
        "IPythonInterpreter",
        "Calculator",
    ]


def test_operator_tool_table_matches_the_libraries() -> None:
    out = subprocess.run(
        [str(image_env("agent") / "bin" / "python"), str(HELPERS / "agent_tools_probe.py")],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(WORKLOADS_SRC), "SERPER_API_KEY": ""},
    ).stdout
    real = json.loads(out)
    assert {n: tuple(p) for n, p in real["lagent"].items()} == table.LAGENT_ACTIONS
    runs = {n: tuple(t["params"]) for n, t in real["agentlego"].items() if t["runs"] is True}
    assert runs == table.AGENTLEGO_TOOLS
    missing = {n: t["runs"] for n, t in real["agentlego"].items() if t["runs"] is not True}
    assert set(missing) == set(table.AGENTLEGO_NEEDS_EXTRAS)
    for name, error in missing.items():
        # the operator's reason names the first package AgentLego itself asks for
        assert table.AGENTLEGO_NEEDS_EXTRAS[name].split(",")[0] in error, (name, error)


@pytest.mark.parametrize(
    ("tools", "reason"),
    [
        (
            [{"name": "Calculator"}, {"name": "NoSuchTool"}],
            "unknown tool 'NoSuchTool' (available: Lagent actions: ArxivSearch,",
        ),
        ([{"name": "TextToImage", "params": {}}], "TextToImage requires diffusers"),
        ([{"name": "Calculator", "params": {"bogus": 1}}], "spec.tools Calculator: bad params"),
        ([{"name": "lagent.Calculator", "params": {}}], "lagent has no tool 'Calculator'"),
    ],
)
def test_agent_start_up_fails_naming_the_tools(
    tmp_path: Path, tools: list[dict[str, Any]], reason: str
) -> None:
    """A custom image's names reach the pod unresolved: the agent stops with the reason in its
    termination message (docs/workload-contract.md) instead of serving without the tool."""
    spec = {
        "llm": {"url": f"http://127.0.0.1:{free_port()}/v1", "model": "m"},
        "agentType": "internlm2",
        "tools": tools,
        "port": free_port(),
    }
    run = make_stage("agent", "agent", spec, tmp_path)
    rc = run.run(timeout=120)
    result = run.termination()
    assert rc == 1 and result["ok"] is False and reason in result["reason"], result
    if "available" in reason:
        assert "AgentLego tools: " in result["reason"] and "Calculator" in result["reason"]
