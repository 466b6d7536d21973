"""agent: Lagent 0.2.4 ReAct agent behind the stage's chat API, its LLM a real
OpenAI-compatible server (helpers/openai_server.py: transformers generate) on 127.0.0.1 serving
the tiny model, taught beforehand to call the Python interpreter (helpers/teach.py)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import HELPERS, WORKLOADS_SRC, free_port, image_env, make_stage, wait_until

pytestmark = pytest.mark.workload

QUESTION = "What is 6 times 7?"
CALL = (
    "Thought: I should compute it.\nAction: PythonInterpreter\n"
    'Action Input: {"command": "def solution():\\n    return 6 * 7"}'
)
FINAL = "Thought: The tool computed it.\nFinal Answer: 42"


def agent_spec(llm_port: int, port: int) -> dict[str, Any]:
    return {
        "llm": {"url": f"http://127.0.0.1:{llm_port}/v1", "model": "internlm2-tiny"},
        "agentType": "react",
        "tools": [{"name": "PythonInterpreter", "params": {}}],
        "systemPrompt": None,
        "port": port,
        "maxTurns": 3,
    }


def http(method: str, url: str, body: Any = None, timeout: float = 120) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")
    except OSError:
        return 0, None


def teach(
    tiny: Path, work: Path, spec: dict[str, Any], question: str, call: str, final: str
) -> tuple[Path, dict[str, Any]]:
    """The tiny model, trained on the exact two prompts the agent will send (taken from Lagent
    itself) to reply with a tool call, then with a final answer once the tool responded."""
    cfg = work / "config.json"
    cfg.write_text(
        json.dumps({"apiVersion": "workloads.internlm.io/v1", "stage": "agent", "spec": spec})
    )
    agent_py = image_env("agent") / "bin" / "python"
    env = {**os.environ, "PYTHONPATH": str(WORKLOADS_SRC)}
    out = subprocess.run(
        [str(agent_py), str(HELPERS / "agent_prompts.py"), str(cfg), question, call],
        capture_output=True,
        text=True,
        env=env,
        check=True,
        timeout=300,
    ).stdout
    prompts: dict[str, Any] = json.loads(out)
    pairs = [
        {"messages": prompts["turn1"], "reply": call},
        {"messages": prompts["turn2"], "reply": final},
    ]
    (work / "pairs.json").write_text(json.dumps(pairs))
    subprocess.run(
        [
            str(image_env("pretrain") / "bin" / "python"),
            str(HELPERS / "teach.py"),
            str(tiny / "model"),
            str(work / "pairs.json"),
            str(work / "model"),
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
        env={**os.environ, "CUDA_VISIBLE_DEVICES": "", "HF_HUB_OFFLINE": "1"},
    )
    return work / "model", prompts


@pytest.fixture(scope="module")
def taught_model(tiny: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    model, prompts = teach(
        tiny, tmp_path_factory.mktemp("agent-model"), agent_spec(1, 2), QUESTION, CALL, FINAL
    )
    assert prompts["action"] == "PythonInterpreter" and prompts["result"] == "42"
    return model


def serve_llm(model: Path, log: Path) -> tuple[int, subprocess.Popen[bytes]]:
    port = free_port()
    proc = subprocess.Popen(
        [
            str(image_env("pretrain") / "bin" / "python"),
            str(HELPERS / "openai_server.py"),
            "--model",
            str(model),
            "--port",
            str(port),
            "--log",
            str(log),
        ],
        env={**os.environ, "CUDA_VISIBLE_DEVICES": "", "HF_HUB_OFFLINE": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_until(
        "the LLM server",
        lambda: http("GET", f"http://127.0.0.1:{port}/v1/models")[0] == 200,
        timeout=120,
    )
    return port, proc


@pytest.fixture(scope="module")
def llm_server(
    taught_model: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[int, Path]]:
    log = tmp_path_factory.mktemp("llm") / "requests.jsonl"
    port, proc = serve_llm(taught_model, log)
    yield port, log
    proc.terminate()
    proc.wait(timeout=30)


@pytest.mark.timeout(900)
def test_agent_tool_call_round_trip_and_clean_stop(
    llm_server: tuple[int, Path], tmp_path: Path
) -> None:
    """The agent's OpenAI-compatible API through the official openai client: a tool-call round
    trip, the same answer streamed, /v1/models, errors in OpenAI's shape, and a clean stop."""
    import openai

    llm_port, requests_log = llm_server
    port = free_port()
    run = make_stage("agent", "agent", agent_spec(llm_port, port), tmp_path)
    run.env["INTERNLM_RESOURCE"] = "calc-agent"
    run.start()
    base = f"http://127.0.0.1:{port}"
    wait_until("agent readiness", lambda: http("GET", f"{base}/readyz")[0] == 200, timeout=120)
    assert http("GET", f"{base}/healthz")[0] == 200
    client = openai.OpenAI(base_url=f"{base}/v1", api_key="unused", max_retries=0, timeout=300)

    assert [m.id for m in client.models.list()] == ["calc-agent"]
    r = client.chat.completions.create(
        model="calc-agent", messages=[{"role": "user", "content": QUESTION}]
    )
    assert r.object == "chat.completion" and r.model == "calc-agent"
    assert r.choices[0].message.role == "assistant"
    assert r.choices[0].message.content.strip() == "42"
    assert r.choices[0].finish_reason == "stop"
    # the LLM asked for the interpreter, Lagent ran it, the result went back to the LLM,
    # which then answered; the steps say so
    steps = (r.model_extra or {})["steps"]
    calls = [s for s in steps if s["type"] == "tool_call"]
    results = [s for s in steps if s["type"] == "tool_result"]
    assert [c["name"] for c in calls] == ["PythonInterpreter"]
    assert results == [{"type": "tool_result", "name": "PythonInterpreter", "content": "42"}]
    sent = [json.loads(x)["body"] for x in requests_log.read_text().splitlines()]
    assert sent[-1]["messages"][-1] == {"role": "system", "content": "Response:42\n"}
    assert sent[-1]["model"] == "internlm2-tiny"

    # streamed: role first, the tool steps, the answer, the finish reason
    chunks = list(
        client.chat.completions.create(
            model="calc-agent", messages=[{"role": "user", "content": QUESTION}], stream=True
        )
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert text.strip() == "42"
    assert chunks[-1].choices[0].finish_reason == "stop"
    streamed_steps = [(c.model_extra or {}).get("step") for c in chunks]
    assert [s["name"] for s in streamed_steps if s and s["type"] == "tool_call"] == [
        "PythonInterpreter"
    ]

    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(model="calc-agent", messages=[])
    assert bad.value.status_code == 400
    assert bad.value.body["type"] == "invalid_request_error"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(
            model="calc-agent",
            messages=[{"role": "wizard", "content": "hi"}],  # type: ignore[list-item]
        )
    assert http("POST", f"{base}/v1/chat", {"message": QUESTION})[0] == 404

    assert run.proc is not None
    run.proc.send_signal(signal.SIGTERM)
    assert run.wait(timeout=60) == 0
    result = run.termination()
    assert result == {"ok": True, "outputs": {}, "stopped": "SIGTERM", "chats": 2}


@pytest.mark.parametrize(
    ("over", "reason"),
    [
        ({"tools": [{"name": "NoSuchTool", "params": {}}]}, "unknown tool 'NoSuchTool'"),
        ({"tools": [{"name": "PythonInterpreter", "params": {"bogus": 1}}]}, "bad params"),
        ({"agentType": "autogpt"}, "spec.agentType: must be one of"),
        ({"llm": {"url": "ftp://x", "model": "m"}}, "spec.llm.url must be http(s)"),
    ],
)
def test_agent_bad_config_fails_with_reason(
    tmp_path: Path, over: dict[str, Any], reason: str
) -> None:
    spec = {**agent_spec(free_port(), free_port()), **over}
    run = make_stage("agent", "agent", spec, tmp_path)
    rc = run.run(timeout=120)
    result = run.termination()
    assert rc == 1 and result["ok"] is False and reason in result["reason"], result


CALC_QUESTION = "What is 17 times 23?"
CALC_CALL = (
    "Thought: I should use the calculator.\nAction: Calculator\n"
    'Action Input: {"expression": "17*23"}'
)
CALC_FINAL = "Thought: The calculator computed it.\nFinal Answer: 391"


@pytest.mark.timeout(900)
def test_agent_runs_an_agentlego_tool(tiny: Path, tmp_path: Path) -> None:
    """AgentLego's Calculator (the samples' tool), named as the operator renders it, called by
    the agent on CPU: the LLM asks for it, AgentLego computes, the steps show the call."""
    spec = {
        **agent_spec(1, 2),
        "tools": [{"name": "Calculator", "params": {}, "library": "agentlego"}],
    }
    (tmp_path / "teach").mkdir()
    model, prompts = teach(tiny, tmp_path / "teach", spec, CALC_QUESTION, CALC_CALL, CALC_FINAL)
    assert prompts["action"] == "Calculator" and prompts["result"] == "391"
    # AgentLego's own description of the tool is what the LLM was shown
    assert "A calculator tool" in json.dumps(prompts["turn1"])
    llm_port, llm = serve_llm(model, tmp_path / "requests.jsonl")
    try:
        port = free_port()
        run = make_stage(
            "agent",
            "agent",
            {**spec, "llm": agent_spec(llm_port, port)["llm"], "port": port},
            tmp_path / "agent",
        )
        run.start()
        base = f"http://127.0.0.1:{port}"
        wait_until("agent readiness", lambda: http("GET", f"{base}/readyz")[0] == 200, 120)
        assert http("GET", f"{base}/readyz")[1]["tools"] == ["Calculator"]
        import openai

        client = openai.OpenAI(base_url=f"{base}/v1", api_key="unused", max_retries=0, timeout=300)
        r = client.chat.completions.create(
            model="agent", messages=[{"role": "user", "content": CALC_QUESTION}]
        )
        assert r.choices[0].message.content.strip() == "391"
        assert r.choices[0].finish_reason == "stop"
        steps = [s for s in (r.model_extra or {})["steps"] if s["type"] != "thought"]
        assert steps == [
            {"type": "tool_call", "name": "Calculator", "arguments": {"expression": "17*23"}},
            {"type": "tool_result", "name": "Calculator", "content": "391"},
        ]
        assert run.proc is not None
        run.proc.send_signal(signal.SIGTERM)
        assert run.wait(timeout=60) == 0
        assert run.termination()["chats"] == 1
    finally:
        llm.terminate()
        llm.wait(timeout=30)
