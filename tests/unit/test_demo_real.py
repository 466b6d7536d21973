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
