"""Say why it is stuck, and suspension is not failure, against the local cluster (real API
server, controller-manager with the Job and ResourceQuota controllers, kube-scheduler, kwok
nodes) with the operator in-process.

Stuck: a missing PVC and a missing Secret are reported before anything is created and the run
starts by itself once they exist; a ResourceQuota refusing the pods (the Job's FailedCreate) and
too few GPUs for the scheduler show with the upstream message. Suspension: a running TrainJob
with ``backoffLimit: 0`` whose pods end the way a real kubelet ends them (exit 143 after
SIGTERM, the kwok stage ``e2e.internlm.io/exit-on-delete``) is suspended and resumed without
failing or counting a restart; a Job suspended by someone else is never unsuspended; a queued
resource's Job is never patched."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.conftest import Cluster, wait_until
from tests.integration.conftest import Batch, OperatorHandle, claims_of, make_pvcs, sample
from tests.integration.test_modelserve import Serve, secret
from tests.integration.test_trainjob import events, small

pytestmark = pytest.mark.cluster


def cond(b: Batch | Serve, type_: str) -> dict[str, Any] | None:
    for c in b.status().get("conditions") or []:
        if c["type"] == type_:
            return c  # type: ignore[no-any-return]
    return None


def wait_reason(b: Batch | Serve, type_: str, reason: str, timeout: float = 60) -> dict[str, Any]:
    return wait_until(  # type: ignore[no-any-return]
        f"{b.name}: {type_} reason {reason}",
        lambda: (c := cond(b, type_)) and c["reason"] == reason and c,
        timeout=timeout,
        explain=lambda: b.status(),
    )


def test_missing_pvc_is_named_and_the_run_starts_once_it_exists(
    cluster: Cluster, namespace: str, operator: OperatorHandle
) -> None:
    doc = small("nopvc")
    cluster.apply(doc, namespace=namespace)
    tj = Batch(cluster, namespace, "TrainJob", "nopvc")
    stalled = wait_reason(tj, "Stalled", "PVCNotFound")
    assert stalled["status"] == "True"
    assert 'PersistentVolumeClaim "pretrain-corpus" not found' in stalled["message"]
    assert 'PersistentVolumeClaim "model-store" not found' in stalled["message"]
    st = tj.status()
    assert st["phase"] == "Pending"
    assert cond(tj, "Ready")["reason"] == "PVCNotFound"  # type: ignore[index]
    assert cond(tj, "Reconciling")["status"] == "False"  # type: ignore[index]
    assert tj.job() is None  # checked before children are created
    wait_until(
        "a PVCNotFound Warning Event",
        lambda: ("Warning", "PVCNotFound") in events(cluster, namespace, "nopvc"),
    )
    make_pvcs(cluster, namespace, *claims_of(doc))
    wait_until("the Job", tj.job, timeout=60)
    tj.wait_running(1)
    tj.wait_phase("Running")
    assert cond(tj, "Stalled")["status"] == "False"  # type: ignore[index]


def test_missing_secret_is_named_before_anything_is_created(
    cluster: Cluster, namespace: str, operator: OperatorHandle
) -> None:
    doc = small("nosecret", hubTokens={"huggingFace": {"name": "hf-token", "key": "token"}})
    make_pvcs(cluster, namespace, *claims_of(doc))
    cluster.apply(doc, namespace=namespace)
    tj = Batch(cluster, namespace, "TrainJob", "nosecret")
    stalled = wait_reason(tj, "Stalled", "SecretNotFound")
    assert 'Secret "hf-token" not found' in stalled["message"]
    assert tj.job() is None
    assert ("Warning", "SecretNotFound") in events(cluster, namespace, "nosecret")

    # The same for a ModelServe: no Deployment until its API key Secret exists.
    cluster.apply(_modelserve("keyless"), namespace=namespace)
    ms = Serve(cluster, namespace, "keyless")
    c = wait_reason(ms, "Stalled", "SecretNotFound")
    assert 'Secret "lmdeploy-api-key" not found' in c["message"]
    assert ms.child_obj("deployment") is None
    assert ms.status()["phase"] == "Pending"

    secret(cluster, namespace, "hf-token", "token")
    secret(cluster, namespace, "lmdeploy-api-key", "api-key")
    wait_until("the Job", tj.job, timeout=60)
    tj.wait_running(1)
    ms.wait_ready(timeout=90)


def _modelserve(name: str, **spec: Any) -> dict[str, Any]:
    doc = sample("modelserve")
    doc["metadata"] = {"name": name}
    doc["spec"]["replicas"] = 1
    doc["spec"].pop("autoscaling", None)
    doc["spec"].pop("disruptionBudget", None)
    doc["spec"].update(spec)
    return doc


def test_quota_refusing_pods_is_named_with_the_api_servers_message(
    cluster: Cluster, namespace: str, operator: OperatorHandle
) -> None:
    quota = {
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": {"name": "gpu-quota", "namespace": namespace},
        "spec": {"hard": {"requests.nvidia.com/gpu": "4"}},
    }
    cluster.apply(quota, namespace=namespace)
    wait_until(
        "the quota counted",
        lambda: (
            cluster.get("resourcequota", "gpu-quota", "-n", namespace).get("status", {}).get("hard")
        ),
    )
    doc = small("overquota")
    make_pvcs(cluster, namespace, *claims_of(doc))
    cluster.apply(doc, namespace=namespace)
    tj = Batch(cluster, namespace, "TrainJob", "overquota")
    ready = wait_reason(tj, "Ready", "QuotaExceeded")
    assert "0/1 pod(s) running" in ready["message"]
    assert "exceeded quota: gpu-quota" in ready["message"]
    assert "requests.nvidia.com/gpu" in ready["message"]
    # It waits (quota frees up when other work finishes): kstatus InProgress, not Failed.
    assert cond(tj, "Reconciling")["status"] == "True"  # type: ignore[index]
    assert cond(tj, "Stalled")["status"] == "False"  # type: ignore[index]
    assert tj.status()["phase"] == "Pending"
    wait_until(
        "a QuotaExceeded Warning Event",
        lambda: ("Warning", "QuotaExceeded") in events(cluster, namespace, "overquota"),
    )
    # More quota: the Job controller's next try creates the pod and the reason goes.
    cluster.merge_patch(
        "resourcequota",
        "gpu-quota",
        namespace,
        {"spec": {"hard": {"requests.nvidia.com/gpu": "8"}}},
    )
    tj.wait_running(1, timeout=120)
    st = tj.wait_phase("Running", timeout=60)
    assert not st.get("restarts")


def test_too_few_gpus_is_named_with_the_schedulers_message(
    cluster: Cluster, namespace: str, operator: OperatorHandle
) -> None:
    # Every simulated node has 8 GPUs: 16 per pod can never be placed.
    doc = small("toobig", resources={**small("x")["spec"]["resources"], "gpusPerNode": 16})
    doc["spec"]["optimization"]["globalBatchSize"] = 32
    make_pvcs(cluster, namespace, *claims_of(doc))
    cluster.apply(doc, namespace=namespace)
    tj = Batch(cluster, namespace, "TrainJob", "toobig")
    ready = wait_reason(tj, "Ready", "Unschedulable")
    assert "Insufficient nvidia.com/gpu" in ready["message"], ready
    assert cond(tj, "Stalled")["status"] == "False"  # type: ignore[index]
    assert cond(tj, "Reconciling")["reason"] == "Unschedulable"  # type: ignore[index]

    ms = Serve(cluster, namespace, "bigserve")
    cluster.apply(
        _modelserve(
            "bigserve",
            tensorParallel=1,
            resources={"gpusPerNode": 16, "cpu": "8", "memory": "64Gi"},
        ),
        namespace=namespace,
    )
    secret(cluster, namespace, "lmdeploy-api-key", "api-key")
    c = wait_reason(ms, "Ready", "Unschedulable")
    assert "Insufficient nvidia.com/gpu" in c["message"] and "0/1 server(s) ready" in c["message"]
    assert ms.cond("Stalled") == ("False", "NotStalled")


# -- suspension is not failure ------------------------------------------------------------------


def sigterm_on_delete(tj: Batch, pods: list[dict[str, Any]]) -> None:
    """The pods end as a real kubelet ends them: exit 143 after SIGTERM, Failed for a moment."""
    for p in pods:
        tj.cluster.kubectl(
            "annotate",
            "pod",
            p["metadata"]["name"],
            "-n",
            tj.ns,
            "--overwrite",
            "e2e.internlm.io/exit-on-delete=143",
        )


def test_suspend_mid_run_and_resume_with_backoff_limit_zero(
    cluster: Cluster, namespace: str, operator: OperatorHandle
) -> None:
    doc = small("pause0")
    doc["spec"]["runPolicy"] = {"backoffLimit": 0}
    make_pvcs(cluster, namespace, *claims_of(doc))
    cluster.apply(doc, namespace=namespace)
    tj = Batch(cluster, namespace, "TrainJob", "pause0")
    pods = tj.wait_running(1)
    tj.wait_phase("Running")
    first_job = tj.job()
    assert first_job is not None
    sigterm_on_delete(tj, pods)

    cluster.merge_patch("trainjob", "pause0", namespace, {"spec": {"suspend": True}})
    # The stopped pod is seen Failed with exit 143 (the real kubelet's way), then goes.
    seen = wait_until(
        "the suspended pod Failed with exit 143",
        lambda: [
            p
            for p in tj.pods(active_only=False)
            if p["status"].get("phase") == "Failed"
            and p["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 143
        ],
        timeout=60,
    )
    assert seen[0]["metadata"].get("deletionTimestamp")
    st = tj.wait_phase("Suspended")
    wait_until("the stopped pod gone", lambda: not tj.pods(active_only=False), timeout=60)
    time.sleep(3)  # several passes (resync 1 s) over the suspended Job
    st = tj.status()
    assert st["phase"] == "Suspended" and not st.get("restarts"), st
    assert tj.job()["metadata"]["uid"] == first_job["metadata"]["uid"]  # type: ignore[index]

    cluster.merge_patch("trainjob", "pause0", namespace, {"spec": {"suspend": False}})
    pods = tj.wait_running(1)
    st = tj.wait_phase("Running")
    assert not st.get("restarts")
    tj.finish_all(1)
    st = tj.wait_phase("Succeeded")
    assert not st.get("restarts")
    assert not [e for e in events(cluster, namespace, "pause0") if e[1] in ("Signal", "Failed")]


def test_a_job_suspended_by_someone_else_is_never_unsuspended(
    cluster: Cluster, namespace: str, operator: OperatorHandle
) -> None:
    """What Kueue's manageJobsWithoutQueueName does to a Job without the queue label."""
    doc = small("theirs")
    doc["spec"]["runPolicy"] = {"backoffLimit": 0}
    make_pvcs(cluster, namespace, *claims_of(doc))
    cluster.apply(doc, namespace=namespace)
    tj = Batch(cluster, namespace, "TrainJob", "theirs")
    sigterm_on_delete(tj, tj.wait_running(1))
    tj.wait_phase("Running")
    cluster.merge_patch("job", tj.job_name, namespace, {"spec": {"suspend": True}})
    wait_reason(tj, "Ready", "Queued")
    time.sleep(4)
    assert tj.job()["spec"]["suspend"] is True  # type: ignore[index]
    st = tj.status()
    assert st["phase"] == "Pending" and not st.get("restarts"), st
    # The other controller resumes it: the run goes on, nothing counted.
    cluster.merge_patch("job", tj.job_name, namespace, {"spec": {"suspend": False}})
    tj.wait_running(1)
    assert not tj.wait_phase("Running").get("restarts")


def test_a_queued_job_is_left_to_kueue(
    cluster: Cluster, namespace: str, operator: OperatorHandle
) -> None:
    """No Kueue here: nobody admits the Job, so what the operator does to it is all there is."""
    doc = small("queued", scheduling={"queueName": "team-a"})
    make_pvcs(cluster, namespace, *claims_of(doc))
    cluster.apply(doc, namespace=namespace)
    tj = Batch(cluster, namespace, "TrainJob", "queued")
    job = wait_until("the Job", tj.job)
    assert job["spec"]["suspend"] is True
    assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-a"
    wait_reason(tj, "Ready", "Queued")
    time.sleep(3)
    assert tj.job()["spec"]["suspend"] is True  # type: ignore[index]

    # spec.suspend: the Job (and so its Workload) is deleted, never patched.
    cluster.merge_patch("trainjob", "queued", namespace, {"spec": {"suspend": True}})
    tj.wait_phase("Suspended")
    wait_until("the Job deleted", lambda: tj.job() is None, timeout=60)
    time.sleep(3)
    assert tj.job() is None and tj.status()["phase"] == "Suspended"

    cluster.merge_patch("trainjob", "queued", namespace, {"spec": {"suspend": False}})
    job = wait_until("a new Job", tj.job, timeout=60)
    assert job["spec"]["suspend"] is True  # for Kueue to admit
    wait_reason(tj, "Ready", "Queued")
    assert not tj.status().get("restarts")
