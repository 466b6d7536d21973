"""eval: OpenCompass 0.5.4, offline, on the tiny model and tiny custom datasets."""

from __future__ import annotations

import json
import os
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import HELPERS, WORKLOADS_SRC, free_port, image_env, make_stage, py, wait_until

pytestmark = pytest.mark.workload


def eval_spec(tiny: Path, custom: list[dict[str, str]], **over: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "target": {"type": "weights", "path": str(tiny / "model")},
        "datasets": [],
        "customDatasets": custom,
        "generation": {"maxOutLen": 12, "batchSize": 6, "temperature": 0.0},
        "thresholds": [],
        "dataDir": None,
    }
    spec.update(over)
    return spec


@pytest.mark.timeout(900)
def test_eval_weights_scores_parsed_and_reported(tiny: Path, tmp_path: Path) -> None:
    datasets = [
        {"name": "tiny_qa", "path": str(tiny / "tiny_qa.jsonl"), "format": "qa"},
        {"name": "tiny_mcq", "path": str(tiny / "tiny_mcq.jsonl"), "format": "mcq"},
    ]
    thresholds = [{"dataset": "tiny_mcq", "metric": "accuracy", "min": 0.0}]
    run = make_stage("eval", "eval", eval_spec(tiny, datasets, thresholds=thresholds), tmp_path)
    rc = run.run(timeout=800)
    assert rc == 0, run.log()[-4000:]
    result = run.termination()
    assert result["ok"] is True
    got = {(s["dataset"], s["metric"]) for s in result["scores"]}
    assert got == {("tiny_qa", "accuracy"), ("tiny_mcq", "accuracy")}
    assert all(0.0 <= s["value"] <= 100.0 for s in result["scores"])
    assert json.loads((tmp_path / "output" / "scores.json").read_text()) == result["scores"]
    # OpenCompass really ran inference: one prediction per sample
    preds = list((tmp_path / "output" / "results").glob("*/predictions/target/tiny_qa.json"))
    assert preds and len(json.loads(preds[0].read_text())) == 6


@pytest.mark.timeout(900)
def test_eval_failing_task_fails_the_stage(tiny: Path, tmp_path: Path) -> None:
    """OpenCompass exits 0 when a task fails; the stage must not."""
    import shutil

    broken = tmp_path / "broken-model"
    shutil.copytree(tiny / "model", broken)
    (broken / "model.safetensors").write_bytes(b"\x00" * 64)  # corrupted weights
    datasets = [{"name": "tiny_qa", "path": str(tiny / "tiny_qa.jsonl"), "format": "qa"}]
    spec = eval_spec(tiny, datasets, target={"type": "weights", "path": str(broken)})
    run = make_stage("eval", "eval", spec, tmp_path / "run")
    rc = run.run(timeout=800)
    result = run.termination()
    assert rc == 1, run.log()[-4000:]
    assert result["ok"] is False
    assert "OpenCompass produced no score for tiny_qa" in result["reason"], result
    assert "opencompass exited" not in result["reason"].lower()


@pytest.mark.parametrize(
    ("over", "reason"),
    [
        ({"target": {"type": "weights"}}, "spec.target.path: required for a weights target"),
        ({"target": {"type": "endpoint", "url": "http://x/v1"}}, "url and model are required"),
        ({"customDatasets": [], "datasets": []}, "no datasets"),
        ({"target": {"type": "weights", "path": "/nope"}}, "target.path /nope does not exist"),
        ({"datasets": ["no_such_dataset_gen"]}, "'no_such_dataset_gen' is not an OpenCompass"),
    ],
)
def test_eval_bad_config_fails_with_reason(
    tiny: Path, tmp_path: Path, over: dict[str, Any], reason: str
) -> None:
    datasets = [{"name": "tiny_qa", "path": str(tiny / "tiny_qa.jsonl"), "format": "qa"}]
    run = make_stage("eval", "eval", eval_spec(tiny, datasets, **over), tmp_path)
    rc = run.run(timeout=300)
    result = run.termination()
    assert rc == 1 and result["ok"] is False and reason in result["reason"], result


@pytest.fixture
def endpoint(tiny: Path, tmp_path: Path) -> Iterator[str]:
    """The tiny model behind a real OpenAI-compatible server (transformers generate)."""
    port = free_port()
    proc = subprocess.Popen(
        [
            str(image_env("pretrain") / "bin" / "python"),
            str(HELPERS / "openai_server.py"),
            "--model",
            str(tiny / "model"),
            "--port",
            str(port),
            "--log",
            str(tmp_path / "requests.jsonl"),
        ],
        env={**os.environ, "CUDA_VISIBLE_DEVICES": "", "HF_HUB_OFFLINE": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/v1"

    def up() -> bool:
        try:
            with urllib.request.urlopen(f"{url}/models", timeout=2) as r:
                return bool(r.status == 200)
        except OSError:
            return False

    wait_until("the OpenAI-compatible server", up, timeout=120)
    yield url
    proc.terminate()
    proc.wait(timeout=30)


@pytest.mark.timeout(600)
def test_eval_against_openai_compatible_endpoint(tiny: Path, tmp_path: Path, endpoint: str) -> None:
    datasets = [{"name": "tiny_mcq", "path": str(tiny / "tiny_mcq.jsonl"), "format": "mcq"}]
    target = {
        "type": "endpoint",
        "url": endpoint,
        "model": "internlm2-tiny",
        "tokenizerPath": str(tiny / "tokenizer"),
    }
    run = make_stage("eval", "eval", eval_spec(tiny, datasets, target=target), tmp_path / "r")
    rc = run.run(timeout=500)
    assert rc == 0, run.log()[-4000:]
    result = run.termination()
    assert result["ok"] is True
    assert [(s["dataset"], s["metric"]) for s in result["scores"]] == [("tiny_mcq", "accuracy")]
    sent = (tmp_path / "requests.jsonl").read_text().splitlines()
    assert len(sent) == 6  # one chat completion per sample, answered by the model
    assert "OPENAI_API_KEY" not in (tmp_path / "r" / "output" / "opencompass_config.py").read_text()


def test_eval_named_opencompass_datasets_render(tmp_path: Path) -> None:
    """Named datasets (OpenCompass config names) are imported with read_base in the rendered
    config; mmengine loads it (running them would need the datasets, which are not here)."""
    out = py(
        "eval",
        "import json\n"
        "from pathlib import Path\n"
        "from mmengine.config import Config\n"
        "from internlm_workloads.config import parse_config\n"
        "from internlm_workloads.stages.eval import render_config\n"
        "cfg = parse_config({'apiVersion': 'workloads.internlm.io/v1', 'stage': 'eval', 'spec': {\n"
        "    'target': {'type': 'weights', 'path': '/m'}, 'datasets': ['gsm8k_gen'],\n"
        "    'customDatasets': [{'name': 'mine', 'path': '/d/mine.jsonl', 'format': 'qa'}]}})\n"
        f"p = Path({str(tmp_path / 'oc.py')!r})\n"
        "render_config(cfg.spec, p)\n"
        "c = Config.fromfile(str(p), format_python_code=False)\n"
        "print(json.dumps([d.get('abbr') for d in c['datasets']]))\n",
        env={"PYTHONPATH": str(WORKLOADS_SRC)},
    )
    assert json.loads(out.strip().splitlines()[-1]) == ["gsm8k", "mine"]
