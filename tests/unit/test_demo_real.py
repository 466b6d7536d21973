"""The real demo (stdlib only, no operator import) must agree with the operator on facts it
copies: the UID the workload pods run as owns the hostPath volumes it prepares."""

from __future__ import annotations

import sys

from internlm_operator.builders.security import WORKLOAD_UID

from tests.conftest import REPO

sys.path.insert(0, str(REPO / "e2e"))
sys.path.insert(0, str(REPO / "e2e" / "cluster"))

import demo_real


def test_demo_prepares_volumes_for_the_pods_user() -> None:
    assert demo_real.UID == WORKLOAD_UID


def test_the_real_demo_runs_the_whole_chain_with_specs_the_operator_accepts() -> None:
    from internlm_operator.api.v1alpha1 import parse

    docs = [*demo_real.pipeline(), *demo_real.serving_pipeline()]
    assert [d["kind"] for d in docs] == ["TrainJob", "FineTune", "EvalRun", "ModelServe", "Agent"]
    for d in docs:
        parse({**d, "metadata": {**d["metadata"], "namespace": "demo"}})
    gate = next(d for d in docs if d["kind"] == "EvalRun")["metadata"]["name"]
    serve = next(d for d in docs if d["kind"] == "ModelServe")
    assert serve["spec"]["gate"]["evalRun"] == gate
    agent = next(d for d in docs if d["kind"] == "Agent")
    assert agent["spec"]["llm"]["modelServe"] == serve["metadata"]["name"]
    # every question goes to a resource the demo applies, by the name it serves under
    applied = {(d["kind"], d["metadata"]["name"]) for d in docs}
    assert {(k, n) for k, n, _, _ in demo_real.QUESTIONS} <= applied
    assert demo_real.QUESTIONS[0][2] == serve["spec"]["servedModelName"]


def test_the_chart_is_pointed_at_every_image_the_real_demo_imports() -> None:
    sets = demo_real.helm_sets()
    for name in demo_real.ALL_IMAGES:
        assert f"workloads.images.{name}={demo_real.image_ref(name)}" in sets
