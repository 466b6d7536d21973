"""serve, engine transformers: the real `transformers serve` (transformers 5.24 from the serve
lock) on CPU, started by the stage from the config.json the operator renders for a ModelServe
with `engine: transformers`, on the tiny random model; answered through the official openai
client: /v1/models, /v1/chat/completions with and without streaming, the served name enforced,
SIGTERM forwarded and a clean stop."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path
from typing import Any

import openai
import pytest
from internlm_operator.api.v1alpha1.modelserve import ModelServeSpec
from internlm_operator.builders import modelserve as bm
from internlm_operator.builders.common import Owner

from .conftest import free_port, make_stage, wait_until

pytestmark = pytest.mark.workload

NAME = "internlm2-tiny"


def operator_config(model_dir: Path, port: int, served: str | None = None) -> dict[str, Any]:
    """The config.json the operator renders, pointed at the tiny model and at loopback."""
    spec = ModelServeSpec.model_validate(
        {
            "model": {"pvc": {"claimName": "models", "path": "tiny"}},
            "engine": "transformers",
            "port": port,
            "resources": {"gpusPerNode": 0},
            **({"servedModelName": served} if served else {}),
        }
    )
    owner = Owner("internlm.io/v1alpha1", "ModelServe", "test", NAME, "uid-1", 1, {})
    children = bm.build(bm.ServeInputs(owner=owner, spec=spec, image="serve:cpu"))
    cfg: dict[str, Any] = json.loads(children.config_map["data"]["config.json"])
    cfg.pop("outputDir", None)
    cfg["spec"]["modelPath"] = str(model_dir)
    args = cfg["spec"]["args"]
    args[args.index("--host") + 1] = "127.0.0.1"  # the test binds loopback only
    return cfg


@pytest.mark.timeout(900)
def test_transformers_serve_answers_openai_client_on_cpu(tiny: Path, tmp_path: Path) -> None:
    port = free_port()
    cfg = operator_config(tiny / "model", port)
    assert cfg["spec"]["engine"] == "transformers" and cfg["spec"]["servedModelName"] == NAME
    run = make_stage("serve", "serve", {}, tmp_path, raw_config=cfg).start()
    try:
        wait_until("readiness", lambda: run.progress().get("ready"), timeout=600)
        startup = run.progress()["startupSeconds"]
        assert run.progress()["port"] == port

        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused")
        models = client.models.list()
        assert [m.id for m in models.data] == [NAME]

        reply = client.chat.completions.create(
            model=NAME, messages=[{"role": "user", "content": "hello"}], max_tokens=8
        )
        assert reply.model == NAME
        assert reply.choices[0].message.role == "assistant"
        assert isinstance(reply.choices[0].message.content, str)
        assert reply.usage is not None and 1 <= reply.usage.completion_tokens <= 8

        chunks = list(
            client.chat.completions.create(
                model=NAME,
                messages=[{"role": "user", "content": "alice likes"}],
                max_tokens=8,
                stream=True,
            )
        )
        assert len(chunks) >= 2, chunks
        assert any(c.choices and c.choices[0].delta.content for c in chunks), chunks
        assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] in ("length", "stop")

        # the server is pinned to the served name: another model name is refused, not served
        with pytest.raises(openai.BadRequestError) as refused:
            client.chat.completions.create(
                model="other", messages=[{"role": "user", "content": "hi"}], max_tokens=2
            )
        assert "pinned to 'internlm2-tiny'" in refused.value.response.json()["detail"]

        # figures for docs/serving.md: generation speed on this machine's CPU
        t0 = time.monotonic()
        long = client.chat.completions.create(
            model=NAME, messages=[{"role": "user", "content": "bob sees"}], max_tokens=64
        )
        elapsed = time.monotonic() - t0
        assert long.usage is not None
        tokens = long.usage.completion_tokens
        print(f"[serve-transformers] startup {startup}s, {tokens} tokens in {elapsed:.2f}s")
    finally:
        assert run.proc is not None
        run.proc.send_signal(signal.SIGTERM)  # also stops the server when a check failed
    assert run.wait(timeout=120) == 0
    result = run.termination()
    assert result["ok"] is True and result["stopped"] == "SIGTERM", result
    assert result["outputs"]["endpoint"] == f"http://0.0.0.0:{port}/v1"
    assert "transformers serve ready" in run.log()


@pytest.mark.parametrize(
    ("extra", "reason"),
    [
        (["--no-such-flag"], "No such option: --no-such-flag"),
        (["--dtype"], "Option '--dtype' requires an argument"),
    ],
)
def test_transformers_serve_bad_args_rejected(
    tiny: Path, tmp_path: Path, extra: list[str], reason: str
) -> None:
    cfg = operator_config(tiny / "model", free_port())
    cfg["spec"]["args"] += extra
    run = make_stage("serve", "serve", {}, tmp_path, raw_config=cfg)
    rc = run.run(timeout=300)
    result = run.termination()
    assert rc == 1 and result["ok"] is False, result
    assert result["reason"].startswith("transformers serve rejects the arguments: ")
    assert reason in result["reason"]


def test_transformers_serve_model_must_be_a_directory(tiny: Path, tmp_path: Path) -> None:
    cfg = operator_config(tiny / "model" / "config.json", free_port())
    run = make_stage("serve", "serve", {}, tmp_path, raw_config=cfg)
    rc = run.run(timeout=300)
    result = run.termination()
    assert rc == 1 and "is not a directory" in result["reason"], result
