"""Progress end to end: a simulated pod's own address (127.64.x.y, local on this machine)
serves the workload's progress document on :9400 with the workload package's own handler; the
operator polls it off the reconcile path and the TrainJob's status and printer columns show it.
A pod that accepts and never answers delays nobody else."""

from __future__ import annotations

import contextlib
import socket
import sys
import threading
import time
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, Cluster, wait_until
from tests.integration.conftest import OperatorHandle
from tests.integration.test_trainjob import apply, small

sys.path.insert(0, str(REPO / "images" / "workloads" / "src"))

from internlm_workloads import report

pytestmark = pytest.mark.cluster
PORT = 9400


@contextlib.contextmanager
def progress_server(ip: str, doc_file: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The workload's own progress endpoint, bound where the pod's container would bind it."""
    monkeypatch.setenv("INTERNLM_PROGRESS_FILE", str(doc_file))
    srv = ThreadingHTTPServer((ip, PORT), report._ProgressHandler)
    srv.daemon_threads = True
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield
    finally:
        srv.shutdown()
        srv.server_close()


@contextlib.contextmanager
def silent_server(ip: str) -> Iterator[list[socket.socket]]:
    """Accepts connections on the pod's :9400 and never says a word."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((ip, PORT))
    s.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        s.settimeout(0.2)
        while not stop.is_set():
            with contextlib.suppress(OSError):
                held.append(s.accept()[0])

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    try:
        yield held
    finally:
        stop.set()
        t.join(2)
        for c in held:
            c.close()
        s.close()


def running_ip(tj: Any) -> str:
    pods = tj.wait_running(1)
    ip = str(pods[0]["status"]["podIP"])
    assert ip.startswith("127."), f"simulated pod address {ip} is not on this machine"
    return ip


def columns(cluster: Cluster, ns: str, name: str) -> dict[str, str]:
    out = cluster.kubectl("get", "trainjob", name, "-n", ns).stdout.splitlines()
    head, row = out[0].split(), out[1].split()
    return dict(zip(head, row, strict=True))


def test_progress_reaches_status_and_printer_columns(
    cluster: Cluster,
    namespace: str,
    operator: OperatorHandle,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tj = apply(cluster, namespace, small("prog"))
    ip = running_ip(tj)
    doc = tmp_path / "progress.json"
    with progress_server(ip, doc, monkeypatch):
        report.write_progress(
            {
                "step": 42,
                "totalSteps": 100,
                "loss": 1.25,
                "tokensPerSecond": 3456.5,
                "checkpoint": {"step": 40, "path": "/out/checkpoints/step-40"},
            }
        )
        st = wait_until(
            "status.progress from the pod's endpoint",
            lambda: (s := tj.status()).get("progress", {}).get("step") == 42 and s,
            timeout=30,
            explain=tj.status,
        )
        assert st["progress"] == {
            "step": 42,
            "totalSteps": 100,
            "loss": 1.25,
            "tokensPerSecond": 3456.5,
        }
        assert st["lastCheckpoint"]["step"] == 40
        cols = columns(cluster, namespace, "prog")
        assert (cols["STEP"], cols["TOTAL"], cols["LOSS"], cols["TOKENS/S"]) == (
            "42",
            "100",
            "1.25",
            "3456.5",
        )
        # It keeps following the run, not just the first answer.
        report.write_progress({"step": 43, "totalSteps": 100, "loss": 1.0})
        t0 = time.monotonic()
        wait_until(
            "the next step in status",
            lambda: tj.status().get("progress", {}).get("step") == 43,
            timeout=15,
            explain=tj.status,
        )
        assert time.monotonic() - t0 < 10


def test_a_pod_that_never_answers_delays_no_one(
    cluster: Cluster,
    namespace: str,
    operator: OperatorHandle,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    hung = apply(cluster, namespace, small("hung"))
    with silent_server(running_ip(hung)) as held:
        wait_until("the operator to connect to the silent pod", lambda: held, timeout=15)
        # Another TrainJob, applied while the first pod's endpoint hangs, gets its Job and its
        # progress as fast as ever.
        t0 = time.monotonic()
        other = apply(cluster, namespace, small("other"))
        wait_until("the other Job", other.job, timeout=15)
        ip = running_ip(other)
        with progress_server(ip, tmp_path / "p.json", monkeypatch):
            report.write_progress({"step": 7, "loss": 2.0})
            wait_until(
                "the other TrainJob's progress",
                lambda: other.status().get("progress", {}).get("step") == 7,
                timeout=15,
                explain=other.status,
            )
        assert time.monotonic() - t0 < 15
        # The hung pod was asked again and again (each fetch gave up after the timeout) and
        # its TrainJob still reconciles: Running, with no progress invented.
        n = len(held)
        wait_until("another fetch of the silent pod", lambda: len(held) > n, timeout=10)
        st = hung.status()
        assert st.get("phase") == "Running" and "progress" not in st
