"""The shared hub cache on the local cluster, with an operator of its own started with a cache
storage class (the session's operator runs without one: per-pod fetch init containers).

One namespace, in order: a 2-node TrainJob and a FineTune asking for the same repo@revision
create exactly one fetch Job and both wait (FetchingInputs) until it succeeds; then their pods
mount the entry's subPath and status.inputs says who fetched (cached false) and who reused
(cached true); a ModelServe of the same revision starts at once; a different revision gets its
own Job, and when that one fails (RepoNotFound) the FineTune and the ModelServe waiting for it
fail / stall with that reason (an Unreachable exit 75 before it is retried by the Job), and a
resource created after the failure gets a fresh fetch Job. The kwok pods end as the
annotations say (e2e/cluster/stages.yaml).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import Cluster, wait_until
from tests.integration.conftest import (
    Batch,
    OperatorHandle,
    make_pvcs,
    operator_config,
    running_operator,
    sample,
)

pytestmark = pytest.mark.cluster

CLASS_PREFIX = "hub-rwx"
REPO = "internlm/internlm2_5-1_8b"
ENTRY = "internlm.io/hub-cache-entry"


@pytest.fixture(scope="module")
def storage_class(cluster: Cluster, session_token: str) -> Iterator[str]:
    """A ReadWriteMany class with no provisioner: the test binds a PV to the cache PVC."""
    name = f"{CLASS_PREFIX}-{session_token}"
    cluster.apply(
        {
            "apiVersion": "storage.k8s.io/v1",
            "kind": "StorageClass",
            "metadata": {"name": name},
            "provisioner": "kubernetes.io/no-provisioner",
            "volumeBindingMode": "Immediate",
        }
    )
    yield name
    cluster.kubectl("delete", "storageclass", name, "--wait=false", check=False)


@pytest.fixture(scope="module")
def cache_operator(
    cluster: Cluster, crds: list[str], session_token: str, storage_class: str
) -> Iterator[OperatorHandle]:
    config = operator_config(
        cluster,
        f"hc-{session_token}-*",
        hub_cache_storage_class=storage_class,
        hub_cache_size="10Gi",
    )
    with running_operator(config) as handle:
        yield handle


@pytest.fixture
def cache_ns(cluster: Cluster, session_token: str, storage_class: str) -> Iterator[str]:
    name = f"hc-{session_token}-0"
    cluster.kubectl("create", "namespace", name)
    wait_until(
        f"ServiceAccount default in {name}",
        lambda: (
            cluster.kubectl("get", "serviceaccount", "default", "-n", name, check=False).returncode
            == 0
        ),
        timeout=60,
    )
    # What a storage class would provision: a PV waiting for the cache PVC of this namespace.
    pv = f"{name}-hub-cache"
    cluster.apply(
        {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {"name": pv, "labels": {"internlm.io/test-namespace": name}},
            "spec": {
                "capacity": {"storage": "10Gi"},
                "accessModes": ["ReadWriteMany"],
                "persistentVolumeReclaimPolicy": "Delete",
                "storageClassName": storage_class,
                "hostPath": {"path": f"/tmp/{pv}"},
                "claimRef": {"namespace": name, "name": "internlm-hub-cache"},
            },
        }
    )
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)
    cluster.kubectl("delete", "pv", pv, "--wait=false", check=False)


def trainjob(name: str, revision: str) -> dict[str, Any]:
    doc = sample("trainjob")
    doc["metadata"] = {"name": name}
    doc["spec"].pop("hubTokens", None)
    doc["spec"]["model"]["source"] = {"huggingFace": {"repo": REPO, "revision": revision}}
    doc["spec"]["runPolicy"] = {"backoffLimit": 0}
    return doc


def finetune(name: str, revision: str) -> dict[str, Any]:
    doc = sample("finetune")
    doc["metadata"] = {"name": name}
    doc["spec"].pop("hubTokens", None)
    doc["spec"]["model"] = {"huggingFace": {"repo": REPO, "revision": revision}}
    doc["spec"]["dataset"] = {
        "pvc": {"claimName": "datasets", "path": "alpaca"},
        "format": "alpaca",
    }
    doc["spec"]["runPolicy"] = {"backoffLimit": 0}
    return doc


def modelserve(name: str, revision: str) -> dict[str, Any]:
    return {
        "apiVersion": "internlm.io/v1alpha1",
        "kind": "ModelServe",
        "metadata": {"name": name},
        "spec": {
            "model": {"huggingFace": {"repo": REPO, "revision": revision}},
            "replicas": 1,
            "resources": {"gpusPerNode": 1, "cpu": "1", "memory": "1Gi"},
        },
    }


def fetch_jobs(cluster: Cluster, ns: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = cluster.get("jobs", "-n", ns, "-l", ENTRY)["items"]
    return items


def fetch_job_for(cluster: Cluster, ns: str, revision: str) -> dict[str, Any] | None:
    for j in fetch_jobs(cluster, ns):
        key = json.loads(j["metadata"]["annotations"]["internlm.io/hub-cache-key"])
        if key["revision"] == revision:
            return j
    return None


def fetch_pod(cluster: Cluster, ns: str, job: str) -> dict[str, Any] | None:
    pods = cluster.get("pods", "-n", ns, "-l", f"batch.kubernetes.io/job-name={job}")["items"]
    running = [p for p in pods if p["status"].get("phase") == "Running"]
    return running[0] if running else None


def end_fetch(cluster: Cluster, ns: str, job: str, code: int, result: dict[str, Any]) -> None:
    pod = wait_until(f"a running pod of {job}", lambda: fetch_pod(cluster, ns, job), timeout=90)
    cluster.kubectl(
        "annotate",
        "pod",
        pod["metadata"]["name"],
        "-n",
        ns,
        "--overwrite",
        f"e2e.internlm.io/exit-code={code}",
        f"e2e.internlm.io/message={json.dumps(result)}",
    )


def status_of(cluster: Cluster, ns: str, kind: str, name: str) -> dict[str, Any]:
    st: dict[str, Any] = cluster.get(kind.lower(), name, "-n", ns).get("status") or {}
    return st


def cond(st: dict[str, Any], type_: str) -> dict[str, Any]:
    return next((c for c in st.get("conditions") or [] if c["type"] == type_), {})


def waiting_for_fetch(cluster: Cluster, ns: str, kind: str, name: str) -> dict[str, Any] | None:
    st = status_of(cluster, ns, kind, name)
    ready = cond(st, "Ready")
    return st if ready.get("reason") == "FetchingInputs" else None


def test_one_fetch_per_revision_shared_and_failures_passed_on(
    cluster: Cluster, cache_ns: str, cache_operator: OperatorHandle, storage_class: str
) -> None:
    ns = cache_ns
    make_pvcs(cluster, ns, "pretrain-corpus", "model-store", "datasets")

    # -- two resources, one repo@revision: one fetch Job, both wait --------------------------
    cluster.apply(trainjob("cpt", "v1"), namespace=ns)
    job_v1 = wait_until("the v1 fetch Job", lambda: fetch_job_for(cluster, ns, "v1"), timeout=60)
    cluster.apply(finetune("sft", "v1"), namespace=ns)
    tj, ft = Batch(cluster, ns, "TrainJob", "cpt"), Batch(cluster, ns, "FineTune", "sft")
    for kind, name in (("TrainJob", "cpt"), ("FineTune", "sft")):
        st = wait_until(
            f"{kind} {name} FetchingInputs",
            lambda k=kind, n=name: waiting_for_fetch(cluster, ns, k, n),  # type: ignore[misc]
            timeout=60,
        )
        assert st["phase"] == "Waiting"
        msg = cond(st, "Ready")["message"]
        assert f"{REPO}@v1" in msg and job_v1["metadata"]["name"] in msg
    assert len(fetch_jobs(cluster, ns)) == 1
    assert tj.job() is None and ft.job() is None  # nothing runs before the fetch is done

    # The cache objects: the ConfigMap owns the PVC and the Job; the PVC is bound RWX.
    cm = cluster.get("configmap", "internlm-hub-cache", "-n", ns)
    assert job_v1["metadata"]["ownerReferences"][0]["uid"] == cm["metadata"]["uid"]
    assert job_v1["metadata"]["annotations"]["internlm.io/requested-by"].startswith("TrainJob/cpt/")
    pvc = cluster.get("pvc", "internlm-hub-cache", "-n", ns)
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    assert pvc["spec"]["storageClassName"] == storage_class
    assert pvc["metadata"]["ownerReferences"][0]["uid"] == cm["metadata"]["uid"]
    fetch_spec = job_v1["spec"]["template"]["spec"]["containers"][0]
    assert fetch_spec["command"] == ["python", "-m", "internlm_workloads", "fetch"]
    entry = job_v1["metadata"]["labels"][ENTRY]
    inputs = json.loads(
        next(e for e in fetch_spec["env"] if e["name"] == "INTERNLM_INPUTS")["value"]
    )
    assert inputs[0]["source"] == f"hf://{REPO}@v1"
    assert inputs[0]["completeMarker"] == f"/mnt/hub-cache/{entry}/COMPLETE"

    # -- the fetch succeeds: both go on, their pods mount the entry --------------------------
    fetched = {
        "name": "model",
        "source": f"hf://{REPO}@v1",
        "revision": "1a2b3c4d",
        "bytes": 3_600_000_000,
        "files": 12,
        "seconds": 42.0,
        "cached": False,
    }
    end_fetch(cluster, ns, job_v1["metadata"]["name"], 0, {"ok": True, "fetched": [fetched]})
    for b, n in ((tj, 2), (ft, 1)):
        job = wait_until(f"the Job of {b.name}", b.job, timeout=60)
        pod = job["spec"]["template"]["spec"]
        assert "initContainers" not in pod
        vols = {v["name"]: v for v in pod["volumes"]}
        assert vols["hub-cache"]["persistentVolumeClaim"] == {
            "claimName": "internlm-hub-cache",
            "readOnly": True,
        }
        mount = next(m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "hub-cache")
        assert mount == {
            "name": "hub-cache",
            "mountPath": "/mnt/inputs/model",
            "subPath": f"{entry}/data",
            "readOnly": True,
        }
        b.wait_running(n)
    rows = {}
    for kind, name in (("TrainJob", "cpt"), ("FineTune", "sft")):
        st = wait_until(
            f"{kind} {name} Running with inputs",
            lambda k=kind, n=name: (  # type: ignore[misc]
                (s := status_of(cluster, ns, k, n)).get("phase") == "Running"
                and s.get("inputs")
                and s
            ),
            timeout=60,
        )
        rows[name] = st["inputs"]
    base = {
        "name": "model",
        "source": f"hf://{REPO}@v1",
        "revision": "v1",
        "commit": "1a2b3c4d",
        "bytes": 3_600_000_000,
        "files": 12,
    }
    assert rows["cpt"] == [{**base, "cached": False}]  # its request started the fetch
    assert rows["sft"] == [{**base, "cached": True}]
    assert len(fetch_jobs(cluster, ns)) == 1
    rec = json.loads(cluster.get("configmap", "internlm-hub-cache", "-n", ns)["data"][entry])
    assert rec["fetched"]["revision"] == "1a2b3c4d" and rec["requestedBy"].startswith("TrainJob/")

    # A later ModelServe of the same revision starts at once, from the same entry.
    cluster.apply(modelserve("chat", "v1"), namespace=ns)
    deploy = wait_until(
        "the Deployment of chat",
        lambda: (
            (
                r := cluster.kubectl(
                    "get", "deployment", "chat-ms", "-n", ns, "-o", "json", check=False
                )
            ).returncode
            == 0
            and json.loads(r.stdout)
        ),
        timeout=60,
    )
    dpod = deploy["spec"]["template"]["spec"]
    assert not dpod.get("initContainers")
    assert any(m.get("subPath") == f"{entry}/data" for m in dpod["containers"][0]["volumeMounts"])
    st = wait_until(
        "chat's inputs",
        lambda: (s := status_of(cluster, ns, "ModelServe", "chat")).get("inputs") and s,
        timeout=60,
    )
    assert st["inputs"] == [{**base, "cached": True}]

    # The first two finish; their inputs stay.
    tj.finish_all(2)
    ft.finish_all(1)
    for kind, name in (("TrainJob", "cpt"), ("FineTune", "sft")):
        b = Batch(cluster, ns, kind, name)
        st = b.wait_phase("Succeeded")
        assert st["inputs"] == rows[name]

    # -- another revision: its own Job; its failure fails the resources waiting for it -------
    cluster.apply(finetune("sft2", "v2"), namespace=ns)
    job_v2 = wait_until("the v2 fetch Job", lambda: fetch_job_for(cluster, ns, "v2"), timeout=60)
    assert job_v2["metadata"]["name"] != job_v1["metadata"]["name"]
    cluster.apply(modelserve("chat2", "v2"), namespace=ns)
    wait_until("sft2 waits", lambda: waiting_for_fetch(cluster, ns, "FineTune", "sft2"), timeout=60)
    wait_until("chat2 waits", lambda: waiting_for_fetch(cluster, ns, "ModelServe", "chat2"), 60)
    assert len(fetch_jobs(cluster, ns)) == 2
    # The hub did not answer (exit 75, Unreachable): the Job runs another pod, they still wait.
    first = wait_until("a v2 fetch pod", lambda: fetch_pod(cluster, ns, job_v2["metadata"]["name"]))
    end_fetch(
        cluster,
        ns,
        job_v2["metadata"]["name"],
        75,
        {"ok": False, "failure": "Unreachable", "reason": "Unreachable: no answer"},
    )
    wait_until(
        "a second v2 fetch pod",
        lambda: (
            (p := fetch_pod(cluster, ns, job_v2["metadata"]["name"]))
            and p["metadata"]["uid"] != first["metadata"]["uid"]
        ),
        timeout=90,
    )
    assert waiting_for_fetch(cluster, ns, "FineTune", "sft2")
    reason = f"RepoNotFound: model repo {REPO} has no revision... does not exist on http://hub"
    end_fetch(
        cluster,
        ns,
        job_v2["metadata"]["name"],
        1,
        {"ok": False, "failure": "RepoNotFound", "reason": reason},
    )
    st = Batch(cluster, ns, "FineTune", "sft2").wait_phase("Failed", timeout=90)
    failed = cond(st, "Failed")
    assert failed["status"] == "True" and failed["reason"] == "RepoNotFound"
    assert f"{REPO}@v2" in failed["message"] and "does not exist" in failed["message"]
    assert st["inputs"] == [
        {"name": "model", "source": f"hf://{REPO}@v2", "revision": "v2", "cached": False}
    ]
    assert Batch(cluster, ns, "FineTune", "sft2").job() is None
    st = wait_until(
        "chat2 stalled",
        lambda: (
            (s := status_of(cluster, ns, "ModelServe", "chat2"))
            and cond(s, "Stalled").get("status") == "True"
            and s
        ),
        timeout=60,
    )
    assert cond(st, "Stalled")["reason"] == "RepoNotFound"
    assert cond(st, "Ready")["status"] == "False"
    assert st["inputs"][0]["cached"] is True
    assert cluster.kubectl("get", "deployment", "chat2-ms", "-n", ns, check=False).returncode != 0
    assert len(fetch_jobs(cluster, ns)) == 2  # a failure is not retried for those who waited

    # A resource created after the failure gets a fresh fetch (it may come with a fix).
    failed_uid = job_v2["metadata"]["uid"]
    cluster.apply(finetune("sft3", "v2"), namespace=ns)
    again = wait_until(
        "a new v2 fetch Job",
        lambda: (
            (j := fetch_job_for(cluster, ns, "v2")) and j["metadata"]["uid"] != failed_uid and j
        ),
        timeout=60,
    )
    assert again["metadata"]["name"] == job_v2["metadata"]["name"]
    # Usually sft3's pass deletes the failed Job and creates the new one at once; chat2, still
    # reconciled (a ModelServe is never terminal), may see the entry absent in between and
    # create it first: either way the new fetch serves both.
    by = again["metadata"]["annotations"]["internlm.io/requested-by"]
    assert by.startswith(("FineTune/sft3/", "ModelServe/chat2/")), by
    wait_until("sft3 waits", lambda: waiting_for_fetch(cluster, ns, "FineTune", "sft3"), 60)
    assert status_of(cluster, ns, "FineTune", "sft2")["phase"] == "Failed"
