"""Operator-wide settings: kopf settings per namespace mode, configuration from env and flags."""

from __future__ import annotations

import kopf
import pytest
from internlm_operator.operator import configure, exact_namespaces


@pytest.mark.parametrize(
    "namespaces,disabled",
    [
        ((), False),  # cluster-wide: kopf watches across namespaces, no namespace scan needed
        (("team-a",), True),
        (("team-a", "team-b"), True),
        (("team-*",), False),  # globs need the namespace list (and its RBAC)
        (("team-a", "it-?"), False),
        (("team-[ab]",), False),
        (("!kube-system",), False),
        (("a,b",), False),
    ],
)
def test_scanning_is_off_only_for_exact_namespace_names(
    namespaces: tuple[str, ...], disabled: bool
) -> None:
    """Exact names: kopf must not try to list namespaces (least-privilege RBAC forbids it and
    kopf would retry for about a minute before falling back to the names)."""
    assert exact_namespaces(namespaces) is disabled
    settings = kopf.OperatorSettings()
    configure(settings, namespaces)
    assert settings.scanning.disabled is disabled
    assert settings.persistence.finalizer == "internlm.io/finalizer"
