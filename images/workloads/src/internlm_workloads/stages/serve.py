"""serve: an OpenAI-compatible server with the arguments the operator chose: LMDeploy's
``api_server`` (``spec.engine`` lmdeploy, the default) or ``transformers serve`` (engine
transformers, the CPU engine; see serve_transformers.py). What follows is the LMDeploy side; the
supervision (signals, readiness, a server dying) is the same for both.

- The argument list is checked with LMDeploy's own CLI parser before anything starts, so a bad
  flag fails the pod at once with LMDeploy's message.
- The model path and ``--server-port``/``--server-name`` are added when the operator's list
  does not carry them.
- SIGTERM/SIGINT are forwarded to the server's process group; the stage waits for it to stop
  (killing it after a grace period) and exits 0: a clean stop of a Deployment.
- Readiness: ``GET /v1/models`` on the server is polled; once it answers, progress says
  ``{"ready": true}``. A server that exits before or after getting ready fails the stage with the
  last error line of its log.

``INTERNLM_LMDEPLOY_CMD`` (default ``lmdeploy``) names the launcher; tests on machines without a
GPU point it at a stand-in, since LMDeploy inference is CUDA-only.
"""

from __future__ import annotations

import contextlib
import io
import os
import shlex
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from ..config import ServeSpec, StageConfig
from ..report import Child, StageError, Terminated, last_error_line, log, output_dir, write_progress


def build_args(spec: ServeSpec) -> list[str]:
    """The argument list after ``lmdeploy serve api_server``."""
    args = list(spec.args)
    if spec.model_path not in args:
        args.insert(0, spec.model_path)
    if "--server-port" not in args:
        args += ["--server-port", str(spec.port)]
    if "--server-name" not in args:
        args += ["--server-name", "0.0.0.0"]
    return args


def validate_with_lmdeploy(args: list[str]) -> Any:
    """Parse the arguments with LMDeploy's own CLI; StageError with its message on error."""
    try:
        from lmdeploy.cli.cli import CLI
        from lmdeploy.cli.lite import SubCliLite
        from lmdeploy.cli.serve import SubCliServe
    except ImportError as e:
        raise StageError(f"lmdeploy is not installed in this image: {e}") from e
    if not getattr(CLI, "_internlm_parsers_added", False):
        CLI.add_parsers()
        SubCliServe.add_parsers()
        SubCliLite.add_parsers()
        CLI._internlm_parsers_added = True
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            return CLI.parser.parse_args(["serve", "api_server", *args])
    except SystemExit as e:
        msg = [ln for ln in err.getvalue().splitlines() if "error:" in ln]
        raise StageError(
            "lmdeploy rejects the arguments: " + (msg[-1] if msg else err.getvalue()[-300:])
        ) from e


def _ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=2) as r:
            return bool(r.status == 200)
    except OSError:
        return False


def _lmdeploy_launch(spec: ServeSpec) -> tuple[list[str], int, str | None, dict[str, str] | None]:
    args = build_args(spec)
    parsed = validate_with_lmdeploy(args)
    launcher = shlex.split(os.environ.get("INTERNLM_LMDEPLOY_CMD", "lmdeploy"))
    return [*launcher, "serve", "api_server", *args], int(parsed.server_port), None, None


def run(cfg: StageConfig) -> dict[str, Any]:
    spec: ServeSpec = cfg.spec
    if spec.model_path.startswith("/") and not Path(spec.model_path).exists():
        raise StageError(f"modelPath {spec.model_path} does not exist")
    if spec.engine == "transformers":
        from . import serve_transformers

        argv, port, cwd, env = serve_transformers.launch(spec)
        server = "transformers serve"
    else:
        argv, port, cwd, env = _lmdeploy_launch(spec)
        server = "lmdeploy api_server"
    out = (
        output_dir(cfg.output_dir)
        if (os.environ.get("INTERNLM_OUTPUT_DIR") or cfg.output_dir)
        else None
    )
    log_name = "lmdeploy.log" if spec.engine == "lmdeploy" else "transformers-serve.log"
    log_path = (out / log_name) if out else Path("/tmp") / log_name
    write_progress({"ready": False})
    try:
        child = Child(
            argv,
            env=env,
            cwd=cwd,
            log_path=log_path,
            grace=float(os.environ.get("INTERNLM_GRACE", "25")),
        )
    except FileNotFoundError as e:
        raise StageError(f"{argv[0]} not found in this image") from e
    state = {"ready": False, "since": None}

    def watch() -> None:
        t0 = time.monotonic()
        while child.proc.poll() is None and not state["ready"]:
            if _ready(port):
                state["ready"] = True
                state["since"] = round(time.monotonic() - t0, 1)
                write_progress({"ready": True, "port": port, "startupSeconds": state["since"]})
                log(f"{server} ready on :{port} after {state['since']}s")
                return
            time.sleep(1.0)

    threading.Thread(target=watch, daemon=True).start()
    try:
        rc = child.wait()
    except Terminated as e:
        rc = child.proc.returncode
        log(f"{server} stopped after {e} (exit {rc})")
        return {
            "outputs": {"endpoint": f"http://0.0.0.0:{port}/v1"},
            "stopped": str(e).split()[-1],
            "exitCode": rc,
        }
    why = last_error_line(log_path) or f"exit code {rc}"
    when = "after it was ready" if state["ready"] else "before it was ready"
    raise StageError(f"{server} exited {when} with code {rc}: {why}")
