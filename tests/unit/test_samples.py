"""Every sample validates against the models and survives a round trip unchanged."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from internlm_operator.api.v1alpha1 import KINDS, FineTune, ModelServe, parse

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
SINGLE = ["trainjob", "finetune", "evalrun", "modelserve", "agent"]


def docs(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((SAMPLES / f"{name}.yaml").read_text()) if d]


def subset(small: Any, big: Any) -> bool:
    """Every key/value of ``small`` appears in ``big`` (defaults may add keys)."""
    if isinstance(small, dict):
        return isinstance(big, dict) and all(
            k in big and subset(v, big[k]) for k, v in small.items()
        )
    if isinstance(small, list):
        return (
            isinstance(big, list)
            and len(small) == len(big)
            and all(subset(a, b) for a, b in zip(small, big, strict=True))
        )
    return bool(small == big)


def test_sample_files_exist() -> None:
    names = {p.stem for p in SAMPLES.glob("*.yaml")}
    assert {*SINGLE, "pipeline"} <= names


@pytest.mark.parametrize("name", SINGLE)
def test_single_sample_round_trip(name: str) -> None:
    (doc,) = docs(name)
    assert doc["kind"].lower() == name
    assert "namespace" not in doc["metadata"]
    model = parse(doc)
    wire = model.to_dict()
    assert subset(doc, wire), f"{name}: round trip lost or changed fields"
    assert parse(wire) == model


@pytest.mark.parametrize("name", SINGLE)
def test_single_sample_is_self_contained(name: str) -> None:
    text = (SAMPLES / f"{name}.yaml").read_text()
    for field in ("fromResource", "modelServe:", "evalRun:"):
        assert field not in text, f"{name}.yaml references another resource ({field})"


@pytest.mark.parametrize("name", [*SINGLE, "pipeline"])
def test_gpu_requests_fit_a_node(name: str) -> None:
    for doc in docs(name):
        gpus = doc["spec"].get("resources", {}).get("gpusPerNode", 0)
        assert gpus <= 8


def test_pipeline_chains_all_five_kinds() -> None:
    objs = [parse(d) for d in docs("pipeline")]
    assert [o.kind for o in objs] == list(KINDS)
    by_kind = {o.kind: o for o in objs}
    names = {o.kind: o.metadata["name"] for o in objs}
    ft = by_kind["FineTune"]
    assert isinstance(ft, FineTune)
    assert ft.spec.model.from_resource is not None
    assert ft.spec.model.from_resource.name == names["TrainJob"]
    er = by_kind["EvalRun"].spec
    assert er.target.model is not None and er.target.model.from_resource is not None  # type: ignore[union-attr]
    assert er.target.model.from_resource.name == names["FineTune"]  # type: ignore[union-attr]
    ms = by_kind["ModelServe"]
    assert isinstance(ms, ModelServe)
    assert ms.spec.model.from_resource is not None
    assert ms.spec.model.from_resource.name == names["FineTune"]
    assert ms.spec.model.from_resource.output == "merged"
    assert ms.spec.gate is not None and ms.spec.gate.eval_run == names["EvalRun"]
    assert by_kind["Agent"].spec.llm.model_serve == names["ModelServe"]  # type: ignore[union-attr]


def test_agent_sample_uses_external_url_and_secret() -> None:
    (doc,) = docs("agent")
    llm = doc["spec"]["llm"]
    assert llm["url"].startswith("https://")
    assert llm["apiKeySecret"]["name"]
