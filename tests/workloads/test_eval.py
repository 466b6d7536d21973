"""eval: OpenCompass 0.5.4, offline, on the tiny model and tiny custom datasets."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from .conftest import make_stage

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
