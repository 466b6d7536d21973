"""Operator-wide settings: kopf settings per namespace mode, configuration from env and flags."""

from __future__ import annotations

import json

import kopf
import pytest
from internlm_operator import cli
from internlm_operator import config as cfg
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


def test_default_resources_from_env_keep_cpu_and_memory() -> None:
    env = {
        # as the chart passes workloads.defaultResources (toJson: numbers stay numbers)
        "INTERNLM_DEFAULT_RESOURCES": json.dumps(
            {
                "requests": {"cpu": 4, "memory": "8Gi", "nvidia.com/gpu": 1},
                "limits": {"memory": "16Gi", "ephemeral-storage": "10Gi", "cpu": 0.5},
            }
        )
    }
    c = cfg.from_env(env)
    assert c.default_resources == {
        "requests": {"cpu": "4", "memory": "8Gi"},
        "limits": {"memory": "16Gi", "cpu": "0.5"},
    }
    assert cfg.from_env({}).default_resources == {}
    assert cfg.from_env({"INTERNLM_DEFAULT_RESOURCES": ""}).default_resources == {}


@pytest.mark.parametrize(
    "text,needle",
    [
        ("{not json", "not JSON"),
        ('["cpu"]', "JSON object"),
        ('{"request": {"cpu": "1"}}', "unknown keys"),
        ('{"requests": {"cpu": "lots"}}', "requests.cpu"),
        ('{"limits": {"memory": -1}}', "negative"),
        ('{"limits": "1Gi"}', "limits must be an object"),
    ],
)
def test_default_resources_reject_malformed(text: str, needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        cfg.from_env({"INTERNLM_DEFAULT_RESOURCES": text})


def test_default_resources_flag_wins_over_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INTERNLM_DEFAULT_RESOURCES", '{"requests": {"cpu": "1"}}')
    a = cli.parse_args(["run", "--default-resources", '{"limits": {"memory": "2Gi"}}'])
    assert cli.config_from_args(a).default_resources == {"limits": {"memory": "2Gi"}}
    a = cli.parse_args(["run"])
    assert cli.config_from_args(a).default_resources == {"requests": {"cpu": "1"}}
    monkeypatch.setenv("INTERNLM_DEFAULT_RESOURCES", "{broken")
    with pytest.raises(SystemExit, match="INTERNLM_DEFAULT_RESOURCES: not JSON"):
        cli.config_from_args(cli.parse_args(["run"]))
    with pytest.raises(SystemExit, match="--default-resources"):
        cli.config_from_args(cli.parse_args(["run", "--default-resources", "[]"]))
