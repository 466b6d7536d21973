"""serve: LMDeploy 0.18 is CUDA-only. Here: the argument list is checked by LMDeploy's real CLI
parser, readiness is detected, SIGTERM is forwarded and the stop is clean, a server that dies is
reported — with a stand-in launcher (helpers/lmdeploy_standin.py: LMDeploy's parser + the tiny
model served by transformers). The real api_server runs in the `gpu` test."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from .conftest import HELPERS, free_port, image_env, make_stage, wait_until

pytestmark = pytest.mark.workload

ARGS = [
    "--backend",
    "pytorch",
    "--tp",
    "1",
    "--model-name",
    "internlm2-tiny",
    "--session-len",
    "2048",
    "--log-level",
    "INFO",
]


def standin_env(tmp_path: Path) -> dict[str, str]:
    py = image_env("serve") / "bin" / "python"
    return {
        "INTERNLM_LMDEPLOY_CMD": f"{py} {HELPERS / 'lmdeploy_standin.py'}",
        "STANDIN_ARGS_FILE": str(tmp_path / "standin-args"),
        "STANDIN_SIGNAL_FILE": str(tmp_path / "standin-signal"),
    }


def chat(port: int) -> dict[str, Any]:
    body = json.dumps(
        {
            "model": "internlm2-tiny",
            "max_tokens": 4,
            "messages": [{"role": "user", "content": "hello"}],
        }
    ).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/chat/completions", data=body)
    with urllib.request.urlopen(req, timeout=60) as r:
        data: dict[str, Any] = json.loads(r.read())
        return data


@pytest.mark.timeout(600)
def test_serve_args_ready_and_sigterm_forwarded(tiny: Path, tmp_path: Path) -> None:
    port = free_port()
    spec = {"modelPath": str(tiny / "model"), "args": ARGS, "port": port}
    run = make_stage("serve", "serve", spec, tmp_path, env=standin_env(tmp_path)).start()
    wait_until("readiness", lambda: run.progress().get("ready"), timeout=300)
    assert run.progress()["port"] == port
    parsed = json.loads((tmp_path / "standin-args").read_text())
    # what LMDeploy's parser made of the operator's list plus the stage's additions
    assert parsed["model_path"] == str(tiny / "model")
    assert parsed["server_port"] == port and parsed["server_name"] == "0.0.0.0"
    assert parsed["backend"] == "pytorch" and parsed["tp"] == 1
    assert parsed["model_name"] == "internlm2-tiny" and parsed["session_len"] == 2048
    assert chat(port)["choices"][0]["message"]["role"] == "assistant"
    assert run.proc is not None
    run.proc.send_signal(signal.SIGTERM)
    assert run.wait(timeout=60) == 0
    assert (tmp_path / "standin-signal").read_text() == "SIGTERM"  # forwarded to the server
    result = run.termination()
    assert result["ok"] is True and result["stopped"] == "SIGTERM"
    assert result["outputs"]["endpoint"] == f"http://0.0.0.0:{port}/v1"


@pytest.mark.timeout(600)
def test_serve_server_dying_before_ready_fails(tiny: Path, tmp_path: Path) -> None:
    empty = tmp_path / "not-a-model"
    empty.mkdir()
    spec = {"modelPath": str(empty), "args": ARGS, "port": free_port()}
    run = make_stage("serve", "serve", spec, tmp_path / "run", env=standin_env(tmp_path))
    rc = run.run(timeout=300)
    result = run.termination()
    assert rc == 1 and result["ok"] is False, result
    assert "lmdeploy api_server exited before it was ready with code 1" in result["reason"]


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["--no-such-flag"], "unrecognized arguments: --no-such-flag"),
        (["--backend", "tensorflow"], "invalid choice: 'tensorflow'"),
        (["--tp", "two"], "invalid int value: 'two'"),
    ],
)
def test_serve_bad_args_rejected_by_lmdeploy(
    tiny: Path, tmp_path: Path, args: list[str], reason: str
) -> None:
    spec = {"modelPath": str(tiny / "model"), "args": args, "port": free_port()}
    run = make_stage("serve", "serve", spec, tmp_path, env=standin_env(tmp_path))
    rc = run.run(timeout=300)
    result = run.termination()
    assert rc == 1 and result["ok"] is False, result
    assert result["reason"].startswith("lmdeploy rejects the arguments: ")
    assert reason in result["reason"]


def _gpu() -> bool:
    smi = shutil.which("nvidia-smi")
    return bool(smi) and subprocess.run([smi, "-L"], capture_output=True).returncode == 0


@pytest.mark.gpu
@pytest.mark.timeout(900)
def test_serve_real_lmdeploy_api_server_on_gpu(tiny: Path, tmp_path: Path) -> None:
    if not _gpu():
        pytest.skip("no NVIDIA GPU here: LMDeploy api_server inference is CUDA-only")
    port = free_port()
    spec = {"modelPath": str(tiny / "model"), "args": ARGS, "port": port}
    env = {"CUDA_VISIBLE_DEVICES": "0", "DS_ACCELERATOR": ""}
    run = make_stage("serve", "serve", spec, tmp_path, env=env).start()
    wait_until("readiness", lambda: run.progress().get("ready"), timeout=600)
    assert chat(port)["choices"][0]["message"]["role"] == "assistant"
    assert run.proc is not None
    run.proc.send_signal(signal.SIGTERM)
    assert run.wait(timeout=120) == 0
    assert run.termination()["ok"] is True
