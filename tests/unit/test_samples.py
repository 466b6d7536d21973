"""Every sample validates against the models and survives a round trip unchanged."""

from __future__ import annotations

import importlib.util
import re
import sys
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


def _local_nodes() -> list[dict[str, Any]]:
    """The simulated nodes of the local cluster (e2e/cluster/localcluster.py)."""
    path = SAMPLES.parent / "e2e" / "cluster" / "localcluster.py"
    spec = importlib.util.spec_from_file_location("_localcluster_nodes", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # its dataclasses look their module up
    spec.loader.exec_module(mod)
    nodes: list[dict[str, Any]] = mod.node_manifests()
    return nodes


_SUFFIX = {"m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18}
_SUFFIX.update({"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60})


def _quantity(q: int | str) -> float:
    m = re.fullmatch(r"([0-9.]+)([a-zA-Z]*)", str(q))
    assert m, q
    return float(m.group(1)) * _SUFFIX.get(m.group(2), 1)


def _schedulable(pod_needs: dict[str, Any], node: dict[str, Any]) -> bool:
    labels = node["metadata"]["labels"]
    if any(labels.get(k) != v for k, v in pod_needs["nodeSelector"].items()):
        return False
    if node["spec"].get("taints"):
        return False  # the local nodes have none; keep the check honest if that changes
    free = node["status"]["allocatable"]
    return all(
        _quantity(free.get(r, 0)) >= _quantity(amount)
        for r, amount in pod_needs["requests"].items()
    )


@pytest.mark.parametrize("name", [*SINGLE, "pipeline"])
def test_samples_fit_the_local_cluster_as_written(name: str) -> None:
    """Every sample schedules on the local cluster's simulated nodes without edits: GPU product,
    node selector, GPUs, cpu and memory per pod (tests elsewhere apply the samples as-is)."""
    nodes = _local_nodes()
    for doc in docs(name):
        model = parse(doc)
        res = model.spec.resources
        requests: dict[str, Any] = {}
        if getattr(res, "gpus_per_node", 0):
            requests["nvidia.com/gpu"] = res.gpus_per_node
        for r in ("cpu", "memory"):
            if getattr(res, r, None) is not None:
                requests[r] = getattr(res, r)
        scheduling = getattr(model.spec, "scheduling", None)
        selector = dict((scheduling.node_selector if scheduling is not None else None) or {})
        if getattr(res, "gpu_product", None):
            selector["nvidia.com/gpu.product"] = res.gpu_product
        needs = {"nodeSelector": selector, "requests": requests}
        fits = [n["metadata"]["name"] for n in nodes if _schedulable(needs, n)]
        pods = int(getattr(model.spec, "nodes", 1) or 1)
        assert len(fits) >= pods, f"{name}: {doc['kind']} {needs} fits {fits}, needs {pods} nodes"


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
