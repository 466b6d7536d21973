"""Agent against the local cluster with the operator in-process: the sample (external URL)
becomes Ready; an Agent bound to a ModelServe by name waits while it is not Ready, runs with its
endpoint wired into the pod, reports Degraded when the ModelServe is deleted and recovers when it
comes back."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.conftest import Cluster, wait_until
from tests.integration.conftest import OperatorHandle, make_pvcs, sample
from tests.integration.test_modelserve import Serve, config_of, secret

pytestmark = pytest.mark.cluster


def pod_env(s: Serve) -> dict[str, Any]:
    pods = wait_until(
        f"pods of {s.name}", lambda: [p for p in s.pods() if p["status"].get("phase") == "Running"]
    )
    c = pods[0]["spec"]["containers"][0]
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in c["env"]}


def test_sample_agent_with_external_url(
    cluster: Cluster, namespace: str, operator: OperatorHandle
) -> None:
    doc = sample("agent")
    name = doc["metadata"]["name"]
    secret(cluster, namespace, "internlm-api-key", "api-key")
    cluster.apply(doc, namespace=namespace)
    ag = Serve(cluster, namespace, name, kind="Agent")
    st = ag.wait_ready()
    assert st["endpoint"] == f"http://{name}-ag.{namespace}.svc.cluster.local:8000/v1"
    assert st["llm"] == {
        "endpoint": "https://api.intern-ai.org.cn/api/v1",
        "model": "internlm2.5-latest",
    }
    assert st["readyReplicas"] == 2
    env = pod_env(ag)
    assert env["OPENAI_BASE_URL"] == "https://api.intern-ai.org.cn/api/v1"
    assert env["OPENAI_API_KEY"]["secretKeyRef"] == {"name": "internlm-api-key", "key": "api-key"}
    d = ag.deployment()
    c = d["spec"]["template"]["spec"]["containers"][0]
    assert c["command"] == ["python", "-m", "internlm_workloads", "agent"]
    assert "nvidia.com/gpu" not in c["resources"]["limits"]
    cfg = config_of(ag)["spec"]
    assert [t["name"] for t in cfg["tools"]] == ["ArxivSearch", "IPythonInterpreter", "Calculator"]
    assert cfg["agentType"] == "internlm2" and cfg["maxTurns"] == 8
    cluster.kubectl("scale", "agent", name, "-n", namespace, "--replicas=1")
    ag.wait("scaled to 1", lambda s: s.get("replicas") == 1 and s.get("phase") == "Ready")


def test_agent_bound_to_model_serve(
    cluster: Cluster, namespace: str, operator: OperatorHandle
) -> None:
    make_pvcs(cluster, namespace, "models")
    secret(cluster, namespace, "serve-key", "k")
    agent = {
        "apiVersion": "internlm.io/v1alpha1",
        "kind": "Agent",
        "metadata": {"name": "helper"},
        "spec": {"llm": {"modelServe": "chat"}, "tools": [{"name": "Calculator"}]},
    }
    serve = {
        "apiVersion": "internlm.io/v1alpha1",
        "kind": "ModelServe",
        "metadata": {"name": "chat"},
        "spec": {
            "model": {"pvc": {"claimName": "models", "path": "chat"}},
            "servedModelName": "chat-v1",
            "apiKeySecret": {"name": "serve-key", "key": "k"},
            "gate": {"evalRun": "not-yet"},  # keeps the ModelServe waiting for now
            "resources": {"gpusPerNode": 1},
        },
    }
    cluster.apply(agent, namespace=namespace)
    ag = Serve(cluster, namespace, "helper", kind="Agent")
    ms = Serve(cluster, namespace, "chat")

    st = ag.wait("waiting for its ModelServe", lambda s: s.get("phase") == "Waiting")
    assert ag.cond("Ready", st) == ("False", "WaitingForDependency")
    assert "ModelServe chat not found" in next(
        c["message"] for c in st["conditions"] if c["type"] == "Ready"
    )

    cluster.apply(serve, namespace=namespace)
    ms.wait("waiting on its gate", lambda s: s.get("phase") == "Waiting")
    st = ag.wait(
        "still waiting",
        lambda s: (
            "not Ready" in next(c["message"] for c in s["conditions"] if c["type"] == "Ready")
        ),
    )
    assert st["phase"] == "Waiting"
    assert ag.child_obj("deployment") is None

    cluster.kubectl(
        "patch",
        "modelserve",
        "chat",
        "-n",
        namespace,
        "--type=json",
        "-p",
        '[{"op": "remove", "path": "/spec/gate"}]',
    )
    ms_st = ms.wait_ready()
    st = ag.wait_ready()
    assert st["llm"] == {"endpoint": ms_st["endpoint"], "model": "chat-v1"}
    assert [e["kind"] for e in st["lineage"]][-1] == "ModelServe"
    env = pod_env(ag)
    assert env["OPENAI_BASE_URL"] == f"http://chat-ms.{namespace}.svc.cluster.local:23333/v1"
    assert env["INTERNLM_LLM_MODEL"] == "chat-v1"
    assert env["OPENAI_API_KEY"]["secretKeyRef"] == {"name": "serve-key", "key": "k"}
    assert config_of(ag)["spec"]["llm"]["url"] == ms_st["endpoint"]

    cluster.kubectl("delete", "modelserve", "chat", "-n", namespace, "--wait=false")
    st = ag.wait("Degraded", lambda s: s.get("phase") == "Degraded")
    assert ag.cond("Degraded", st) == ("True", "ModelServeNotFound")
    assert ag.cond("Ready", st) == ("False", "ModelServeNotFound")
    assert ag.child_obj("deployment") is not None  # the agent pods stay, ready to resume
    events = cluster.get(
        "events", "-n", namespace, "--field-selector", "involvedObject.name=helper"
    )["items"]
    assert ("Warning", "ModelServeNotFound") in {(e["type"], e["reason"]) for e in events}

    serve["spec"].pop("gate")
    wait_until(
        "old ModelServe gone",
        lambda: (
            cluster.kubectl("get", "modelserve", "chat", "-n", namespace, check=False).returncode
            != 0
        ),
    )
    cluster.apply(serve, namespace=namespace)
    st = ag.wait_ready(timeout=90)
    assert ag.cond("Degraded", st) == ("False", "AsExpected")
    assert json.dumps(st["llm"]).count("chat-ms") == 1
