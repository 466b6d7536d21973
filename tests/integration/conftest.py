"""The operator under test, in-process, plus helpers for driving batch workloads.

``operator`` (session): a thread running kopf with the real reconcilers, watching only this
session's namespaces (``it-<token>-*``), so sessions sharing a cluster never interfere. It can be
stopped and restarted (the restart test does so), and is stopped cleanly at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pydantic
import pytest
import yaml
from internlm_operator.api.v1alpha1 import KINDS
from internlm_operator.config import OperatorConfig, default_images
from internlm_operator.operator import operator_task
from internlm_operator.reconcilers.kube import Kube

from tests.conftest import Cluster, wait_until

SAMPLES = Path(__file__).resolve().parents[2] / "samples"


class OperatorHandle:
    def __init__(self, config: OperatorConfig) -> None:
        self.config = config
        self.thread: threading.Thread | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.stop_flag: asyncio.Event | None = None
        self.error: BaseException | None = None

    def start(self, fault: Callable[[str], None] | None = None, timeout: float = 60) -> None:
        assert self.thread is None, "already running"
        ready = threading.Event()
        self.error = None

        def main() -> None:
            loop = asyncio.new_event_loop()
            self.loop = loop
            asyncio.set_event_loop(loop)
            self.stop_flag = asyncio.Event()
            ready_flag = asyncio.Event()

            async def go() -> None:
                async def signal_ready() -> None:
                    await ready_flag.wait()
                    ready.set()

                waiter = asyncio.create_task(signal_ready())
                try:
                    await operator_task(
                        self.config, stop_flag=self.stop_flag, ready_flag=ready_flag, fault=fault
                    )
                finally:
                    waiter.cancel()

            try:
                loop.run_until_complete(go())
            except BaseException as e:  # surfaced by start()/stop()
                self.error = e
            finally:
                ready.set()
                loop.close()

        self.thread = threading.Thread(target=main, name="operator-under-test", daemon=True)
        self.thread.start()
        if not ready.wait(timeout) or self.error is not None:
            raise AssertionError(f"the operator did not start: {self.error!r}")
        time.sleep(0.5)  # let the watches establish

    def stop(self, timeout: float = 30) -> None:
        if self.thread is None:
            return
        assert self.loop is not None and self.stop_flag is not None
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(self.stop_flag.set)
        self.thread.join(timeout)
        alive = self.thread.is_alive()
        self.thread = None
        if alive:
            raise AssertionError("the operator did not stop in time")


def operator_config(cluster: Cluster, namespace_glob: str, **overrides: Any) -> OperatorConfig:
    """The in-process operator's settings for the tests: fast resync and retries, test image
    names, short progress polls (simulated pods have 127.64.x.y addresses: polling them stays
    on this machine); ``overrides`` for what a test needs otherwise."""
    settings: dict[str, Any] = {
        "kubeconfig": str(cluster.kubeconfig),
        "namespaces": (namespace_glob,),
        "metrics_port": 0,
        "health_port": 0,
        "resync_seconds": 1.0,
        "images": {s: f"registry.local/internlm-{s}:test" for s in default_images()},
        "progress_timeout": 0.5,
        "progress_interval": 0.5,
        "retry_min_seconds": 0.5,
        "retry_max_seconds": 5.0,
    }
    return OperatorConfig(**{**settings, **overrides})


@contextlib.contextmanager
def running_operator(config: OperatorConfig) -> Iterator[OperatorHandle]:
    handle = OperatorHandle(config)
    handle.start()
    try:
        yield handle
    finally:
        handle.stop()


@pytest.fixture(autouse=True)
def statuses_fit_their_model(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every status the in-process operator writes during a test validates against its kind's
    status model (the CRD would silently prune a field it does not declare): a test fails at
    its end naming the first patch that did not, and why."""
    bad: list[str] = []
    original = Kube.patch_status

    def checked(
        self: Kube, api_version: str, kind: str, namespace: str, name: str, status: dict[str, Any]
    ) -> Any:
        info = KINDS.get(kind)
        if info is not None:
            try:
                info.status_model.model_validate({k: v for k, v in status.items() if v is not None})
            except pydantic.ValidationError as e:
                bad.append(f"{kind} {namespace}/{name}: {e}")
        return original(self, api_version, kind, namespace, name, status)

    monkeypatch.setattr(Kube, "patch_status", checked)
    yield
    assert not bad, f"{len(bad)} status patches do not fit the status model; first: {bad[0]}"


@pytest.fixture(scope="session")
def operator(cluster: Cluster, crds: list[str], session_token: str) -> Iterator[OperatorHandle]:
    with running_operator(operator_config(cluster, f"it-{session_token}-*")) as handle:
        yield handle


# ----------------------------------------------------------------------------- helpers


def sample(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((SAMPLES / f"{name}.yaml").read_text())
    return doc


def samples(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((SAMPLES / f"{name}.yaml").read_text()) if d]


def make_pvcs(cluster: Cluster, namespace: str, *claims: str) -> None:
    """Bound PVCs (pre-bound hostPath PVs): pods using them are schedulable."""
    docs = []
    for c in claims:
        pv = f"{namespace}-{c}"
        docs.append(
            {
                "apiVersion": "v1",
                "kind": "PersistentVolume",
                "metadata": {"name": pv, "labels": {"internlm.io/test-namespace": namespace}},
                "spec": {
                    "capacity": {"storage": "1Ti"},
                    "accessModes": ["ReadWriteMany"],
                    "persistentVolumeReclaimPolicy": "Delete",
                    "storageClassName": "",
                    "hostPath": {"path": f"/tmp/{pv}"},
                    "claimRef": {"namespace": namespace, "name": c},
                },
            }
        )
        docs.append(
            {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "metadata": {"name": c, "namespace": namespace},
                "spec": {
                    "accessModes": ["ReadWriteMany"],
                    "storageClassName": "",
                    "volumeName": pv,
                    "resources": {"requests": {"storage": "1Ti"}},
                },
            }
        )
    cluster.kubectl(
        "apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": docs})
    )


def claims_of(doc: dict[str, Any]) -> set[str]:
    found: set[str] = set()

    def walk(x: Any) -> None:
        if isinstance(x, dict):
            if "claimName" in x:
                found.add(x["claimName"])
            for v in x.values():
                walk(v)
        elif isinstance(x, list):
            for v in x:
                walk(v)

    walk(doc.get("spec"))
    return found


class Batch:
    """Drive one batch resource in one namespace."""

    def __init__(self, cluster: Cluster, namespace: str, kind: str, name: str) -> None:
        self.cluster, self.ns, self.kind, self.name = cluster, namespace, kind, name
        short = {"TrainJob": "tj", "FineTune": "ft", "EvalRun": "er"}[kind]
        self.job_name = f"{name}-{short}"

    def get(self) -> dict[str, Any]:
        return self.cluster.get(self.kind.lower(), self.name, "-n", self.ns)

    def status(self) -> dict[str, Any]:
        return self.get().get("status") or {}

    def condition(self, type_: str) -> dict[str, Any] | None:
        for c in self.status().get("conditions") or []:
            if c["type"] == type_:
                return c
        return None

    def wait_phase(self, phase: str, timeout: float = 120) -> dict[str, Any]:
        return wait_until(
            f"{self.kind} {self.name} phase {phase}",
            lambda: (s := self.status()).get("phase") == phase and s,
            timeout=timeout,
            explain=lambda: {
                "status": self.status(),
                "pods": [
                    (p["metadata"]["name"], p["spec"].get("nodeName"), p["status"].get("phase"))
                    for p in self.pods(active_only=False)
                ],
            },
        )

    def job(self) -> dict[str, Any] | None:
        res = self.cluster.kubectl(
            "get", "job", self.job_name, "-n", self.ns, "-o", "json", check=False
        )
        return json.loads(res.stdout) if res.returncode == 0 else None

    def pods(self, active_only: bool = True) -> list[dict[str, Any]]:
        items = self.cluster.get(
            "pods", "-n", self.ns, "-l", f"batch.kubernetes.io/job-name={self.job_name}"
        )["items"]
        if active_only:
            items = [
                p
                for p in items
                if not p["metadata"].get("deletionTimestamp")
                and p["status"].get("phase") in ("Pending", "Running")
            ]
        return items

    def wait_running(self, n: int, timeout: float = 120) -> list[dict[str, Any]]:
        return wait_until(
            f"{n} running pod(s) of {self.job_name}",
            lambda: (
                (ps := [p for p in self.pods() if p["status"].get("phase") == "Running"])
                and len(ps) >= n
                and ps
            ),
            timeout=timeout,
        )

    def end_pod(
        self,
        pod: dict[str, Any],
        code: int,
        message: dict[str, Any] | str | None = None,
        reason: str | None = None,
    ) -> None:
        ann = [f"e2e.internlm.io/exit-code={code}"]
        if message is not None:
            msg = message if isinstance(message, str) else json.dumps(message)
            ann.append(f"e2e.internlm.io/message={msg}")
        if reason:
            ann.append(f"e2e.internlm.io/reason={reason}")
        self.cluster.kubectl(
            "annotate", "pod", pod["metadata"]["name"], "-n", self.ns, "--overwrite", *ann
        )

    def finish_all(self, n: int, result: dict[str, Any] | None = None) -> None:
        pods = self.wait_running(n)
        for p in pods:
            idx = p["metadata"]["annotations"].get("batch.kubernetes.io/job-completion-index")
            self.end_pod(p, 0, (result or {"ok": True}) if idx == "0" else None)
