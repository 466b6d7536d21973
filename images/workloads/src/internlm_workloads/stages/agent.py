"""agent: a Lagent agent (ReAct or InternLM2 protocol) whose LLM is an OpenAI-compatible
endpoint, served over an OpenAI-compatible API on ``spec.port`` (docs/agent-api.md):

- ``POST /v1/chat/completions``: messages in, the agent's final answer out (``stream`` gives
  Server-Sent Events), the tool calls it made in ``steps``; OpenAI error shapes
- ``GET /v1/models``: the agent itself, named after the resource
- ``GET /healthz`` (liveness) and ``GET /readyz`` (200 once every tool is constructed; the LLM's
  reachability is reported, not required)

SIGTERM/SIGINT stop it cleanly (exit 0).
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import urllib.error
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from ..config import AgentSpec, StageConfig
from ..report import StageError, log, write_progress
from .agent_tools import load_tools


def chat_url(url: str) -> str:
    """Lagent's GPTAPI posts to the full ``.../v1/chat/completions`` URL."""
    u = url.rstrip("/")
    if u.endswith("/chat/completions"):
        return u
    return u + "/chat/completions"


def models_url(url: str) -> str:
    u = url.rstrip("/")
    if u.endswith("/chat/completions"):
        u = u[: -len("/chat/completions")]
    return u + "/models"


def _llm(spec: AgentSpec) -> Any:
    from lagent.llms import GPTAPI

    class OpenAICompatible(GPTAPI):  # type: ignore[misc]
        """GPTAPI only builds requests for model names starting with gpt/internlm/qwen; any
        OpenAI-compatible server (LMDeploy, vLLM, ...) takes the plain OpenAI body."""

        def generate_request_data(self, model_type, messages, gen_params, json_mode=False):  # type: ignore[no-untyped-def]
            params = dict(gen_params)
            params["max_tokens"] = min(params.pop("max_new_tokens"), 4096)
            if "stop_words" in params:
                params["stop"] = params.pop("stop_words")
            for k in ("top_k", "repetition_penalty", "skip_special_tokens", "session_id"):
                params.pop(k, None)
            data = {"model": model_type, "messages": messages, "n": 1, **params}
            if json_mode:
                data["response_format"] = {"type": "json_object"}
            return {"content-type": "application/json"}, data

    return OpenAICompatible(
        model_type=spec.llm.model,
        openai_api_base=chat_url(spec.llm.url),
        key=os.environ.get("OPENAI_API_KEY") or "EMPTY",
        query_per_second=50,
        retry=2,
        max_new_tokens=spec.llm.max_new_tokens,
        temperature=spec.llm.temperature,
        top_p=1.0,
        stop_words=["<|im_end|>"],
    )


def _tools(spec: AgentSpec) -> list[Any]:
    return load_tools(spec.tools)


def build_agent(spec: AgentSpec) -> Any:
    from lagent.actions import ActionExecutor

    llm = _llm(spec)
    tools = _tools(spec)
    if spec.agent_type == "react":
        from lagent.agents.react import ReAct, ReActProtocol

        protocol = (
            ReActProtocol(call_protocol=spec.system_prompt)
            if spec.system_prompt
            else (ReActProtocol())
        )
        return ReAct(
            llm=llm,
            action_executor=ActionExecutor(actions=tools),
            protocol=protocol,
            max_turn=spec.max_turns,
        )
    from lagent.actions import IPythonInterpreter
    from lagent.agents.internlm2_agent import Internlm2Agent, Internlm2Protocol

    interp = [t for t in tools if isinstance(t, IPythonInterpreter)]
    plugins = [t for t in tools if not isinstance(t, IPythonInterpreter)]
    kw = {"meta_prompt": spec.system_prompt} if spec.system_prompt else {}
    return Internlm2Agent(
        llm=llm,
        plugin_executor=ActionExecutor(actions=plugins) if plugins else None,
        interpreter_executor=ActionExecutor(actions=interp) if interp else None,
        protocol=Internlm2Protocol(**kw),
        max_turn=spec.max_turns,
    )


ROLES = ("system", "user", "assistant")


class ApiError(Exception):
    """An error answered in the OpenAI error shape."""

    def __init__(self, status: int, type_: str, message: str) -> None:
        super().__init__(message)
        self.status, self.type, self.message = status, type_, message

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "code": self.status}}


def parse_request(body: Any) -> tuple[list[dict[str, str]], dict[str, Any], bool]:
    """(messages, per-request generation overrides, stream) from an OpenAI chat request."""
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_request_error", "the body must be a JSON object")
    msgs = body.get("messages")
    if not isinstance(msgs, list) or not msgs:
        raise ApiError(400, "invalid_request_error", "messages must be a non-empty list")
    out = []
    for i, m in enumerate(msgs):
        if not isinstance(m, dict) or m.get("role") not in ROLES:
            raise ApiError(
                400, "invalid_request_error", f"messages[{i}].role must be one of {list(ROLES)}"
            )
        content = m.get("content")
        if isinstance(content, list):  # OpenAI content parts: keep the text ones
            content = "".join(
                p.get("text", "")
                for p in content
                if isinstance(p, dict) and p.get("type") == "text"
            )
        if not isinstance(content, str):
            raise ApiError(400, "invalid_request_error", f"messages[{i}].content must be text")
        out.append({"role": m["role"], "content": content})
    gen: dict[str, Any] = {}
    if isinstance(body.get("temperature"), int | float) and not isinstance(
        body["temperature"], bool
    ):
        gen["temperature"] = float(body["temperature"])
    if isinstance(body.get("max_tokens"), int) and body["max_tokens"] > 0:
        gen["max_new_tokens"] = int(body["max_tokens"])
    return out, gen, bool(body.get("stream"))


def steps_of(ret: Any) -> tuple[list[dict[str, Any]], bool]:
    """The tool calls and results of one agent session, and whether it ended with an answer."""
    steps: list[dict[str, Any]] = []
    finished = False
    for a in ret.actions:
        if a.type == "FinishAction":
            finished = True
            continue
        if a.thought:
            steps.append({"type": "thought", "content": a.thought})
        steps.append({"type": "tool_call", "name": a.type, "arguments": a.args})
        if a.errmsg:
            steps.append({"type": "error", "name": a.type, "content": str(a.errmsg)})
        else:
            steps.append({"type": "tool_result", "name": a.type, "content": _text(a.result)})
    return steps, finished


def _text(result: Any) -> str:
    """Lagent results are lists of {type, content}; a client wants the text."""
    if isinstance(result, list):
        return "\n".join(
            str(r.get("content", "")) for r in result if isinstance(r, dict)
        ) or json.dumps(result, default=str)
    return "" if result is None else str(result)


class AgentServer:
    def __init__(self, spec: AgentSpec, name: str) -> None:
        self.spec = spec
        self.name = name
        self.agent = build_agent(spec)  # every tool constructed: ready from here on
        self.lock = threading.Lock()  # Lagent agents keep per-chat state: one chat at a time
        self.ready = True
        self.llm_ok = False
        self.chats = 0

    def check_llm(self) -> bool:
        req = urllib.request.Request(models_url(self.spec.llm.url))
        key = os.environ.get("OPENAI_API_KEY")
        if key:
            req.add_header("Authorization", f"Bearer {key}")
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                return bool(r.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def complete(self, body: Any) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """One agent session: (chat.completion, steps)."""
        messages, gen, _ = parse_request(body)
        with self.lock:
            try:
                ret = self.agent.chat(messages, **gen)
            except TimeoutError as e:
                raise ApiError(504, "upstream_timeout", f"the LLM did not answer: {e}") from e
            except Exception as e:  # the LLM endpoint (or a tool) failed: report, keep serving
                log(f"chat failed: {type(e).__name__}: {e}")
                kind = "upstream_timeout" if "timed out" in str(e).lower() else "upstream_error"
                raise ApiError(
                    504 if kind == "upstream_timeout" else 502, kind, f"{type(e).__name__}: {e}"
                ) from e
            self.chats += 1
        steps, finished = steps_of(ret)
        completion = {
            "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.name,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": str(ret.response or "")},
                    "finish_reason": "stop" if finished else "length",
                }
            ],
            "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
            "steps": steps,
        }
        return completion, steps

    def models(self) -> dict[str, Any]:
        return {
            "object": "list",
            "data": [{"id": self.name, "object": "model", "owned_by": "internlm-operator"}],
        }


def stream_chunks(completion: dict[str, Any]) -> list[dict[str, Any]]:
    """The chat.completion.chunk sequence for a finished session: the role, the tool steps
    (empty delta + a ``step`` extension), the answer, the finish reason."""
    base = {
        "id": completion["id"],
        "object": "chat.completion.chunk",
        "created": completion["created"],
        "model": completion["model"],
    }
    choice = completion["choices"][0]

    def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> dict[str, Any]:
        return {
            **base,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            **extra,
        }

    out = [chunk({"role": "assistant", "content": ""})]
    out += [chunk({}, step=s) for s in completion["steps"]]
    out.append(chunk({"content": choice["message"]["content"]}))
    out.append(chunk({}, choice["finish_reason"]))
    return out


def _handler(server: AgentServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _send(self, code: int, data: Any) -> None:
            body = json.dumps(data, default=str).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _stream(self, completion: dict[str, Any]) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True
            for c in stream_chunks(completion):
                self.wfile.write(b"data: " + json.dumps(c, default=str).encode() + b"\n\n")
                self.wfile.flush()
            self.wfile.write(b"data: [DONE]\n\n")
            self.wfile.flush()

        def do_GET(self) -> None:
            path = self.path.split("?")[0]
            if path == "/healthz":
                self._send(200, {"status": "ok"})
            elif path == "/readyz":
                if server.ready:
                    self._send(
                        200,
                        {
                            "status": "ready",
                            "llm": server.spec.llm.url,
                            "model": server.spec.llm.model,
                            "tools": [t.name for t in server.spec.tools],
                        },
                    )
                else:
                    self._send(503, {"status": "starting"})
            elif path == "/v1/models":
                self._send(200, server.models())
            else:
                self._send(404, ApiError(404, "not_found", f"no route {path}").body())

        def do_POST(self) -> None:
            path = self.path.split("?")[0]
            if path != "/v1/chat/completions":
                self._send(404, ApiError(404, "not_found", f"no route {path}").body())
                return
            try:
                n = int(self.headers.get("Content-Length") or 0)
                try:
                    body = json.loads(self.rfile.read(n) or b"null")
                except ValueError as e:
                    raise ApiError(400, "invalid_request_error", f"not JSON: {e}") from e
                _, _, stream = parse_request(body)
                completion, _ = server.complete(body)
            except ApiError as e:
                self._send(e.status, e.body())
                return
            if stream:
                self._stream(completion)
            else:
                self._send(200, completion)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


def run(cfg: StageConfig) -> dict[str, Any]:
    spec: AgentSpec = cfg.spec
    if not spec.llm.url.startswith(("http://", "https://")):
        raise StageError(f"bad config: spec.llm.url must be http(s), got {spec.llm.url!r}")
    try:
        import lagent  # noqa: F401
    except ImportError as e:
        raise StageError("lagent is not installed in this image") from e
    server = AgentServer(spec, os.environ.get("INTERNLM_RESOURCE") or "agent")
    try:
        httpd = ThreadingHTTPServer(("0.0.0.0", spec.port), _handler(server))
    except OSError as e:
        raise StageError(f"cannot listen on port {spec.port}: {e}") from e
    httpd.daemon_threads = True
    stop = threading.Event()
    stopped_by: list[int] = []

    def on_signal(signum: int, _frame: Any) -> None:
        stopped_by.append(signum)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    log(f"agent ({spec.agent_type}, tools {[t.name for t in spec.tools]}) on :{spec.port}")
    while not stop.is_set():
        # Readiness does not depend on the LLM (docs/agent-api.md); its reachability is reported.
        ok = server.check_llm()
        if ok != server.llm_ok:
            log(f"LLM endpoint {spec.llm.url} is {'reachable' if ok else 'unreachable'}")
            server.llm_ok = ok
        write_progress({"ready": server.ready, "llm": ok, "chats": server.chats})
        stop.wait(2.0 if ok else 5.0)
    httpd.shutdown()
    name = signal.Signals(stopped_by[0]).name if stopped_by else "stop"
    log(f"stopped by {name}")
    return {"outputs": {}, "stopped": name, "chats": server.chats}
