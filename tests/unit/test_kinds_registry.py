"""The one kind registry (reconcilers/kinds.py) covers the API's kinds and nothing else."""

from __future__ import annotations

from internlm_operator.api.v1alpha1 import KINDS
from internlm_operator.config import STAGES
from internlm_operator.reconcilers import RECONCILERS
from internlm_operator.reconcilers.kinds import DEPENDENTS, REGISTRY


def test_every_api_kind_is_registered_once_with_its_pass() -> None:
    assert set(REGISTRY) == set(KINDS) == set(RECONCILERS)
    for kind, r in REGISTRY.items():
        assert RECONCILERS[kind].__name__ == f"reconcile_{kind.lower()}"
        assert r.plural == KINDS[kind].plural


def test_stages_are_image_stages_and_dependents_are_kinds() -> None:
    assert {r.stage for r in REGISTRY.values()} == set(STAGES)
    for upstream, kinds in DEPENDENTS.items():
        assert upstream in REGISTRY and set(kinds) <= set(REGISTRY)
    assert DEPENDENTS["ModelServe"] == ("Agent",)
