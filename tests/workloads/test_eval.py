"""eval: OpenCompass 0.5.4, offline, on the tiny model and tiny custom datasets. The
OpenCompass config is always the operator's (internlm_operator.runtimes.opencompass, rendered
here through its runtime as the builders do), so what is tested is what ships."""

from __future__ import annotations

import json
import os
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from .conftest import (
    HELPERS,
    REPO,
    WORKLOADS_SRC,
    free_port,
    image_env,
    make_stage,
    operator_rendered,
    py,
    wait_until,
)

pytestmark = pytest.mark.workload


def er_config(
    workdir: Path,
    custom: list[dict[str, str]],
    *,
    model: Path | None = None,
    endpoint: tuple[str, str] | None = None,
    tokenizer: Path | None = None,
    **over: Any,
) -> dict[str, Any]:
    """config.json of the operator's rendering of an EvalRun (the sample's, sized for a CPU)
    against local weights or an endpoint, over custom datasets ``[{"name","path","format"}]``;
    its opencompass_config.py is written next to it."""
    doc: dict[str, Any] = yaml.safe_load((REPO / "samples" / "evalrun.yaml").read_text())
    spec = doc["spec"]
    spec.pop("data", None)
    spec.update(
        datasets=None,
        customDatasets=[
            {"name": c["name"], "format": c["format"], "pvc": {"claimName": "evals", "path": "x"}}
            for c in custom
        ],
        generation={"maxOutLen": 12, "batchSize": 6, "temperature": 0},
        thresholds=None,
    )
    spec.update(over)
    paths = {f"custom:{c['name']}": c["path"] for c in custom}
    extra: dict[str, Any] = {}
    if endpoint is not None:
        spec["target"] = {"endpoint": {"url": endpoint[0], "model": endpoint[1]}}
        extra = {"endpointUrl": endpoint[0], "endpointModel": endpoint[1]}
    else:
        assert model is not None
        paths["model"] = str(model)
    if tokenizer is not None:
        paths["tokenizer"] = str(tokenizer)
    doc["spec"] = {k: v for k, v in spec.items() if v is not None}
    return operator_rendered(doc, paths, workdir, extra=extra)


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
    cfg = er_config(tmp_path, datasets, model=tiny / "model", thresholds=thresholds)
    run = make_stage("eval", "eval", {}, tmp_path, raw_config=cfg)
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
    # the operator's gate on this real summary, thresholds named the way users write them
    from internlm_operator.status import results

    listed = ["tiny_qa", "tiny_mcq"]
    th = [
        {"dataset": "Tiny-MCQ", "metric": "accuracy", "min": 0.0},  # case and '-'
        {"dataset": "tiny", "metric": "accuracy", "min": 0.0},  # mean of tiny_qa, tiny_mcq
    ]
    rows, passed, missed = results.scores(result, th, listed)
    assert (passed, missed) == (True, []), rows
    mean = next(r for r in rows if r["dataset"] == "tiny")
    assert sorted(mean["averagedOver"]) == sorted(listed)
    assert mean["value"] == pytest.approx(sum(s["value"] for s in result["scores"]) / 2, abs=1e-4)
    th = [{"dataset": "tiny_mcq", "metric": "accuracy", "min": 101.0}, {"dataset": "x", "min": 0}]
    _, passed, missed = results.scores(result, th, listed)
    assert passed is False
    assert missed[0].startswith("tiny_mcq accuracy ") and missed[0].endswith(" < 101")
    assert missed[1] == "no score matches x; the summary has: tiny_qa, tiny_mcq"


@pytest.mark.timeout(900)
def test_eval_failing_task_fails_the_stage(tiny: Path, tmp_path: Path) -> None:
    """OpenCompass exits 0 when a task fails; the stage must not."""
    import shutil

    broken = tmp_path / "broken-model"
    shutil.copytree(tiny / "model", broken)
    (broken / "model.safetensors").write_bytes(b"\x00" * 64)  # corrupted weights
    datasets = [{"name": "tiny_qa", "path": str(tiny / "tiny_qa.jsonl"), "format": "qa"}]
    cfg = er_config(tmp_path / "run", datasets, model=broken)
    run = make_stage("eval", "eval", {}, tmp_path / "run", raw_config=cfg)
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
        ({}, "opencompassConfigPath is not set"),
    ],
)
def test_eval_bad_config_json_fails_with_reason(
    tiny: Path, tmp_path: Path, over: dict[str, Any], reason: str
) -> None:
    datasets = [{"name": "tiny_qa", "path": str(tiny / "tiny_qa.jsonl"), "format": "qa"}]
    run = make_stage("eval", "eval", eval_spec(tiny, datasets, **over), tmp_path)
    rc = run.run(timeout=300)
    result = run.termination()
    assert rc == 1 and result["ok"] is False and reason in result["reason"], result


def test_eval_missing_weights_fail_with_reason(tiny: Path, tmp_path: Path) -> None:
    datasets = [{"name": "tiny_qa", "path": str(tiny / "tiny_qa.jsonl"), "format": "qa"}]
    cfg = er_config(tmp_path, datasets, model=Path("/nope"))
    run = make_stage("eval", "eval", {}, tmp_path, raw_config=cfg)
    rc = run.run(timeout=300)
    result = run.termination()
    assert rc == 1 and "target.path /nope does not exist" in result["reason"], result


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
@pytest.mark.parametrize("with_tokenizer", [True, False], ids=["tokenizer", "no-tokenizer"])
def test_eval_against_openai_compatible_endpoint(
    tiny: Path, tmp_path: Path, endpoint: str, with_tokenizer: bool
) -> None:
    """With a local tokenizer (OpenAISDK counts tokens with it) and without one (the estimating
    OpenAISDK: OpenCompass' own fallback, tiktoken, would download)."""
    datasets = [{"name": "tiny_mcq", "path": str(tiny / "tiny_mcq.jsonl"), "format": "mcq"}]
    cfg = er_config(
        tmp_path / "r",
        datasets,
        endpoint=(endpoint, "internlm2-tiny"),
        tokenizer=tiny / "tokenizer" if with_tokenizer else None,
    )
    oc = Path(cfg["spec"]["opencompassConfigPath"]).read_text()
    assert ("OpenAISDKEstimatedTokens" in oc) is not with_tokenizer
    run = make_stage("eval", "eval", {}, tmp_path / "r", raw_config=cfg)
    rc = run.run(timeout=500)
    assert rc == 0, run.log()[-4000:]
    result = run.termination()
    assert result["ok"] is True
    assert [(s["dataset"], s["metric"]) for s in result["scores"]] == [("tiny_mcq", "accuracy")]
    sent = (tmp_path / "requests.jsonl").read_text().splitlines()
    assert len(sent) == 6  # one chat completion per sample, answered by the model
    assert "OPENAI_API_KEY" not in oc and "key='ENV'" in oc


def test_summary_names_the_unit_tests_use_are_opencompass_own(tmp_path: Path) -> None:
    """tests/unit/data/opencompass_summary_names.json is what this OpenCompass names the rows
    of those configs (and its mmlu summary group): regenerate it with the helper on a change."""
    from internlm_operator.runtimes.opencompass import dataset_module

    fixture = json.loads((REPO / "tests/unit/data/opencompass_summary_names.json").read_text())
    configs = {n: dataset_module(n) for n in fixture["abbrs"]}
    out = subprocess.run(
        [
            str(image_env("eval") / "bin" / "python"),
            str(HELPERS / "opencompass_summary_names.py"),
            json.dumps(configs),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
        cwd=tmp_path,
    ).stdout
    assert json.loads(out) == fixture


def test_eval_named_opencompass_datasets_render(tmp_path: Path) -> None:
    """Named datasets (OpenCompass config names) are imported from their real modules in the
    operator's config (IFEval_gen defines ifeval_datasets: no guessing); mmengine loads it
    (running them would need the datasets, which are not here)."""
    custom = [{"name": "mine", "path": "/d/mine.jsonl", "format": "qa"}]
    cfg = er_config(
        tmp_path, custom, model=Path("/m"), datasets=["gsm8k_gen", "ARC_c_gen", "IFEval_gen"]
    )
    out = py(
        "eval",
        "import json\n"
        "from mmengine.config import Config\n"
        f"c = Config.fromfile({cfg['spec']['opencompassConfigPath']!r}, format_python_code=False)\n"
        "print(json.dumps([[d.get('abbr') for d in c['datasets']], c['models'][0]['abbr']]))\n",
        env={"PYTHONPATH": str(WORKLOADS_SRC)},
    )
    assert json.loads(out.strip().splitlines()[-1]) == [
        ["gsm8k", "ARC-c", "IFEval", "mine"],
        "target",
    ]
