"""moto's S3 server (server mode, ``moto_server`` from ``moto[server]``) and a boto3 client of it,
both in a venv of their own built from ``s3-server.lock`` (not the repo venv: botocore needs
python-dateutil<3, kubernetes 37 needs >=3), cached under ``$INTERNLM_CACHE/venvs`` keyed by
the lock file's hash: the same venv tests/workloads/test_transfer.py uses.

Used by the real-node test (tests/integration/test_real_sources.py), which binds the server to
the node's own address so that pods reach it.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

HELPERS = Path(__file__).resolve().parent
CACHE = Path(os.environ.get("INTERNLM_CACHE", Path.home() / ".cache" / "internlm-operator"))


def s3_venv() -> Path:
    """The venv with moto's server and boto3 (built once, then reused)."""
    lock = HELPERS / "s3-server.lock"
    digest = hashlib.sha256(lock.read_bytes()).hexdigest()[:12]
    venv = CACHE / "venvs" / f"s3-server-{digest}"
    venv.parent.mkdir(parents=True, exist_ok=True)
    with (venv.parent / ".s3-server.lock").open("w") as guard:
        fcntl.flock(guard, fcntl.LOCK_EX)
        if not (venv / ".complete").exists():
            shutil.rmtree(venv, ignore_errors=True)
            py = os.environ.get("INTERNLM_VENV_PYTHON", "python3.11")
            subprocess.run(["uv", "venv", "-q", "--python", py, str(venv)], check=True)
            pip = ["uv", "pip", "install", "-q", "--python", f"{venv}/bin/python"]
            subprocess.run([*pip, "--no-deps", "-r", str(lock)], check=True)
            (venv / ".complete").touch()
    return venv


def _child_env(extra: dict[str, str]) -> dict[str, str]:
    """This process's environment (the network guard's PYTHONPATH and settings included)
    without any AWS_ or VIRTUAL_ENV setting of the caller's, plus ``extra``."""
    e = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "VIRTUAL_ENV"))}
    e["PYTHONUNBUFFERED"] = "1"
    e.update(extra)
    return e


def free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def moto_server(host: str, workdir: Path, timeout: float = 60) -> Iterator[dict[str, str]]:
    """moto's S3 server on ``host`` (a free port); yields the env a boto3 client of it needs
    (``AWS_ENDPOINT_URL_S3``, a test key pair, region, path addressing). Stopped at the end."""
    venv = s3_venv()
    port = free_port(host)
    workdir.mkdir(parents=True, exist_ok=True)
    log_path = workdir / "moto.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [f"{venv}/bin/moto_server", "-H", host, "-p", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=workdir,
            env=_child_env({}),
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    with socket.create_connection((host, port), timeout=1):
                        break
                except OSError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(
                            f"moto_server did not start: {log_path.read_text()[-2000:]}"
                        ) from None
                    time.sleep(0.2)
            yield {
                "AWS_ENDPOINT_URL_S3": f"http://{host}:{port}",
                "AWS_ACCESS_KEY_ID": "AKIATESTKEYID0000000",
                "AWS_SECRET_ACCESS_KEY": "s3-test-secret-abcdefghijklmnopqrstuvwxyz",
                "AWS_DEFAULT_REGION": "us-east-1",
            }
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)


EnvFn = Callable[[dict[str, str]], dict[str, str]]


class S3Client:
    """A boto3 S3 client of the server, run in the s3-server venv: ``c.put_object(Bucket=...)``
    runs that call there (bytes travel base64-encoded) and returns its JSON-able answer."""

    def __init__(
        self,
        env: dict[str, str],
        child_env: Callable[[dict[str, str]], dict[str, str]] | None = None,
    ) -> None:
        self.env = env
        self.child_env = child_env or _child_env

    def __getattr__(self, method: str) -> Any:
        def call(*args: Any, **kw: Any) -> Any:
            def enc(v: Any) -> Any:
                return {"__b64__": base64.b64encode(v).decode()} if isinstance(v, bytes) else v

            doc = json.dumps(
                {"m": method, "a": [enc(a) for a in args], "k": {k: enc(v) for k, v in kw.items()}}
            )
            code = (
                "import base64, json, sys, boto3\n"
                "from botocore.config import Config\n"
                "d = json.loads(sys.stdin.read())\n"
                "dec = lambda v: base64.b64decode(v['__b64__']) "
                "if isinstance(v, dict) and '__b64__' in v else v\n"
                "c = boto3.client('s3', config=Config(s3={'addressing_style': 'path'}))\n"
                "kw = {k: dec(v) for k, v in d['k'].items()}\n"
                "r = getattr(c, d['m'])(*map(dec, d['a']), **kw)\n"
                "isinstance(r, dict) and r.pop('ResponseMetadata', None)\n"
                "print(json.dumps(r, default=str))\n"
            )
            res = subprocess.run(
                [f"{s3_venv()}/bin/python", "-c", code],
                input=doc,
                capture_output=True,
                text=True,
                env=self.child_env(self.env),
                check=False,
                timeout=120,
            )
            if res.returncode != 0:
                raise RuntimeError(f"s3 {method} failed: {res.stderr[-2000:]}")
            return json.loads(res.stdout.strip().splitlines()[-1])

        return call

    def keys(self, bucket: str, prefix: str = "") -> dict[str, int]:
        """Every object under ``prefix``: key -> size."""
        out: dict[str, int] = {}
        token: str | None = None
        while True:
            kw: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix}
            if token:
                kw["ContinuationToken"] = token
            page = self.list_objects_v2(**kw)
            out.update({o["Key"]: int(o["Size"]) for o in page.get("Contents", [])})
            token = page.get("NextContinuationToken")
            if not token:
                return out
