"""Agent: config.json for the lagent stage and the child manifests (pure, no cluster)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from internlm_operator.api.v1alpha1.agent import Agent, AgentSpec
from internlm_operator.api.v1alpha1.common import SecretKeyRef
from internlm_operator.builders import agent as ba
from internlm_operator.builders.common import Owner

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "images" / "workloads" / "src"))

from internlm_workloads.config import parse_config  # noqa: E402


def owner(name: str = "helper") -> Owner:
    return Owner("internlm.io/v1alpha1", "Agent", "ns1", name, "uid-a")


def build(spec: AgentSpec, llm: ba.ResolvedLLM | None = None, **kw: Any) -> ba.AgentChildren:
    llm = llm or ba.ResolvedLLM("http://chat-ms.ns1.svc.cluster.local:23333/v1", "chat")
    return ba.build(ba.AgentInputs(owner=owner(), spec=spec, image="agent:1", llm=llm, **kw))


def test_sample_agent() -> None:
    ag = Agent.model_validate(yaml.safe_load((REPO / "samples/agent.yaml").read_text()))
    s = ag.spec
    ch = build(s, ba.ResolvedLLM(s.llm.url or "", s.llm.model or "", s.llm.api_key_secret))
    assert [m["kind"] for m in ch.present()] == ["ConfigMap", "Service", "Deployment"]
    assert ch.endpoint == "http://helper-ag.ns1.svc.cluster.local:8000/v1"
    d = ch.deployment
    assert d["spec"]["replicas"] == 2
    assert d["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}
    c = d["spec"]["template"]["spec"]["containers"][0]
    assert c["command"] == ["python", "-m", "internlm_workloads", "agent"]
    assert c["resources"]["limits"] == {"cpu": "2", "memory": "4Gi"}
    assert "nvidia.com/gpu" not in c["resources"]["limits"]
    env = {e["name"]: e for e in c["env"]}
    assert env["OPENAI_BASE_URL"]["value"] == "https://api.intern-ai.org.cn/api/v1"
    assert env["INTERNLM_LLM_MODEL"]["value"] == "internlm2.5-latest"
    assert env["OPENAI_API_KEY"]["valueFrom"]["secretKeyRef"] == {
        "name": "internlm-api-key",
        "key": "api-key",
    }
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert ch.service["spec"]["ports"][0]["port"] == 8000

    cfg = json.loads(ch.config_map["data"]["config.json"])
    parsed = parse_config(cfg, "agent")  # the workload accepts what the operator renders
    assert parsed.spec.llm.url == "https://api.intern-ai.org.cn/api/v1"
    assert parsed.spec.agent_type == "internlm2"
    assert [t.name for t in parsed.spec.tools] == [
        "ArxivSearch",
        "IPythonInterpreter",
        "Calculator",
    ]
    assert parsed.spec.tools[0].params == {"top_k_results": 3, "max_query_len": 300}
    assert parsed.spec.max_turns == 8 and parsed.spec.port == 8000
    assert parsed.spec.llm.temperature == 0.7 and parsed.spec.llm.max_new_tokens == 1024


def test_bound_to_model_serve_with_its_key() -> None:
    s = AgentSpec.model_validate({"llm": {"modelServe": "chat"}})
    ch = build(
        s,
        ba.ResolvedLLM(
            "http://chat-ms.ns1.svc.cluster.local:23333/v1",
            "chat",
            SecretKeyRef(name="lmdeploy-key", key="k"),
        ),
    )
    c = ch.deployment["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e for e in c["env"]}
    assert env["OPENAI_BASE_URL"]["value"] == "http://chat-ms.ns1.svc.cluster.local:23333/v1"
    assert env["OPENAI_API_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "lmdeploy-key"
    cfg = json.loads(ch.config_map["data"]["config.json"])
    assert cfg["spec"]["llm"]["model"] == "chat"


@pytest.mark.parametrize(
    ("a", "b", "rolls"),
    [
        ({"llm": {"modelServe": "chat"}}, {"llm": {"modelServe": "chat"}, "replicas": 3}, False),
        ({"llm": {"modelServe": "chat"}}, {"llm": {"modelServe": "chat"}, "maxTurns": 3}, True),
    ],
)
def test_rollout_only_on_pod_changes(a: dict[str, Any], b: dict[str, Any], rolls: bool) -> None:
    ta = build(AgentSpec.model_validate(a)).deployment["spec"]["template"]
    tb = build(AgentSpec.model_validate(b)).deployment["spec"]["template"]
    assert (ta != tb) is rolls


def test_endpoint_change_rolls_pods() -> None:
    s = AgentSpec.model_validate({"llm": {"modelServe": "chat"}})
    a = build(s, ba.ResolvedLLM("http://a/v1", "m")).deployment["spec"]["template"]
    b = build(s, ba.ResolvedLLM("http://b/v1", "m")).deployment["spec"]["template"]
    assert a != b


@pytest.mark.parametrize(
    ("ms", "verdict", "reason"),
    [
        (None, "waiting", "ModelServeNotFound"),
        ({"status": {"phase": "Waiting"}}, "waiting", "ModelServeNotReady"),
        (
            {"status": {"conditions": [{"type": "Ready", "status": "True"}]}},
            "waiting",
            "ModelServeNotReady",  # no endpoint yet
        ),
    ],
)
def test_judge_model_serve_waiting(ms: dict[str, Any] | None, verdict: str, reason: str) -> None:
    from internlm_operator.reconcilers.agent import judge_model_serve

    got = judge_model_serve("chat", ms)
    assert got[0] == verdict and got[1] == reason and "ModelServe chat" in str(got[2])


def test_judge_model_serve_ready() -> None:
    from internlm_operator.reconcilers.agent import judge_model_serve

    ms = {
        "spec": {"apiKeySecret": {"name": "s", "key": "k"}},
        "status": {
            "conditions": [{"type": "Ready", "status": "True"}],
            "endpoint": "http://chat-ms.ns.svc.cluster.local:23333/v1",
            "servedModelName": "chat-v1",
        },
    }
    verdict, _, llm = judge_model_serve("chat", ms)
    assert verdict == "ready" and isinstance(llm, ba.ResolvedLLM)
    assert (llm.url, llm.model) == ("http://chat-ms.ns.svc.cluster.local:23333/v1", "chat-v1")
    assert llm.api_key_secret == SecretKeyRef(name="s", key="k")


@pytest.mark.parametrize(
    ("resources", "requests", "limits"),
    [
        ({}, {"cpu": "500m", "memory": "1Gi"}, {"memory": "2Gi"}),
        ({"cpu": "2"}, {"cpu": "2", "memory": "1Gi"}, {"cpu": "2", "memory": "2Gi"}),
        (
            {"cpu": "2", "memory": "4Gi"},
            {"cpu": "2", "memory": "4Gi"},
            {"cpu": "2", "memory": "4Gi"},
        ),
    ],
)
def test_default_resources(
    resources: dict[str, Any], requests: dict[str, str], limits: dict[str, str]
) -> None:
    defaults = {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"memory": "2Gi"}}
    s = AgentSpec.model_validate({"llm": {"modelServe": "chat"}, "resources": resources})
    c = build(s, default_resources=defaults).deployment["spec"]["template"]["spec"]["containers"][0]
    assert c["resources"] == {"requests": requests, "limits": limits}
