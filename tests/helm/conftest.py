"""Fixtures for the chart tests: the helm binary, rendering, and releases in the local cluster.

Cluster-scoped objects (CRDs, ClusterRoles) are shared by every release in the cluster, so:
releases get unique names (``t<session token>-<n>``), every ClusterRole carries the release's
full name, and only one test (test_crd_lifecycle) lets a release own the CRDs.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import REPO, Cluster, run_tool

sys.path.insert(0, str(REPO / "e2e"))

import demo  # e2e/demo.py: helm_binary, adopt_crds

CHART = REPO / "helm" / "internlm-operator"


@dataclass
class Helm:
    binary: Path
    home: Path
    kubeconfig: Path | None = None

    def __call__(
        self, *args: str, check: bool = True, timeout: float = 180
    ) -> subprocess.CompletedProcess[str]:
        env = {
            **os.environ,
            "HELM_CACHE_HOME": str(self.home / "cache"),
            "HELM_CONFIG_HOME": str(self.home / "config"),
            "HELM_DATA_HOME": str(self.home / "data"),
        }
        kc = ["--kubeconfig", str(self.kubeconfig)] if self.kubeconfig else []
        return run_tool(
            "helm", [str(self.binary), *kc], args, env=env, check=check, timeout=timeout
        )

    def template(
        self,
        *sets: str,
        namespace: str = "internlm-system",
        chart: Path = CHART,
        release: str = "rel",
    ) -> list[dict[str, Any]]:
        args = ["template", release, str(chart), "--namespace", namespace]
        for s in sets:
            args += ["--set", s]
        out = self(*args).stdout
        return [d for d in yaml.safe_load_all(out) if d]

    def template_text(
        self, *sets: str, namespace: str = "internlm-system", release: str = "rel"
    ) -> str:
        args = ["template", release, str(CHART), "--namespace", namespace]
        for s in sets:
            args += ["--set", s]
        return self(*args).stdout


@pytest.fixture(scope="session")
def helm_bin() -> Path:
    path = demo.helm_binary()
    if not os.access(path, os.X_OK):
        pytest.fail(
            f"helm is missing at {path}: build it with `make binaries` "
            "(or `bash e2e/cluster/build-binaries.sh helm`)"
        )
    return path


@pytest.fixture(scope="session")
def helm(helm_bin: Path, tmp_path_factory: pytest.TempPathFactory) -> Helm:
    """helm without a cluster (lint, template)."""
    return Helm(helm_bin, tmp_path_factory.mktemp("helm-home"))


@pytest.fixture(scope="session")
def khelm(helm: Helm, cluster: Cluster) -> Helm:
    """helm against the local cluster."""
    return Helm(helm.binary, helm.home, cluster.kubeconfig)


_releases = itertools.count()


@pytest.fixture
def release(khelm: Helm, session_token: str, cluster: Cluster) -> Iterator[str]:
    """A unique release name; the release is uninstalled (and its namespace-less leftovers
    removed) after the test."""
    name = f"t{session_token}-{next(_releases)}"
    yield name
    for line in khelm("list", "-A", "-o", "json", check=False).stdout.splitlines()[:1]:
        for r in json.loads(line or "[]"):
            if r["name"] == name:
                khelm("uninstall", name, "-n", r["namespace"], "--wait", check=False)


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d.get("kind") == kind]


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = by_kind(docs, kind)
    assert len(found) == 1, f"expected one {kind}, got {[d['metadata']['name'] for d in found]}"
    return found[0]
