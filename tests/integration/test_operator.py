"""The operator process itself: killed half-way through a reconcile it converges without
duplicates; ``internlm-operator run`` serves health and metrics and reconciles."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator

import pytest

from tests.conftest import REPO, Cluster, wait_until
from tests.integration.conftest import Batch, OperatorHandle, make_pvcs
from tests.integration.test_trainjob import apply, small

pytestmark = pytest.mark.cluster


class Crash(Exception):
    pass


def children(cluster: Cluster, ns: str, name: str) -> dict[str, list[str]]:
    out = {}
    for kind in ("job", "service", "configmap"):
        items = cluster.get(kind, "-n", ns, "-l", f"app.kubernetes.io/instance={name}")["items"]
        out[kind] = [i["metadata"]["uid"] for i in items]
    return out


def test_killed_mid_reconcile_converges_without_duplicates(
    cluster: Cluster, namespace: str, operator: OperatorHandle
) -> None:
    operator.stop()
    reached = []

    def fault(where: str) -> None:
        if where == "service":  # ConfigMap and Service applied, Job not yet
            reached.append(where)
            raise Crash("killed between the Service and the Job")

    try:
        operator.start(fault=fault)
        tj = apply(cluster, namespace, small("crashy"))
        wait_until("the crash point", lambda: reached)
        operator.stop()
        assert tj.job() is None
        before = children(cluster, namespace, "crashy")
        assert len(before["configmap"]) == 1 and len(before["service"]) == 1
    finally:
        if operator.thread is not None:
            operator.stop()
        operator.start()
    tj.wait_running(1)
    tj.wait_phase("Running")
    after = children(cluster, namespace, "crashy")
    assert len(after["job"]) == 1
    assert after["configmap"] == before["configmap"] and after["service"] == before["service"]
    job_uid = after["job"][0]

    # Killed again while the gang runs: the new operator adopts the same Job.
    operator.stop()
    operator.start()
    tj.finish_all(1)
    tj.wait_phase("Succeeded")
    assert children(cluster, namespace, "crashy")["job"] == [job_uid]
    assert not tj.status().get("restarts")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def own_namespace(cluster: Cluster, session_token: str) -> Iterator[str]:
    """A namespace the session operator does not watch."""
    name = f"op-{session_token}"
    cluster.kubectl("create", "namespace", name)
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


def test_cli_run_serves_health_metrics_and_reconciles(
    cluster: Cluster, crds: list[str], own_namespace: str
) -> None:
    health, metrics = free_port(), free_port()
    env = {
        **os.environ,
        "INTERNLM_RESYNC_SECONDS": "1",
        "INTERNLM_PROGRESS_TIMEOUT": "0",
        "INTERNLM_IMAGE_PRETRAIN": "registry.local/pretrain:cli",
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "internlm_operator.cli",
            "run",
            "--kubeconfig",
            str(cluster.kubeconfig),
            "--namespace",
            own_namespace,
            "--log-format",
            "json",
            "--health-port",
            str(health),
            "--metrics-port",
            str(metrics),
        ],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:

        def get(port: int, path: str) -> tuple[int, str]:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as r:
                    return r.status, r.read().decode()
            except OSError:
                return 0, ""

        wait_until("/readyz", lambda: get(health, "/readyz")[0] == 200, timeout=60)
        assert get(health, "/healthz")[0] == 200
        make_pvcs(cluster, own_namespace, "pretrain-corpus", "model-store")
        tj = apply(cluster, own_namespace, small("cli"))
        job = wait_until("Job", tj.job)
        assert (
            job["spec"]["template"]["spec"]["containers"][0]["image"]
            == "registry.local/pretrain:cli"
        )
        wait_until(
            "reconcile metrics",
            lambda: (
                'internlm_operator_reconciles_total{kind="TrainJob",'
                'result="ok"}' in get(metrics, "/metrics")[1]
            ),
        )
        body = get(metrics, "/metrics")[1]
        assert "internlm_operator_reconcile_duration_seconds_bucket" in body
        assert isinstance(tj, Batch)
    finally:
        proc.terminate()
        try:
            out, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
    assert proc.returncode is not None
    assert '"message"' in out  # JSON log lines
