"""Workload tests: each stage's entry point runs for real, in a virtualenv made from its
image's lock file (images/workloads/envs.sh; cached outside the repo), on tiny models built
here (helpers/make_tiny.py). The tests themselves run in the repo's venv and drive the stage
as a subprocess, exactly as a pod would: config.json in, termination message and progress out.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
HELPERS = Path(__file__).resolve().parent / "helpers"
WORKLOADS_SRC = REPO / "images" / "workloads" / "src"
# the finetune stage adds it by itself on CPU; kept for the tests that call xtuner directly
SHIMS = WORKLOADS_SRC / "internlm_workloads" / "cpu_shims"
CACHE = Path(os.environ.get("INTERNLM_CACHE", Path.home() / ".cache" / "internlm-operator"))
API = "workloads.internlm.io/v1"

_envs: dict[str, Path] = {}


def image_env(image: str) -> Path:
    """The venv for an image, created on first use (minutes cold, instant when cached)."""
    if image not in _envs:
        t0 = time.monotonic()
        res = subprocess.run(
            ["bash", str(REPO / "images" / "workloads" / "envs.sh"), image],
            capture_output=True,
            text=True,
            check=False,
        )
        if res.returncode != 0:
            pytest.fail(f"creating the {image} environment failed:\n{res.stderr[-3000:]}")
        _envs[image] = Path(res.stdout.split()[-1])
        print(f"[env] {image}: {_envs[image]} ({time.monotonic() - t0:.0f}s)")
    return _envs[image]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stage_config(stage: str, spec: dict[str, Any], out: Path, name: str = "t") -> dict[str, Any]:
    kind = {
        "pretrain": "TrainJob",
        "finetune": "FineTune",
        "eval": "EvalRun",
        "serve": "ModelServe",
        "agent": "Agent",
    }[stage]
    return {
        "apiVersion": API,
        "stage": stage,
        "resource": {"kind": kind, "namespace": "test", "name": name, "uid": "0"},
        "outputDir": str(out),
        "spec": spec,
    }


@dataclass
class StageRun:
    workdir: Path
    env: dict[str, str]
    argv: list[str]
    proc: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.workdir / "stage.log"

    @property
    def progress_path(self) -> Path:
        return Path(self.env["INTERNLM_PROGRESS_FILE"])

    def start(self) -> StageRun:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            self.argv,
            env=self.env,
            cwd=self.workdir,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return self

    def wait(self, timeout: float) -> int:
        assert self.proc is not None
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, 9)
            self.proc.wait()
            pytest.fail(f"stage did not finish in {timeout}s; log tail:\n{self.log()[-4000:]}")

    def run(self, timeout: float = 900) -> int:
        return self.start().wait(timeout)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def termination(self) -> dict[str, Any]:
        p = Path(self.env["INTERNLM_TERMINATION_LOG"])
        assert p.exists(), f"no termination message; log tail:\n{self.log()[-4000:]}"
        text = p.read_text()
        assert "\n" not in text.strip() and len(text.encode()) <= 4096
        result: dict[str, Any] = json.loads(text)
        return result

    def progress(self) -> dict[str, Any]:
        try:
            data: dict[str, Any] = json.loads(self.progress_path.read_text())
            return data
        except (OSError, ValueError):
            return {}


def make_stage(
    image: str,
    stage: str,
    spec: dict[str, Any],
    workdir: Path,
    env: dict[str, str] | None = None,
    shims: bool = False,
    raw_config: dict[str, Any] | None = None,
) -> StageRun:
    """Write config.json into workdir and prepare `python -m internlm_workloads <stage>` in the
    image's environment, with the contract's environment variables."""
    venv = image_env(image)
    workdir.mkdir(parents=True, exist_ok=True)
    out = workdir / "output"
    cfg = raw_config if raw_config is not None else stage_config(stage, spec, out)
    (workdir / "config.json").write_text(json.dumps(cfg, indent=1))
    path = [str(WORKLOADS_SRC)] + ([str(SHIMS)] if shims else [])
    e = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PYTHON", "VIRTUAL_ENV", "INTERNLM_"))
    }
    e.update(
        PATH=f"{venv}/bin:{e.get('PATH', '/usr/bin:/bin')}",
        VIRTUAL_ENV=str(venv),
        PYTHONPATH=os.pathsep.join(path),
        PYTHONUNBUFFERED="1",
        INTERNLM_CONFIG=str(workdir / "config.json"),
        INTERNLM_STAGE=stage,
        INTERNLM_OUTPUT_DIR=str(out),
        INTERNLM_PROGRESS_FILE=str(workdir / "progress.json"),
        INTERNLM_PROGRESS_PORT=str(free_port()),
        INTERNLM_TERMINATION_LOG=str(workdir / "termination-log"),
        INTERNLM_RESOURCE=f"test/{stage}",
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        HF_HOME=str(workdir / "hf-home"),
        TORCH_EXTENSIONS_DIR=str(CACHE / "torch_extensions"),
        DS_ACCELERATOR="cpu",
        CUDA_VISIBLE_DEVICES="",
        OMP_NUM_THREADS="1",
        TOKENIZERS_PARALLELISM="false",
    )
    e.update(env or {})
    argv = [f"{venv}/bin/python", "-m", "internlm_workloads", stage]
    return StageRun(workdir=workdir, env=e, argv=argv)


def py(image: str, code: str, timeout: float = 300, **kw: Any) -> str:
    """Run a snippet in an image's environment; return stdout (fails the test on error)."""
    venv = image_env(image)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", CUDA_VISIBLE_DEVICES="")
    env.update(kw.pop("env", {}))
    res = subprocess.run(
        [f"{venv}/bin/python", "-c", code],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
        **kw,
    )
    if res.returncode != 0:
        pytest.fail(f"snippet failed in {image} env:\n{res.stdout[-2000:]}\n{res.stderr[-4000:]}")
    return res.stdout


def wait_until(what: str, check: Callable[[], Any], timeout: float, interval: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout}s waiting for {what}")


@pytest.fixture(scope="session")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tokenizer, random tiny Llama model, corpus and datasets (built with the oldest
    transformers of the images, 4.48 in finetune, so every image's transformers can load it)."""
    out = tmp_path_factory.mktemp("tiny")
    venv = image_env("finetune")
    res = subprocess.run(
        [f"{venv}/bin/python", str(HELPERS / "make_tiny.py"), str(out)],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": ""},
    )
    if res.returncode != 0:
        pytest.fail(f"make_tiny failed:\n{res.stderr[-4000:]}")
    return out


def operator_rendered(
    doc: dict[str, Any],
    paths: dict[str, str],
    workdir: Path,
    *,
    extra: dict[str, Any] | None = None,
    gpus: int = 0,
) -> dict[str, Any]:
    """Render a resource (a manifest dict) through the operator's own runtime, as its builders
    do, with ``paths`` as the resolved inputs: the tool configs are written where the
    ConfigMap would be mounted (``workdir/etc-internlm``) and config.json, pointing at them,
    is returned for :func:`make_stage` (``raw_config``). What is tested is what ships."""
    from internlm_operator.api.v1alpha1 import parse
    from internlm_operator.runtimes import CONFIG_DIR, RenderContext, for_resource

    spec = parse(doc).spec
    ctx = RenderContext(
        kind=doc["kind"],
        namespace="test",
        name=doc["metadata"]["name"],
        uid="0",
        spec=spec,
        paths=paths,
        output_dir=str(workdir / "output"),
        gpus_per_node=gpus,
        extra=extra or {},
    )
    rendered = for_resource(doc["kind"], spec).render(ctx)
    mount = workdir / "etc-internlm"
    mount.mkdir(parents=True, exist_ok=True)
    for name, text in rendered.files.items():
        (mount / name).write_text(text)
    cfg: dict[str, Any] = json.loads(rendered.files["config.json"])
    for key, value in cfg["spec"].items():
        if key.endswith("ConfigPath") and str(value).startswith(CONFIG_DIR + "/"):
            cfg["spec"][key] = str(mount / value[len(CONFIG_DIR) + 1 :])
    return cfg
