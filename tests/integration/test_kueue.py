"""Real Kueue (v0.17.0, built through the Go module proxy, run out of cluster by
e2e/cluster/localkueue.py) and the operator, on the simulated GPU nodes: quota admission in
order with Kueue's own reason in status while queued, spec.suspend on an admitted queued
TrainJob (no fight with Kueue), preemption by a higher priority workload (the victim queues
again without failing or burning a restart), and ``manageJobsWithoutQueueName: true`` (the
operator never unsuspends a Job Kueue suspended)."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Iterator
from typing import Any

import localcluster
import localkueue
import pytest

from tests.conftest import REPO, Cluster, wait_until
from tests.integration.conftest import Batch, OperatorHandle, claims_of, make_pvcs, sample

pytestmark = pytest.mark.cluster

FLAVOR = "internlm-test-default"
QUOTA_MESSAGE = "insufficient unused quota for nvidia.com/gpu"


@pytest.fixture(scope="module")
def kueue(cluster: Cluster) -> Iterator[None]:
    """Kueue against the session's cluster for this module, removed with all it made after.
    Built on demand (a no-op once cached; `make binaries` builds it)."""
    if not localkueue.available():
        subprocess.run(
            ["bash", str(REPO / "e2e" / "cluster" / "build-binaries.sh"), "kueue"],
            check=True,
            timeout=3600,
        )
    # manageJobsWithoutQueueName applies only in namespaces labelled for it (one test's).
    if localkueue.main(["up", "--manage-jobs-without-queue-name"]) != 0:
        localkueue.down()
        pytest.fail("Kueue did not start (see the [localkueue] lines above)")
    try:
        cluster.apply(
            {
                "apiVersion": "kueue.x-k8s.io/v1beta2",
                "kind": "ResourceFlavor",
                "metadata": {"name": FLAVOR},
            }
        )
        yield
    finally:
        localkueue.down()
        assert not localcluster.port_open(localkueue.WEBHOOK_PORT)


def queue(cluster: Cluster, ns: str, gpus: int = 8, preempt: bool = False) -> None:
    """A ClusterQueue for this namespace only (nvidia.com/gpu quota), and LocalQueue ``lq``."""
    cluster.apply(
        {
            "apiVersion": "kueue.x-k8s.io/v1beta2",
            "kind": "ClusterQueue",
            "metadata": {"name": f"cq-{ns}"},
            "spec": {
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}},
                "queueingStrategy": "StrictFIFO",
                "preemption": {"withinClusterQueue": "LowerPriority" if preempt else "Never"},
                "resourceGroups": [
                    {
                        "coveredResources": ["cpu", "memory", "nvidia.com/gpu"],
                        "flavors": [
                            {
                                "name": FLAVOR,
                                "resources": [
                                    {"name": "cpu", "nominalQuota": "1000"},
                                    {"name": "memory", "nominalQuota": "16Ti"},
                                    {"name": "nvidia.com/gpu", "nominalQuota": str(gpus)},
                                ],
                            }
                        ],
                    }
                ],
            },
        }
    )
    cluster.apply(
        {
            "apiVersion": "kueue.x-k8s.io/v1beta2",
            "kind": "LocalQueue",
            "metadata": {"name": "lq", "namespace": ns},
            "spec": {"clusterQueue": f"cq-{ns}"},
        }
    )


@pytest.fixture
def kns(cluster: Cluster, namespace: str, kueue: None) -> Iterator[str]:
    """The test's namespace; its ClusterQueue and priority classes are deleted after it."""
    yield namespace
    for kind in ("clusterqueue", "workloadpriorityclass"):
        items = cluster.get(f"{kind}.kueue.x-k8s.io")["items"]
        names = [i["metadata"]["name"] for i in items if i["metadata"]["name"].endswith(namespace)]
        if names:
            cluster.kubectl("delete", f"{kind}.kueue.x-k8s.io", *names, "--wait=false")


def trainjob(name: str, queue_name: str | None = "lq", **spec: Any) -> dict[str, Any]:
    """A one-node TrainJob (8 GPUs: a whole 8-GPU quota) queued in ``queue_name``."""
    doc = sample("trainjob")
    doc["metadata"] = {"name": name}
    doc["spec"]["nodes"] = 1
    doc["spec"]["optimization"]["globalBatchSize"] = 16
    doc["spec"].pop("hubTokens", None)
    doc["spec"]["runPolicy"] = {"backoffLimit": 2}
    if queue_name:
        doc["spec"]["scheduling"]["queueName"] = queue_name
    doc["spec"].update(spec)
    return doc


def apply(cluster: Cluster, ns: str, doc: dict[str, Any]) -> Batch:
    make_pvcs(cluster, ns, *claims_of(doc))
    cluster.apply(doc, namespace=ns)
    return Batch(cluster, ns, doc["kind"], doc["metadata"]["name"])


def run(tj: Batch, timeout: float = 60) -> dict[str, Any]:
    """Wait until the TrainJob's one pod runs and it says Running (explaining Kueue's side)."""

    def explain() -> Any:
        job = tj.job()
        w = workload(tj.cluster, tj.ns, job) if job else None
        return {
            "status": tj.status(),
            "job": job and (job["spec"].get("suspend"), job.get("status")),
            "workload": w and w.get("status"),
            "pods": [(p["metadata"]["name"], p["status"]) for p in tj.pods(False)],
        }

    wait_until(
        f"{tj.name} running",
        lambda: tj.pods() and tj.status().get("phase") == "Running",
        timeout=timeout,
        explain=explain,
    )
    return tj.status()


def ready(tj: Batch) -> dict[str, Any]:
    c = tj.condition("Ready")
    assert c is not None
    return c


def workload(cluster: Cluster, ns: str, job: dict[str, Any]) -> dict[str, Any] | None:
    uid = job["metadata"]["uid"]
    items = cluster.get("workloads.kueue.x-k8s.io", "-n", ns, "-l", f"kueue.x-k8s.io/job-uid={uid}")
    return items["items"][0] if items["items"] else None


def admitted(cluster: Cluster, ns: str, job: dict[str, Any]) -> bool:
    w = workload(cluster, ns, job)
    conds = (w or {}).get("status", {}).get("conditions") or []
    return any(c["type"] == "Admitted" and c["status"] == "True" for c in conds)


class JobWatch:
    """Every version of one Job seen by a watch: how often it was recreated, changed and
    flipped between suspended and not (an operator fighting Kueue shows up as hundreds)."""

    def __init__(self, cluster: Cluster, ns: str, name: str) -> None:
        from kubernetes import client, watch

        self.api = client.BatchV1Api(cluster.api_client())
        self.ns, self.name = ns, name
        self.seen: list[tuple[str, int, bool]] = []  # (uid, generation, suspend)
        self.deleted = 0
        self._stop = threading.Event()
        self._watch = watch
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        rv = None
        while not self._stop.is_set():
            w = self._watch.Watch()
            try:
                kw: dict[str, Any] = {"resource_version": rv} if rv else {}
                for ev in w.stream(
                    self.api.list_namespaced_job,
                    self.ns,
                    field_selector=f"metadata.name={self.name}",
                    timeout_seconds=2,
                    **kw,
                ):
                    job = ev["object"]
                    rv = job.metadata.resource_version
                    if ev["type"] == "DELETED":
                        self.deleted += 1
                        continue
                    state = (job.metadata.uid, job.metadata.generation, bool(job.spec.suspend))
                    if not self.seen or self.seen[-1] != state:
                        self.seen.append(state)
                    if self._stop.is_set():
                        w.stop()
            except Exception:  # an expired resourceVersion: list again
                rv = None
                time.sleep(0.2)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def uids(self) -> list[str]:
        return list(dict.fromkeys(u for u, _, _ in self.seen))

    def flips(self) -> int:
        """suspend true<->false changes within each Job."""
        n = 0
        for a, b in zip(self.seen, self.seen[1:], strict=False):
            n += a[0] == b[0] and a[2] != b[2]
        return n

    def generations(self) -> int:
        return max((g for _, g, _ in self.seen), default=0)


def test_quota_admits_in_order_and_says_why_queued(
    cluster: Cluster, kns: str, operator: OperatorHandle
) -> None:
    queue(cluster, kns)
    first = apply(cluster, kns, trainjob("first"))
    job1 = wait_until("first's Job", first.job, timeout=60)
    assert job1["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "lq"
    run(first)
    wait_until("first admitted", lambda: admitted(cluster, kns, job1), timeout=30)

    second = apply(cluster, kns, trainjob("second"))
    job2 = wait_until("second's Job", second.job, timeout=60)
    # The second waits: suspended, no pods, and its status carries Kueue's own reason.
    c = wait_until(
        "second says Kueue's reason",
        lambda: (r := ready(second))["reason"] == "Queued" and QUOTA_MESSAGE in r["message"] and r,
        timeout=30,
        explain=lambda: (second.status(), workload(cluster, kns, job2)),
    )
    assert "LocalQueue lq" in c["message"], c
    assert second.status()["phase"] == "Pending"
    assert second.job()["spec"]["suspend"] is True and not second.pods()
    time.sleep(2)
    assert not second.pods() and first.status()["phase"] == "Running"

    first.finish_all(1)
    first.wait_phase("Succeeded")
    second.wait_running(1, timeout=60)
    st = second.wait_phase("Running")
    assert ready(second)["reason"] == "Running"
    assert second.job()["metadata"]["uid"] == job2["metadata"]["uid"]  # admitted, not recreated
    second.finish_all(1)
    st = second.wait_phase("Succeeded")
    assert not st.get("restarts") and not first.status().get("restarts")


def test_suspend_admitted_queued_trainjob_no_fight(
    cluster: Cluster, kns: str, operator: OperatorHandle
) -> None:
    queue(cluster, kns)
    tj = apply(cluster, kns, trainjob("pause"))
    job = wait_until("the Job", tj.job, timeout=60)
    tj.wait_running(1)
    tj.wait_phase("Running")
    wait_until("admitted", lambda: admitted(cluster, kns, job), timeout=30)

    watch = JobWatch(cluster, kns, tj.job_name)
    try:
        cluster.merge_patch("trainjob", "pause", kns, {"spec": {"suspend": True}})
        st = tj.wait_phase("Suspended", timeout=30)
        assert next(c for c in st["conditions"] if c["type"] == "Suspended")["status"] == "True"
        wait_until("pods gone", lambda: not tj.pods(), timeout=30)
        time.sleep(10)  # a fight would show here: Kueue unsuspending, the operator suspending
        st = tj.status()
        assert st["phase"] == "Suspended" and not tj.pods(), st
        # The Job is deleted (its Workload and quota go with it), not left to Kueue to resume.
        assert tj.job() is None

        cluster.merge_patch("trainjob", "pause", kns, {"spec": {"suspend": False}})
        tj.wait_running(1, timeout=60)
        tj.wait_phase("Running")
        time.sleep(10)
        assert tj.status()["phase"] == "Running"
    finally:
        watch.stop()
    # One Job before, one after the resume; each created suspended and unsuspended by Kueue
    # once: a handful of generations, not hundreds.
    assert len(watch.uids()) <= 2, watch.seen
    assert watch.flips() <= 2, watch.seen
    assert watch.generations() <= 4, watch.seen
    assert watch.deleted <= 1, watch.seen
    tj.finish_all(1)
    st = tj.wait_phase("Succeeded")
    assert not st.get("restarts")


def test_preemption_requeues_victim_without_burning_a_restart(
    cluster: Cluster, kns: str, operator: OperatorHandle
) -> None:
    queue(cluster, kns, preempt=True)
    for cls, value in (("low", 100), ("high", 1000)):
        cluster.apply(
            {
                "apiVersion": "kueue.x-k8s.io/v1beta2",
                "kind": "WorkloadPriorityClass",
                "metadata": {"name": f"{cls}-{kns}"},
                "value": value,
                "description": f"{cls} priority for {kns}",
            }
        )
    prio = "kueue.x-k8s.io/priority-class"
    victim_doc = trainjob("victim", runPolicy={"backoffLimit": 0})
    victim_doc["metadata"]["labels"] = {prio: f"low-{kns}"}
    victim = apply(cluster, kns, victim_doc)
    job = wait_until("the victim's Job", victim.job, timeout=60)
    assert job["metadata"]["labels"][prio] == f"low-{kns}"  # passed on to the Job
    victim.wait_running(1)
    victim.wait_phase("Running")
    w = wait_until("victim admitted", lambda: admitted(cluster, kns, job), timeout=30)
    assert w
    assert workload(cluster, kns, job)["spec"]["priority"] == 100  # type: ignore[index]

    urgent_doc = trainjob("urgent")
    urgent_doc["metadata"]["labels"] = {prio: f"high-{kns}"}
    urgent = apply(cluster, kns, urgent_doc)
    # Kueue preempts the victim: its Job is suspended, its pods go; it queues again.
    wait_until("victim suspended by Kueue", lambda: victim.job()["spec"]["suspend"], timeout=60)  # type: ignore[index]
    urgent.wait_running(1, timeout=60)
    urgent.wait_phase("Running")
    st = wait_until(
        "victim queued again",
        lambda: (
            (s := victim.status())["phase"] == "Pending"
            and ready(victim)["reason"] == "Queued"
            and s
        ),
        timeout=30,
        explain=victim.status,
    )
    assert not victim.pods()
    failed = next(c for c in st["conditions"] if c["type"] == "Failed")
    assert failed["status"] == "False", st
    assert not st.get("restarts"), st
    assert victim.job()["metadata"]["uid"] == job["metadata"]["uid"]  # type: ignore[index]

    urgent.finish_all(1)
    urgent.wait_phase("Succeeded")
    victim.wait_running(1, timeout=60)
    st = victim.wait_phase("Running")
    assert not st.get("restarts")
    victim.finish_all(1)
    st = victim.wait_phase("Succeeded")
    assert not st.get("restarts")


def test_manage_jobs_without_queue_name_operator_never_unsuspends(
    cluster: Cluster, kns: str, operator: OperatorHandle
) -> None:
    # Kueue manages every Job in this namespace, labelled or not (managedJobsNamespaceSelector).
    cluster.kubectl("label", "namespace", kns, f"{localkueue.MANAGED_NAMESPACE_LABEL}=true")
    queue(cluster, kns)
    tj = Batch(cluster, kns, "TrainJob", "plain")
    watch = JobWatch(cluster, kns, tj.job_name)
    try:
        apply(cluster, kns, trainjob("plain", queue_name=None))
        job = wait_until("the Job", tj.job, timeout=60)
        assert "kueue.x-k8s.io/queue-name" not in job["metadata"].get("labels", {})
        # Kueue's webhook suspended it at creation; the operator leaves it so, and says why in
        # Kueue's own words once Kueue has made the Workload (the first pass may come before it:
        # the message is then the generic one, and the next pass, the resync, takes Kueue's).
        c = wait_until(
            "plain says Queued, in Kueue's words",
            lambda: (r := ready(tj))["reason"] == "Queued" and "LocalQueue" in r["message"] and r,
            timeout=30,
            explain=tj.status,
        )
        time.sleep(15)
        assert tj.job()["spec"]["suspend"] is True  # type: ignore[index]
        assert not tj.pods(False)
        st = tj.status()
        assert st["phase"] == "Pending" and ready(tj)["reason"] == "Queued", st
    finally:
        watch.stop()
    assert watch.uids() == [job["metadata"]["uid"]], watch.seen
    assert watch.flips() == 0, watch.seen
    assert watch.generations() <= 2, watch.seen
    assert "LocalQueue" in c["message"], c  # Kueue's own reason, from the Workload
    assert not st.get("restarts")
