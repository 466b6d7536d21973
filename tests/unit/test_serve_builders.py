"""ModelServe: lmdeploy api_server arguments and the child manifests (pure, no cluster)."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from internlm_operator.api.v1alpha1.modelserve import ModelServe, ModelServeSpec
from internlm_operator.builders import modelserve as bm
from internlm_operator.builders.common import Owner
from internlm_operator.runtimes import InvalidSpec
from internlm_operator.runtimes.lmdeploy import server_args

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "images" / "workloads" / "src"))

from internlm_workloads.config import parse_config  # noqa: E402


def spec(**kw: Any) -> ModelServeSpec:
    base: dict[str, Any] = {"model": {"pvc": {"claimName": "models", "path": "m/7b"}}}
    base.update(kw)
    return ModelServeSpec.model_validate(base)


def owner(name: str = "chat", **labels: str) -> Owner:
    return Owner("internlm.io/v1alpha1", "ModelServe", "ns1", name, "uid-1", 1, labels)


def build(s: ModelServeSpec, **kw: Any) -> bm.ServeChildren:
    return bm.build(bm.ServeInputs(owner=owner(), spec=s, image="serve:1", **kw))


def flags(args: list[str]) -> dict[str, str | list[str]]:
    out: dict[str, Any] = {}
    key = None
    for a in args:
        if a.startswith("--"):
            key = a
            out[key] = None
        elif key is not None:
            out[key] = (
                a
                if out[key] is None
                else [*([out[key]] if isinstance(out[key], str) else out[key]), a]
            )
    return out


ARG_CASES = [
    (
        {},
        {
            "--backend": "turbomind",
            "--tp": "1",
            "--max-batch-size": "128",
            "--cache-max-entry-count": "0.8",
            "--model-name": "chat",
            "--server-port": "23333",
            "--server-name": "0.0.0.0",
        },
    ),
    (
        {"engine": "pytorch", "tensorParallel": 4, "resources": {"gpusPerNode": 4}},
        {"--backend": "pytorch", "--tp": "4"},
    ),
    ({"quantization": {"weights": "awq"}}, {"--model-format": "awq"}),
    (
        {"quantization": {"weights": "gptq", "kvCacheBits": 4}},
        {"--model-format": "gptq", "--quant-policy": "4"},
    ),
    ({"quantization": {"kvCacheBits": 8}}, {"--quant-policy": "8"}),
    (
        {"maxBatchSize": 64, "sessionLen": 8192, "cacheMaxEntryCount": 0.5},
        {"--max-batch-size": "64", "--session-len": "8192", "--cache-max-entry-count": "0.5"},
    ),
    (
        {"servedModelName": "internlm2_5-7b-chat", "port": 8080},
        {"--model-name": "internlm2_5-7b-chat", "--server-port": "8080"},
    ),
]


@pytest.mark.parametrize(("fields", "expected"), ARG_CASES)
def test_server_args(fields: dict[str, Any], expected: dict[str, str]) -> None:
    s = spec(**fields)
    args = server_args(s, port=s.port, served_model_name=s.served_model_name or "chat")
    got = flags(args)
    for k, v in expected.items():
        assert got.get(k) == v, (k, args)


@pytest.mark.parametrize(
    ("fields", "absent"),
    [
        ({}, ["--model-format", "--quant-policy", "--session-len", "--adapters", "--api-keys"]),
        ({"quantization": {"kvCacheBits": 0}}, ["--quant-policy"]),
    ],
)
def test_server_args_absent(fields: dict[str, Any], absent: list[str]) -> None:
    s = spec(**fields)
    args = server_args(s, port=s.port, served_model_name="x")
    for flag in absent:
        assert flag not in args


def test_adapters_are_mounted_and_passed() -> None:
    s = spec(
        engine="pytorch",
        adapters=[
            {"name": "sql", "source": {"pvc": {"claimName": "adapters", "path": "sql"}}},
            {
                "name": "law",
                "source": {"fromResource": {"kind": "FineTune", "name": "ft", "output": "adapter"}},
            },
        ],
    )
    ch = build(s, adapter_locations={"law": "pvc://store/ft/adapter"})
    cfg = json.loads(ch.config_map["data"]["config.json"])
    args = cfg["spec"]["args"]
    i = args.index("--adapters")
    assert args[i + 1 : i + 3] == ["law=/mnt/pvc/store/ft/adapter", "sql=/mnt/pvc/adapters/sql"]
    vols = {v["name"] for v in ch.deployment["spec"]["template"]["spec"]["volumes"]}
    assert {"pvc-adapters", "pvc-store", "pvc-models"} <= vols


def test_sample_children() -> None:
    ms = ModelServe.model_validate(yaml.safe_load((REPO / "samples/modelserve.yaml").read_text()))
    o = Owner("internlm.io/v1alpha1", "ModelServe", "ns1", ms.metadata["name"], "uid-1")
    ch = bm.build(bm.ServeInputs(owner=o, spec=ms.spec, image="serve:1"))
    name = "internlm2-5-7b-chat-ms"
    assert [m["kind"] for m in ch.present()] == [
        "ConfigMap",
        "Service",
        "Deployment",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
    ]
    assert ch.absent() == []
    assert ch.endpoint == f"http://{name}.ns1.svc.cluster.local:23333/v1"
    assert ch.served_model_name == "internlm2_5-7b-chat"
    for m in ch.present():
        md = m["metadata"]
        assert md["namespace"] == "ns1"
        assert md["ownerReferences"][0]["uid"] == "uid-1"
        assert md["ownerReferences"][0]["controller"] is True
        assert md["labels"]["app.kubernetes.io/managed-by"] == "internlm-operator"
        assert md["labels"]["app.kubernetes.io/instance"] == ms.metadata["name"]

    d = ch.deployment
    assert d["metadata"]["name"] == name
    assert d["spec"]["replicas"] == 2
    assert d["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}
    pod = d["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    c = pod["containers"][0]
    assert c["command"] == ["python", "-m", "internlm_workloads", "serve"]
    assert c["resources"]["limits"] == {"nvidia.com/gpu": "2", "cpu": "8", "memory": "64Gi"}
    assert c["resources"]["requests"] == c["resources"]["limits"]
    env = {e["name"]: e for e in c["env"]}
    assert env["LMDEPLOY_API_KEYS"]["valueFrom"]["secretKeyRef"] == {
        "name": "lmdeploy-api-key",
        "key": "api-key",
    }
    assert {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "16Gi"}} in pod["volumes"]
    assert {"name": "dshm", "mountPath": "/dev/shm"} in c["volumeMounts"]
    # a hub model is fetched by an init container into a cache volume before the server starts
    init = pod["initContainers"][0]
    assert init["command"] == ["python", "-m", "internlm_workloads", "fetch"]
    [inp] = json.loads({e["name"]: e for e in init["env"]}["INTERNLM_INPUTS"]["value"])
    assert inp["source"] == "hf://internlm/internlm2_5-7b-chat" and inp["repoType"] == "model"
    # probes: long startup, readiness on an HTTP route, liveness that a busy server passes
    assert c["startupProbe"]["failureThreshold"] * c["startupProbe"]["periodSeconds"] >= 600
    assert c["readinessProbe"]["httpGet"]["path"] == "/health"  # API keys: /v1/models is 401
    assert "tcpSocket" in c["livenessProbe"]
    assert c["livenessProbe"]["failureThreshold"] >= 3

    svc = ch.service
    assert svc["metadata"]["name"] == name
    assert svc["spec"]["ports"][0]["port"] == 23333
    assert svc["spec"]["selector"] == d["spec"]["selector"]["matchLabels"]

    hpa = ch.hpa
    assert hpa is not None
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "internlm.io/v1alpha1",
        "kind": "ModelServe",
        "name": ms.metadata["name"],
    }
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 4)
    assert hpa["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"] == 80
    assert ch.pdb is not None and ch.pdb["spec"]["maxUnavailable"] == 1

    cfg = json.loads(ch.config_map["data"]["config.json"])
    parsed = parse_config(cfg, "serve")  # the workload accepts what the operator renders
    assert parsed.spec.model_path == "/mnt/inputs/model"
    a = flags(cfg["spec"]["args"])
    assert a["--tp"] == "2" and a["--quant-policy"] == "8" and a["--session-len"] == "32768"
    assert "lmdeploy-api-key" not in ch.config_map["data"]["config.json"]


def test_readiness_on_model_list_without_api_keys() -> None:
    c = build(spec()).deployment["spec"]["template"]["spec"]["containers"][0]
    assert c["readinessProbe"]["httpGet"] == {"path": "/v1/models", "port": "http"}
    assert c["startupProbe"]["httpGet"] == {"path": "/v1/models", "port": "http"}


def test_single_replica_has_no_hpa_or_pdb() -> None:
    ch = build(spec(replicas=1))
    assert ch.hpa is None and ch.pdb is None
    assert sorted(k for _, k, _ in ch.absent()) == [
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
    ]


def test_pdb_follows_autoscaling_minimum() -> None:
    assert build(spec(replicas=1, autoscaling={"minReplicas": 2, "maxReplicas": 3})).pdb
    assert (
        build(spec(replicas=3, disruptionBudget={"maxUnavailable": 2})).pdb["spec"][
            "maxUnavailable"
        ]
        == 2
    )  # type: ignore[index]


def test_pvc_model_mounted_read_only() -> None:
    ch = build(spec())
    pod = ch.deployment["spec"]["template"]["spec"]
    assert "initContainers" not in pod
    m = next(m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "pvc-models")
    assert m["readOnly"] is True
    cfg = json.loads(ch.config_map["data"]["config.json"])
    assert cfg["spec"]["modelPath"] == "/mnt/pvc/models/m/7b"


def test_from_resource_needs_resolved_location() -> None:
    s = spec(model={"fromResource": {"kind": "FineTune", "name": "sft"}})
    with pytest.raises(InvalidSpec):
        build(s)
    ch = build(s, model_location="pvc://store/sft/merged")
    assert ch.model_location == "pvc://store/sft/merged"
    cfg = json.loads(ch.config_map["data"]["config.json"])
    assert cfg["spec"]["modelPath"] == "/mnt/pvc/store/sft/merged"


def test_uri_model_is_rejected_clearly() -> None:
    with pytest.raises(InvalidSpec, match="pvc, huggingFace, modelScope or s3://"):
        build(spec(model={"uri": "gs://bucket/model"}))


def test_s3_model_is_fetched_with_the_object_store_settings() -> None:
    s = spec(
        model={"uri": "s3://models/runs/sft/merged"},
        objectStore={
            "endpoint": "http://minio.storage:9000",
            "accessKeyId": {"name": "s3", "key": "id"},
            "secretAccessKey": {"name": "s3", "key": "secret"},
        },
    )
    ch = build(s)
    pod = ch.deployment["spec"]["template"]["spec"]
    [init] = pod["initContainers"]
    env = {e["name"]: e for e in init["env"]}
    [inp] = json.loads(env["INTERNLM_INPUTS"]["value"])
    assert inp == {
        "name": "model",
        "source": "s3://models/runs/sft/merged",
        "dest": "/mnt/inputs/model/merged",
    }
    assert env["AWS_ENDPOINT_URL_S3"]["value"] == "http://minio.storage:9000"
    assert env["INTERNLM_S3_ADDRESSING_STYLE"]["value"] == "path"
    assert env["AWS_SECRET_ACCESS_KEY"]["valueFrom"] == {
        "secretKeyRef": {"name": "s3", "key": "secret"}
    }
    cfg = json.loads(ch.config_map["data"]["config.json"])
    assert cfg["spec"]["modelPath"] == "/mnt/inputs/model/merged"


def test_scheduling_and_queue_label_pass_through() -> None:
    s = spec(
        scheduling={
            "nodeSelector": {"pool": "a100"},
            "tolerations": [
                {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
            ],
            "priorityClassName": "serving",
            "schedulerName": "volcano",
        },
        resources={"gpusPerNode": 1, "gpuProduct": "NVIDIA-A100-SXM4-80GB"},
    )
    o = owner(**{"kueue.x-k8s.io/queue-name": "serving"})
    ch = bm.build(bm.ServeInputs(owner=o, spec=s, image="serve:1"))
    pod = ch.deployment["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {
        "pool": "a100",
        "nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB",
    }
    assert pod["tolerations"][0]["key"] == "nvidia.com/gpu"
    assert pod["priorityClassName"] == "serving" and pod["schedulerName"] == "volcano"
    assert ch.deployment["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "serving"
    # the selector is immutable: it never carries the queue label
    assert "kueue.x-k8s.io/queue-name" not in ch.deployment["spec"]["selector"]["matchLabels"]


def test_config_change_changes_pod_template_and_is_deterministic() -> None:
    a, b = build(spec()), build(spec())
    assert a.deployment == b.deployment and a.spec_hash == b.spec_hash
    c = build(spec(maxBatchSize=64))
    ann = "internlm.io/config-hash"
    assert (
        a.deployment["spec"]["template"]["metadata"]["annotations"][ann]
        != c.deployment["spec"]["template"]["metadata"]["annotations"][ann]
    )
    # replicas alone is not a rollout
    d = build(spec(replicas=3))
    assert d.deployment["spec"]["template"] == a.deployment["spec"]["template"]


def test_hub_token_and_extra_env() -> None:
    s = spec(
        model={"huggingFace": {"repo": "internlm/x", "revision": "v1"}},
        hubTokens={"huggingFace": {"name": "hf", "key": "token"}},
        env=[{"name": "LMDEPLOY_LOG_LEVEL", "value": "INFO"}],
    )
    pod = build(s).deployment["spec"]["template"]["spec"]
    init = pod["initContainers"][0]
    env = {e["name"]: e for e in init["env"]}
    assert json.loads(env["INTERNLM_INPUTS"]["value"])[0]["source"] == "hf://internlm/x@v1"
    assert env["HF_TOKEN"]["valueFrom"] == {"secretKeyRef": {"name": "hf", "key": "token"}}
    assert "value" not in env["HF_TOKEN"]  # the token stays in its Secret
    env = {e["name"]: e for e in pod["containers"][0]["env"]}
    assert env["LMDEPLOY_LOG_LEVEL"]["value"] == "INFO"


@pytest.mark.parametrize(
    ("ev", "verdict", "text"),
    [
        (None, "waiting", "not found"),
        ({"status": {"phase": "Running"}}, "waiting", "phase Running"),
        ({"status": {"phase": "Succeeded", "passed": True}}, "passed", "passed"),
        ({"status": {"phase": "Succeeded"}}, "passed", "passed"),  # no thresholds
        (
            {
                "status": {
                    "phase": "Failed",
                    "passed": False,
                    "conditions": [
                        {
                            "type": "Failed",
                            "status": "True",
                            "reason": "ThresholdsNotMet",
                            "message": "gsm8k 12 < 50",
                        }
                    ],
                }
            },
            "failed",
            "ThresholdsNotMet: gsm8k 12 < 50",
        ),
    ],
)
def test_judge_gate(ev: dict[str, Any] | None, verdict: str, text: str) -> None:
    from internlm_operator.reconcilers.modelserve import judge_gate

    got, msg = judge_gate("ev", ev)
    assert got == verdict and text in msg and "EvalRun ev" in msg


def test_default_resources_fill_what_the_spec_leaves_out() -> None:
    defaults = {"requests": {"cpu": "4", "memory": "32Gi"}, "limits": {"memory": "48Gi"}}
    s = spec(resources={"gpusPerNode": 2, "memory": "64Gi"}, tensorParallel=2)
    c = build(s, default_resources=defaults).deployment["spec"]["template"]["spec"]
    res = c["containers"][0]["resources"]
    assert res["requests"] == {"nvidia.com/gpu": "2", "cpu": "4", "memory": "64Gi"}
    assert res["limits"] == {"nvidia.com/gpu": "2", "memory": "64Gi"}


def test_hub_cache_is_an_ephemeral_volume_with_a_storage_class() -> None:
    s = spec(model={"huggingFace": {"repo": "internlm/internlm2_5-7b-chat"}})
    pod = build(s).deployment["spec"]["template"]["spec"]
    vols = {v["name"]: v for v in pod["volumes"]}
    assert vols["inputs"] == {"name": "inputs", "emptyDir": {}}

    pod = build(s, storage_class="fast-nvme").deployment["spec"]["template"]["spec"]
    vols = {v["name"]: v for v in pod["volumes"]}
    template = vols["inputs"]["ephemeral"]["volumeClaimTemplate"]
    assert template["spec"] == {
        "accessModes": ["ReadWriteOnce"],
        "storageClassName": "fast-nvme",
        "resources": {"requests": {"storage": "200Gi"}},
    }
    assert template["metadata"]["labels"]["app.kubernetes.io/name"] == "modelserve"
    assert [c["name"] for c in pod["initContainers"]] == ["fetch-model"]
    # a PVC model needs no cache at all
    pod = build(spec(), storage_class="fast-nvme").deployment["spec"]["template"]["spec"]
    assert "inputs" not in {v["name"] for v in pod["volumes"]}


# -- engine transformers (transformers serve, the CPU engine) ------------------------------


def cpu_spec(**kw: Any) -> ModelServeSpec:
    return spec(engine="transformers", resources={"gpusPerNode": 0}, **kw)


def test_transformers_engine_renders_transformers_serve_without_gpus() -> None:
    ch = build(cpu_spec(port=8080))
    cfg = json.loads(ch.config_map["data"]["config.json"])
    s = cfg["spec"]
    assert s["engine"] == "transformers"
    assert s["modelPath"] == "/mnt/pvc/models/m/7b"
    # the name the LMDeploy path serves (--model-name), so an Agent works with either engine
    assert s["servedModelName"] == ch.served_model_name == "chat"
    got = flags(s["args"])
    assert got["--port"] == "8080" and got["--host"] == "0.0.0.0"
    assert got["--device"] == "cpu" and got["--dtype"] == "auto"
    assert "--trust-remote-code" in s["args"]
    assert not {"--backend", "--tp", "--model-name", "--server-port"} & set(s["args"])
    pod = ch.deployment["spec"]["template"]["spec"]
    c = pod["containers"][0]
    assert c["command"] == ["python", "-m", "internlm_workloads", "serve"]
    assert "nvidia.com/gpu" not in json.dumps(c.get("resources", {}))
    assert c["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    # the same probe contract as LMDeploy: the model list answers once the weights are loaded
    assert c["startupProbe"]["httpGet"] == {"path": "/v1/models", "port": "http"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/v1/models", "port": "http"}
    assert c["livenessProbe"]["tcpSocket"] == {"port": "http"}
    assert ch.service["spec"]["ports"][0]["port"] == 8080
    assert ch.endpoint == "http://chat-ms.ns1.svc.cluster.local:8080/v1"
    parsed = parse_config(cfg, "serve")  # the workload accepts what the operator renders
    assert parsed.spec.engine == "transformers" and parsed.spec.served_model_name == "chat"


def test_transformers_engine_keeps_a_gpu_request_and_lets_torch_choose() -> None:
    """An unmodified spec (gpusPerNode 1) still asks for nvidia.com/gpu: the real node advertises
    it; --device auto uses a GPU that exists and falls back to CPU where none does."""
    ch = build(spec(engine="transformers", servedModelName="internlm2-chat"))
    c = ch.deployment["spec"]["template"]["spec"]["containers"][0]
    assert c["resources"]["limits"]["nvidia.com/gpu"] == "1"
    cfg = json.loads(ch.config_map["data"]["config.json"])
    assert flags(cfg["spec"]["args"])["--device"] == "auto"
    assert cfg["spec"]["servedModelName"] == ch.served_model_name == "internlm2-chat"


def test_lmdeploy_engines_render_lmdeploy_unchanged() -> None:
    cfg = json.loads(build(spec(engine="pytorch")).config_map["data"]["config.json"])
    assert "engine" not in cfg["spec"] and flags(cfg["spec"]["args"])["--backend"] == "pytorch"
    assert parse_config(cfg, "serve").spec.engine == "lmdeploy"


@pytest.mark.parametrize(
    ("fields", "what"),
    [
        ({"tensorParallel": 2, "resources": {"gpusPerNode": 2}}, "tensorParallel > 1"),
        ({"quantization": {"weights": "awq"}}, "quantization"),
        ({"quantization": {"kvCacheBits": 8}}, "quantization"),
        ({"sessionLen": 4096}, "sessionLen"),
        ({"maxBatchSize": 8}, "maxBatchSize"),
        ({"cacheMaxEntryCount": 0.5}, "cacheMaxEntryCount"),
        ({"apiKeySecret": {"name": "keys", "key": "k"}}, "apiKeySecret"),
        (
            {"adapters": [{"name": "a", "source": {"pvc": {"claimName": "x", "path": "a"}}}]},
            "adapters require engine pytorch",
        ),
    ],
)
def test_lmdeploy_only_options_are_refused_with_engine_transformers(
    fields: dict[str, Any], what: str
) -> None:
    base: dict[str, Any] = {"engine": "transformers", "resources": {"gpusPerNode": 0}}
    with pytest.raises(ValueError, match=re.escape(what)) as err:
        spec(**{**base, **fields})
    if "adapters" not in fields:
        assert "is an LMDeploy option: use engine turbomind or pytorch" in str(err.value)


def test_no_gpu_is_only_allowed_for_the_cpu_engine() -> None:
    with pytest.raises(ValueError, match="non-zero multiple of tensorParallel"):
        spec(resources={"gpusPerNode": 0})
    assert cpu_spec().resources.gpus_per_node == 0


def test_workload_refuses_transformers_without_a_served_name() -> None:
    cfg = json.loads(build(cpu_spec()).config_map["data"]["config.json"])
    del cfg["spec"]["servedModelName"]
    with pytest.raises(Exception, match="servedModelName: required with engine transformers"):
        parse_config(cfg, "serve")
