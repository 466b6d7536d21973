"""How a workload reports back (docs/workload-contract.md): the termination message, the
progress file and its HTTP endpoint, and running a tool as a child with signals forwarded."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

TERMINATION_LIMIT = 4096
# EX_TEMPFAIL: a transient failure the workload detected itself (a training rank lost a peer
# of its gang: another pod died); the operator retries it like a signal (gang restart).
EXIT_TRANSIENT = 75


class StageError(Exception):
    """A permanent failure (bad config, missing input, tool failure): exit 1-127, no retry."""

    def __init__(self, reason: str, exit_code: int = 1, **extra: Any) -> None:
        super().__init__(reason)
        self.reason = reason
        self.exit_code = exit_code
        self.extra = extra


class Terminated(Exception):
    """The pod was asked to stop (SIGTERM/SIGINT): exit 128+signal so the operator retries."""

    def __init__(self, signum: int, reason: str | None = None, **extra: Any) -> None:
        super().__init__(reason or f"terminated by signal {signal.Signals(signum).name}")
        self.signum = signum
        self.extra = extra  # e.g. the checkpoint saved on the way out, for the termination message


def log(msg: str) -> None:
    res = os.environ.get("INTERNLM_RESOURCE", "")
    prefix = f"[internlm-workloads {res}] " if res else "[internlm-workloads] "
    print(prefix + msg, file=sys.stderr, flush=True)


def one_line(text: str, limit: int = 1000) -> str:
    s = " ".join(str(text).split())
    return s if len(s) <= limit else s[: limit - 3] + "..."


def termination_path() -> Path:
    return Path(os.environ.get("INTERNLM_TERMINATION_LOG", "/dev/termination-log"))


def write_termination(result: dict[str, Any]) -> str:
    """Write the single-line JSON result; shrink it to fit the 4096-byte limit."""
    res = dict(result)
    if "reason" in res:
        res["reason"] = one_line(res["reason"])
    line = json.dumps(res, separators=(",", ":"))
    if len(line.encode()) > TERMINATION_LIMIT and "scores" in res:
        # accuracy is the operator's default metric: without it the 57 MMLU subject rows fit,
        # which a group threshold (mmlu = their mean) needs all of
        res["scores"] = [_compact(s) for s in res["scores"]]
        line = json.dumps(res, separators=(",", ":"))
    if len(line.encode()) > TERMINATION_LIMIT and "scores" in res:
        res["scores"] = res["scores"][:20]
        res["scoresTruncated"] = True
        line = json.dumps(res, separators=(",", ":"))
    if len(line.encode()) > TERMINATION_LIMIT and "reason" in res:
        res["reason"] = one_line(res["reason"], 300)
        line = json.dumps(res, separators=(",", ":"))
    if len(line.encode()) > TERMINATION_LIMIT:
        line = json.dumps({"ok": res.get("ok", False), "reason": "result too large"})
    try:
        with open(termination_path(), "w") as f:
            f.write(line)
    except OSError as e:
        log(f"cannot write the termination message to {termination_path()}: {e}")
    print(line, flush=True)
    return line


def _compact(score: Any) -> Any:
    if not isinstance(score, dict):
        return score
    out = {k: v for k, v in score.items() if not (k == "metric" and v == "accuracy")}
    if isinstance(out.get("value"), float):
        out["value"] = round(out["value"], 2)
    return out


def write_json_atomic(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, separators=(",", ":"))
    os.replace(tmp, path)


def progress_path() -> Path:
    default = "/var/run/internlm/progress.json"
    return Path(os.environ.get("INTERNLM_PROGRESS_FILE", default))


def write_progress(data: dict[str, Any]) -> None:
    try:
        write_json_atomic(progress_path(), data)
    except OSError as e:  # progress is best effort
        log(f"cannot write progress: {e}")


def read_progress() -> dict[str, Any]:
    try:
        data = json.loads(progress_path().read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


class _ProgressHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path.split("?")[0] not in ("/progress", "/healthz"):
            self.send_error(404)
            return
        body = json.dumps(read_progress() if self.path.startswith("/progress") else {}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def start_progress_server() -> ThreadingHTTPServer | None:
    """Serve GET /progress on INTERNLM_PROGRESS_PORT (9400; 0 or empty disables)."""
    port = os.environ.get("INTERNLM_PROGRESS_PORT", "9400")
    if not port or port == "0":
        return None
    try:
        srv = ThreadingHTTPServer(("0.0.0.0", int(port)), _ProgressHandler)
    except (OSError, ValueError) as e:
        log(f"progress endpoint not started on port {port}: {e}")
        return None
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, name="progress", daemon=True).start()
    return srv


def output_dir(cfg_output: str | None) -> Path:
    out = os.environ.get("INTERNLM_OUTPUT_DIR") or cfg_output
    if not out:
        raise StageError("no output directory: set INTERNLM_OUTPUT_DIR or outputDir")
    p = Path(out)
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise StageError(f"output directory {p} is not writable: {e}") from e
    return p


class Child:
    """A tool process in its own process group. SIGTERM/SIGINT sent to us are forwarded to the
    whole group; after ``grace`` seconds it is killed."""

    def __init__(
        self,
        argv: Sequence[str],
        env: dict[str, str] | None = None,
        log_path: Path | None = None,
        cwd: str | Path | None = None,
        grace: float = 30.0,
        on_line: Any = None,
    ) -> None:
        self.argv = list(argv)
        self.on_line = on_line
        self.grace = grace
        self.signalled: int | None = None
        self._log_file = open(log_path, "ab") if log_path else None  # noqa: SIM115
        log(f"running: {' '.join(self.argv)}")
        self.proc = subprocess.Popen(
            self.argv,
            env=env,
            cwd=cwd,
            start_new_session=True,
            stdout=self._tee_target(),
            stderr=subprocess.STDOUT if self._log_file else None,
        )
        if self._log_file:
            threading.Thread(target=self._tee, daemon=True).start()
        self._old = {}
        if threading.current_thread() is threading.main_thread():
            for s in (signal.SIGTERM, signal.SIGINT):
                self._old[s] = signal.signal(s, self._forward)

    def _tee_target(self) -> Any:
        return subprocess.PIPE if self._log_file else None

    def _tee(self) -> None:
        assert self.proc.stdout is not None and self._log_file is not None
        for chunk in iter(lambda: self.proc.stdout.readline(), b""):  # type: ignore[union-attr]
            sys.stdout.buffer.write(chunk)
            sys.stdout.flush()
            self._log_file.write(chunk)
            self._log_file.flush()
            if self.on_line is not None:
                try:
                    self.on_line(chunk.decode(errors="replace"))
                except Exception as e:  # progress parsing must never break the run
                    log(f"progress parsing failed: {e}")

    def _forward(self, signum: int, _frame: Any) -> None:
        self.signalled = signum
        log(f"received {signal.Signals(signum).name}, forwarding to the tool")
        self.signal(signum)

        def killer() -> None:
            time.sleep(self.grace)
            if self.proc.poll() is None:
                log(f"tool did not stop within {self.grace}s, killing it")
                self.signal(signal.SIGKILL)

        threading.Thread(target=killer, daemon=True).start()

    def signal(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signum)

    def wait(self) -> int:
        try:
            rc = self.proc.wait()
        finally:
            for s, h in self._old.items():
                signal.signal(s, h)
            if self._log_file:
                time.sleep(0.2)  # let the tee thread drain
                self._log_file.close()
        if self.signalled is not None:
            raise Terminated(self.signalled)
        return rc


def run_tool(
    argv: Sequence[str],
    what: str,
    env: dict[str, str] | None = None,
    log_path: Path | None = None,
    cwd: str | Path | None = None,
    on_line: Any = None,
    grace: float = 30.0,
) -> None:
    """Run a tool to completion; a non-zero exit is a StageError naming the tool. A SIGTERM
    is forwarded and the tool gets ``grace`` seconds to stop before it is killed."""
    try:
        child = Child(argv, env=env, log_path=log_path, cwd=cwd, on_line=on_line, grace=grace)
    except FileNotFoundError as e:
        raise StageError(f"{what}: {argv[0]} not found in this image") from e
    rc = child.wait()
    if rc < 0:
        raise StageError(f"{what} was killed by signal {-rc}", exit_code=128 - rc)
    if rc != 0:
        tail = last_error_line(log_path) if log_path else ""
        raise StageError(f"{what} exited with code {rc}" + (f": {tail}" if tail else ""))


EXC_RE = re.compile(r"^(?:[\w.]*\.)?\w*(?:Error|Exception|Interrupt)\b:?|: error: ")


def last_error_line(path: Path | None, pattern: str = "Error") -> str:
    """The last line of a log that looks like an exception (``SomeError: ...`` or argparse's
    ``prog: error: ...``), for the one-line reason; else the last line mentioning ``pattern``."""
    if not path or not path.exists():
        return ""
    lines = [ln.strip() for ln in path.read_text(errors="replace").splitlines()[-2000:]]
    skip = ("ChildFailedError", "error_file", "Warning", "To enable traceback")
    for s in reversed(lines):
        if EXC_RE.search(s) and not any(k in s for k in skip):
            return one_line(s, 300)
    for s in reversed(lines):
        if (
            pattern in s
            and not s.startswith(("File ", "warnings.warn"))
            and not any(k in s for k in skip)
        ):
            return one_line(s, 300)
    return ""
