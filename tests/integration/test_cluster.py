"""The proving ground itself: a real API server judges CRDs, a real scheduler places GPU pods on
simulated nodes, and tests decide how pods end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from typing import Any

import localcluster
import pytest

from tests.conftest import REPO, Cluster, wait_until

WIDGET_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.proving.internlm.io"},
    "spec": {
        "group": "proving.internlm.io",
        "names": {"kind": "Widget", "plural": "widgets", "singular": "widget"},
        "scope": "Namespaced",
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "properties": {
                                    "gpus": {"type": "integer", "minimum": 1},
                                    "tensorParallel": {"type": "integer", "minimum": 1},
                                },
                                "x-kubernetes-validations": [
                                    {
                                        "rule": "self.gpus % self.tensorParallel == 0",
                                        "message": "gpus must be divisible by tensorParallel",
                                    }
                                ],
                            }
                        },
                    }
                },
            }
        ],
    },
}


def pod(name: str, gpus: int, *, restart: str = "Never", **meta: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, **meta},
        "spec": {
            "restartPolicy": restart,
            "containers": [
                {
                    "name": "main",
                    "image": "example.invalid/trainer:1",
                    "resources": {"limits": {"nvidia.com/gpu": str(gpus)}},
                }
            ],
        },
    }


def pod_status(cluster: Cluster, ns: str, name: str) -> dict[str, Any]:
    return cluster.get("pod", name, "-n", ns).get("status", {})


def annotate_exit(
    cluster: Cluster, ns: str, target: str, code: int, reason: str = "", message: str = ""
) -> None:
    args = ["annotate", "-n", ns, target, f"e2e.internlm.io/exit-code={code}", "--overwrite"]
    if reason:
        args.append(f"e2e.internlm.io/reason={reason}")
    if message:
        args.append(f"e2e.internlm.io/message={message}")
    cluster.kubectl(*args)


def test_nodes_are_simulated_gpu_nodes(cluster: Cluster) -> None:
    nodes = cluster.get("nodes")["items"]
    gpu = [n for n in nodes if n["status"]["allocatable"].get("nvidia.com/gpu") == "8"]
    assert len(gpu) >= 4
    for n in gpu:
        labels = n["metadata"]["labels"]
        assert labels["nvidia.com/gpu.product"] == "NVIDIA-H200"
        assert labels["node.kubernetes.io/instance-type"]
        ready = {c["type"]: c["status"] for c in n["status"]["conditions"]}["Ready"]
        assert ready == "True"


def test_crd_with_cel_rule_is_established_and_enforced(cluster: Cluster, namespace: str) -> None:
    crd = json.loads(json.dumps(WIDGET_CRD))
    suffix = uuid.uuid4().hex[:6]
    crd["metadata"]["name"] = f"widgets.p{suffix}.internlm.io"
    crd["spec"]["group"] = f"p{suffix}.internlm.io"
    cluster.apply(crd)
    try:
        cluster.kubectl(
            "wait", "--for=condition=Established", "--timeout=30s", f"crd/{crd['metadata']['name']}"
        )
        good = {
            "apiVersion": f"p{suffix}.internlm.io/v1",
            "kind": "Widget",
            "metadata": {"name": "ok"},
            "spec": {"gpus": 8, "tensorParallel": 4},
        }
        cluster.apply(good, namespace)
        bad = {**good, "metadata": {"name": "bad"}, "spec": {"gpus": 6, "tensorParallel": 4}}
        res = cluster.kubectl(
            "apply", "-n", namespace, "-f", "-", input=json.dumps(bad), check=False
        )
        assert res.returncode != 0
        assert "gpus must be divisible by tensorParallel" in res.stderr
        # The structural schema is enforced too, not only the rule.
        worse = {**good, "metadata": {"name": "worse"}, "spec": {"gpus": 0, "tensorParallel": 1}}
        res = cluster.kubectl(
            "apply", "-n", namespace, "-f", "-", input=json.dumps(worse), check=False
        )
        assert res.returncode != 0 and "spec.gpus" in res.stderr
    finally:
        cluster.kubectl("delete", "crd", crd["metadata"]["name"], "--wait=false", check=False)


def test_deployment_pods_run_on_gpu_nodes(cluster: Cluster, namespace: str) -> None:
    deploy = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "server"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "server"}},
            "template": {
                "metadata": {"labels": {"app": "server"}},
                "spec": pod("x", 4, restart="Always")["spec"],
            },
        },
    }
    cluster.apply(deploy, namespace)
    wait_until(
        "2 ready replicas",
        lambda: (
            cluster.get("deployment", "server", "-n", namespace)
            .get("status", {})
            .get("readyReplicas")
            == 2
        ),
        timeout=60,
    )
    for p in cluster.get("pods", "-n", namespace, "-l", "app=server")["items"]:
        node = cluster.get("node", p["spec"]["nodeName"])
        assert node["metadata"]["labels"]["nvidia.com/gpu.product"] == "NVIDIA-H200"
        assert p["status"]["phase"] == "Running"


def test_oversized_gpu_pod_stays_pending(cluster: Cluster, namespace: str) -> None:
    cluster.apply(pod("too-big", 9), namespace)

    def unschedulable() -> bool:
        conds = pod_status(cluster, namespace, "too-big").get("conditions", [])
        return any(
            c["type"] == "PodScheduled" and c.get("reason") == "Unschedulable" for c in conds
        )

    wait_until("PodScheduled=False/Unschedulable", unschedulable, timeout=30)
    st = pod_status(cluster, namespace, "too-big")
    assert st["phase"] == "Pending"
    msg = next(c["message"] for c in st["conditions"] if c["type"] == "PodScheduled")
    assert "nvidia.com/gpu" in msg


def job(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {"backoffLimit": 0, "template": {"spec": pod("x", 8)["spec"]}},
    }


def job_pod(cluster: Cluster, ns: str, name: str) -> dict[str, Any]:
    def running() -> Any:
        pods = cluster.get("pods", "-n", ns, "-l", f"job-name={name}")["items"]
        return next((p for p in pods if p.get("status", {}).get("phase") == "Running"), None)

    return wait_until(f"a running pod of job {name}", running, timeout=60)  # type: ignore[no-any-return]


def test_job_pod_runs_until_told_then_succeeds_with_message(
    cluster: Cluster, namespace: str
) -> None:
    cluster.apply(job("ok"), namespace)
    p = job_pod(cluster, namespace, "ok")
    # Pods never end by themselves.
    assert pod_status(cluster, namespace, p["metadata"]["name"])["phase"] == "Running"
    result = '{"ok": true, "outputs": {"model": "/output/hf"}}'
    annotate_exit(cluster, namespace, f"pod/{p['metadata']['name']}", 0, message=result)
    wait_until(
        "job complete",
        lambda: any(
            c["type"] == "Complete" and c["status"] == "True"
            for c in cluster.get("job", "ok", "-n", namespace)
            .get("status", {})
            .get("conditions", [])
        ),
        timeout=60,
    )
    st = pod_status(cluster, namespace, p["metadata"]["name"])
    assert st["phase"] == "Succeeded"
    term = st["containerStatuses"][0]["state"]["terminated"]
    assert term["exitCode"] == 0
    assert term["reason"] == "Completed"
    assert json.loads(term["message"]) == json.loads(result)


def test_job_pod_fails_with_the_chosen_exit_code_and_reason(
    cluster: Cluster, namespace: str
) -> None:
    cluster.apply(job("bad"), namespace)
    p = job_pod(cluster, namespace, "bad")
    annotate_exit(cluster, namespace, f"pod/{p['metadata']['name']}", 137, reason="OOMKilled")
    wait_until(
        "job failed",
        lambda: any(
            c["type"] == "Failed" and c["status"] == "True"
            for c in cluster.get("job", "bad", "-n", namespace)
            .get("status", {})
            .get("conditions", [])
        ),
        timeout=60,
    )
    st = pod_status(cluster, namespace, p["metadata"]["name"])
    assert st["phase"] == "Failed"
    term = st["containerStatuses"][0]["state"]["terminated"]
    assert (term["exitCode"], term["reason"]) == (137, "OOMKilled")


@pytest.mark.timeout(300)
def test_node_lost_mid_run_takes_its_pods_down(cluster: Cluster, namespace: str) -> None:
    """A dedicated node is created for this test, so others never lose theirs."""
    name = f"lost-{namespace}"
    node = localcluster.node(
        name,
        {"nvidia.com/gpu.product": "NVIDIA-H200", "e2e.internlm.io/test-node": "true"},
        {"cpu": "8", "memory": "64Gi", "pods": "10", "nvidia.com/gpu": "8"},
    )
    node["spec"]["taints"] = [{"key": "e2e.internlm.io/dedicated", "effect": "NoSchedule"}]
    cluster.apply(node)
    try:
        wait_until(
            "the dedicated node Ready",
            lambda: any(
                c["type"] == "Ready" and c["status"] == "True"
                for c in cluster.get("node", name).get("status", {}).get("conditions", [])
            ),
            timeout=60,
        )
        p = pod("victim", 8)
        p["spec"]["nodeSelector"] = {"kubernetes.io/hostname": name}
        p["spec"]["tolerations"] = [{"key": "e2e.internlm.io/dedicated", "operator": "Exists"}]
        cluster.apply(p, namespace)
        wait_until(
            "victim running",
            lambda: pod_status(cluster, namespace, "victim").get("phase") == "Running",
            timeout=60,
        )
        cluster.kubectl("delete", "node", name, "--wait=false")

        # The pod garbage collector removes pods bound to a node that no longer exists.
        def gone_or_failed() -> bool:
            res = cluster.kubectl(
                "get", "pod", "victim", "-n", namespace, "-o", "json", check=False
            )
            if res.returncode != 0:
                return True
            obj = json.loads(res.stdout)
            return (
                bool(obj["metadata"].get("deletionTimestamp"))
                or obj["status"].get("phase") == "Failed"
            )

        wait_until("the lost node's pod taken down", gone_or_failed, timeout=180, interval=1)
    finally:
        cluster.kubectl("delete", "node", name, "--ignore-not-found", check=False)


@pytest.mark.timeout(120)
def test_not_ready_node_is_noticed(cluster: Cluster) -> None:
    """The other form of node loss: the node stops heartbeating and turns NotReady."""
    name = f"flaky-{uuid.uuid4().hex[:6]}"
    node = localcluster.node(name, {}, {"cpu": "8", "memory": "64Gi", "pods": "10"})
    node["spec"]["taints"] = [{"key": "e2e.internlm.io/dedicated", "effect": "NoSchedule"}]
    cluster.apply(node)
    try:

        def ready() -> str:
            conds = cluster.get("node", name).get("status", {}).get("conditions", [])
            return next((c["status"] for c in conds if c["type"] == "Ready"), "")

        wait_until("node Ready", lambda: ready() == "True", timeout=60)
        cluster.kubectl("annotate", "node", name, "e2e.internlm.io/not-ready=true")
        wait_until("node NotReady", lambda: ready() in ("False", "Unknown"), timeout=60)
    finally:
        cluster.kubectl("delete", "node", name, "--ignore-not-found", check=False)


def launcher(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(REPO / "e2e" / "cluster" / "localcluster.py"), *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_cluster_up_again_is_a_no_op(cluster: Cluster) -> None:
    res = launcher({}, "up")
    assert res.returncode == 0
    assert "already running" in res.stderr


def test_ports_in_use_give_a_clear_message(cluster: Cluster, tmp_path: Any) -> None:
    res = launcher({"INTERNLM_CLUSTER_STATE": str(tmp_path / "state")}, "up")
    assert res.returncode == 1
    assert "ports already in use" in res.stderr
    assert "INTERNLM_CLUSTER_PORT_BASE" in res.stderr


def test_missing_binaries_give_a_clear_message(tmp_path: Any) -> None:
    res = launcher(
        {
            "INTERNLM_CLUSTER_STATE": str(tmp_path / "state"),
            "INTERNLM_CACHE": str(tmp_path / "empty-cache"),
            "INTERNLM_CLUSTER_PORT_BASE": "26400",
        },
        "up",
    )
    assert res.returncode == 1
    assert "missing cluster binaries" in res.stderr
    assert "build-binaries.sh" in res.stderr
