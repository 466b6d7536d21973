"""agent: a Lagent agent (ReAct or InternLM2 protocol) whose LLM is an OpenAI-compatible
endpoint, served over a small HTTP chat API on ``spec.port``:

- ``POST /v1/chat`` ``{"message": "..."}`` (or ``{"messages": [{"role","content"}...]}``) ->
  ``{"response": "...", "steps": [{"action","thought","args","result","state","errmsg"}]}``
- ``GET /healthz`` -> 200 while the process runs (liveness)
- ``GET /readyz`` -> 200 once the LLM endpoint answered ``GET <url>/models``, else 503

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
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from ..config import AgentSpec, ConfigError, StageConfig
from ..report import StageError, log, write_progress


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
    import lagent.actions as actions

    available = sorted(
        n
        for n in actions.__all__
        if isinstance(getattr(actions, n, None), type)
        and issubclass(getattr(actions, n), actions.BaseAction)
        and n not in ("BaseAction", "FinishAction", "InvalidAction", "NoAction")
    )
    tools = []
    for t in spec.tools:
        if t.name not in available:
            raise ConfigError(f"spec.tools: unknown tool {t.name!r} (available: {available})")
        try:
            tools.append(getattr(actions, t.name)(**t.params))
        except TypeError as e:
            raise ConfigError(f"spec.tools {t.name}: bad params: {e}") from e
    return tools


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


def _steps(ret: Any) -> list[dict[str, Any]]:
    steps = []
    for a in ret.actions:
        steps.append(
            {
                "action": a.type,
                "thought": a.thought,
                "args": a.args,
                "result": a.result,
                "state": int(a.state) if a.state is not None else None,
                "errmsg": a.errmsg,
            }
        )
    return steps


class AgentServer:
    def __init__(self, spec: AgentSpec) -> None:
        self.spec = spec
        self.agent = build_agent(spec)
        self.lock = threading.Lock()  # Lagent agents keep per-chat state: one chat at a time
        self.ready = False
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

    def chat(self, body: dict[str, Any]) -> dict[str, Any]:
        if "messages" in body:
            message: Any = body["messages"]
            if not isinstance(message, list) or not message:
                raise ValueError("messages must be a non-empty list")
        elif isinstance(body.get("message"), str):
            message = body["message"]
        else:
            raise ValueError('body needs "message" (string) or "messages" (list)')
        with self.lock:
            t0 = time.monotonic()
            ret = self.agent.chat(message)
            self.chats += 1
        return {
            "response": ret.response,
            "steps": _steps(ret),
            "seconds": round(time.monotonic() - t0, 3),
        }


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

        def do_GET(self) -> None:
            if self.path == "/healthz":
                self._send(200, {"status": "ok"})
            elif self.path == "/readyz":
                self._send(200 if server.ready else 503, {"ready": server.ready})
            else:
                self._send(404, {"error": "not found"})

        def do_POST(self) -> None:
            if self.path not in ("/v1/chat", "/chat"):
                self._send(404, {"error": "not found"})
                return
            try:
                n = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(n) or b"{}")
                if not isinstance(body, dict):
                    raise ValueError("body must be a JSON object")
            except ValueError as e:
                self._send(400, {"error": f"bad request: {e}"})
                return
            try:
                self._send(200, server.chat(body))
            except ValueError as e:
                self._send(400, {"error": str(e)})
            except Exception as e:  # the LLM endpoint failed: report, keep serving
                log(f"chat failed: {type(e).__name__}: {e}")
                self._send(502, {"error": f"{type(e).__name__}: {e}"})

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
    server = AgentServer(spec)
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
        if not server.ready and server.check_llm():
            server.ready = True
            log(f"LLM endpoint {spec.llm.url} is reachable: ready")
        write_progress({"ready": server.ready, "chats": server.chats})
        stop.wait(2.0)
    httpd.shutdown()
    name = signal.Signals(stopped_by[0]).name if stopped_by else "stop"
    log(f"stopped by {name}")
    return {"outputs": {}, "stopped": name, "chats": server.chats}
