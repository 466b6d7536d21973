"""Builder and runtime tables: spec -> ConfigMap / Service / Job, and the rendered configs are
accepted by the workload side's own config parser (the contract, checked from both ends)."""

from __future__ import annotations

import ast
import copy
import json
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from internlm_operator.api.v1alpha1 import parse
from internlm_operator.builders import BatchInputs, Owner, build, source_location, to_location
from internlm_operator.runtimes import REGISTRY, InvalidSpec

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "images" / "workloads" / "src"))
from internlm_workloads.config import parse_config  # noqa: E402


def load(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((REPO / "samples" / f"{name}.yaml").read_text())
    return doc


def children(doc: dict[str, Any], **kw: Any) -> Any:
    m = parse(doc)
    md = doc["metadata"]
    owner = Owner(
        "internlm.io/v1alpha1", doc["kind"], "ns", md["name"], "uid-1", 1, md.get("labels") or {}
    )
    return build(BatchInputs(owner, m.spec, image="img:1", **kw))


def container(ch: Any) -> dict[str, Any]:
    c: dict[str, Any] = ch.job["spec"]["template"]["spec"]["containers"][0]
    return c


def env(ch: Any) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container(ch)["env"]}


@pytest.mark.parametrize(
    "sample,stage,files,nodes,gpus,svc",
    [
        ("trainjob", "pretrain", {"config.json", "ds_config.json"}, 2, "8", True),
        ("finetune", "finetune", {"config.json", "xtuner_config.py"}, 1, "4", False),
        ("evalrun", "eval", {"config.json", "opencompass_config.py"}, 1, "2", False),
    ],
)
def test_sample_children(
    sample: str, stage: str, files: set[str], nodes: int, gpus: str, svc: bool
) -> None:
    doc = load(sample)
    ch = children(doc)
    name = doc["metadata"]["name"]
    short = {"trainjob": "tj", "finetune": "ft", "evalrun": "er"}[sample]
    assert ch.job_name == f"{name}-{short}"
    assert ch.config_map["metadata"]["name"] == f"{name}-{short}-config"
    assert set(ch.config_map["data"]) == files
    assert (ch.service is not None) == svc
    cfg = json.loads(ch.config_map["data"]["config.json"])
    parsed = parse_config(cfg, stage)  # the workload accepts what the operator renders
    assert parsed.resource is not None and parsed.resource.name == name
    spec = ch.job["spec"]
    assert spec["completions"] == spec["parallelism"] == nodes
    assert spec["completionMode"] == "Indexed" and spec["backoffLimit"] == 0
    assert container(ch)["resources"]["limits"]["nvidia.com/gpu"] == gpus
    assert container(ch)["command"] == ["python", "-m", "internlm_workloads", stage]
    assert container(ch)["terminationMessagePolicy"] == "FallbackToLogsOnError"
    for m in ch.all():
        md = m["metadata"]
        assert md["ownerReferences"][0]["uid"] == "uid-1"
        assert md["labels"]["app.kubernetes.io/managed-by"] == "internlm-operator"
        assert md["labels"]["app.kubernetes.io/instance"] == name
    e = env(ch)
    assert e["INTERNLM_CONFIG"] == "/etc/internlm/config.json"
    assert e["INTERNLM_STAGE"] == stage
    assert e["INTERNLM_PROGRESS_PORT"] == "9400"
    assert e["NNODES"] == str(nodes)


def test_builds_are_deterministic_and_hash_tracks_spec() -> None:
    doc = load("trainjob")
    a, b = children(doc), children(copy.deepcopy(doc))
    assert a.job == b.job and a.config_map == b.config_map and a.spec_hash == b.spec_hash
    doc["spec"]["optimization"]["learningRate"] = 0.0002
    assert children(doc).spec_hash != a.spec_hash
    suspended = copy.deepcopy(load("trainjob"))
    suspended["spec"]["suspend"] = True
    assert children(suspended).spec_hash == a.spec_hash  # suspend is not a pod change


def test_queue_label_and_scheduling_pass_through() -> None:
    doc = load("trainjob")
    doc["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] = "team-a"
    doc["spec"]["scheduling"].update(
        {"priorityClassName": "high", "schedulerName": "volcano", "nodeSelector": {"pool": "a100"}}
    )
    ch = children(doc)
    assert all(m["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-a" for m in ch.all())
    pod = ch.job["spec"]["template"]["spec"]
    assert pod["priorityClassName"] == "high" and pod["schedulerName"] == "volcano"
    assert pod["nodeSelector"] == {
        "pool": "a100",
        "nvidia.com/gpu.product": "NVIDIA-H200",
    }


def test_torchrun_rendezvous_env() -> None:
    ch = children(load("trainjob"))
    e = env(ch)
    assert e["MASTER_ADDR"] == f"{ch.job_name}-0.{ch.job_name}"
    assert e["NPROC_PER_NODE"] == "8" and e["MASTER_PORT"] == "29500"
    assert e["NODE_RANK"]["fieldRef"]["fieldPath"].endswith(
        "['batch.kubernetes.io/job-completion-index']"
    )
    assert ch.job["spec"]["template"]["spec"]["subdomain"] == ch.service["metadata"]["name"]
    assert ch.service["spec"]["clusterIP"] == "None"


def test_checkpoint_on_stop_sets_the_pods_grace_period_and_the_workload_config() -> None:
    doc = load("trainjob")
    ch = children(doc)
    pod = ch.job["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] == 300  # the default: room for one checkpoint
    cfg = json.loads(ch.config_map["data"]["config.json"])
    assert cfg["spec"]["checkpoint"]["onStop"] is True
    assert cfg["spec"]["checkpoint"]["stopGraceSeconds"] == 300
    parse_config(cfg)  # the workload side reads the same keys

    doc = copy.deepcopy(doc)
    doc["spec"].setdefault("checkpoint", {}).update(stopGracePeriodSeconds=900)
    assert children(doc).job["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 900
    doc["spec"]["checkpoint"]["onStop"] = False
    ch = children(doc)
    assert "terminationGracePeriodSeconds" not in ch.job["spec"]["template"]["spec"]
    assert json.loads(ch.config_map["data"]["config.json"])["spec"]["checkpoint"]["onStop"] is False
    doc["spec"]["checkpoint"]["stopGracePeriodSeconds"] = 5
    with pytest.raises(ValueError, match="stopGracePeriodSeconds"):
        parse(doc)


def test_deepspeed_config_math() -> None:
    ds = json.loads(children(load("trainjob")).config_map["data"]["ds_config.json"])
    assert ds["train_batch_size"] == 512
    assert ds["train_micro_batch_size_per_gpu"] == 2
    assert ds["gradient_accumulation_steps"] == 16  # 512 / (2 x 16 ranks)
    assert ds["zero_optimization"]["stage"] == 2
    assert ds["scheduler"]["type"] == "WarmupCosineLR"
    assert ds["scheduler"]["params"]["warmup_num_steps"] == 200


@pytest.mark.parametrize("schedule", ["cosine", "linear", "constant"])
def test_deepspeed_scheduler_warmup_is_never_zero(schedule: str) -> None:
    """DeepSpeed's Warmup* schedulers raise on warmup_num_steps 0 (the API's default)."""
    doc = load("trainjob")
    doc["spec"]["optimization"].update(warmupSteps=0, lrSchedule=schedule)
    ds = json.loads(children(doc).config_map["data"]["ds_config.json"])
    assert ds["scheduler"]["params"]["warmup_num_steps"] == 1
    assert ds["scheduler"]["params"]["warmup_type"] == "linear"


def test_deepspeed_data_parallel_without_gpus_is_one_process_per_node() -> None:
    """gpusPerNode 0: NPROC_PER_NODE is 1, so the data-parallel size is the node count."""
    doc = load("trainjob")
    doc["spec"]["resources"]["gpusPerNode"] = 0
    doc["spec"]["optimization"].update(globalBatchSize=8, microBatchSize=2)
    ch = children(doc)
    ds = json.loads(ch.config_map["data"]["ds_config.json"])
    assert env(ch)["NPROC_PER_NODE"] == "1" and env(ch)["NNODES"] == "2"
    assert ds["gradient_accumulation_steps"] == 2  # 8 / (2 x 2 processes)


def test_internevo_renders_its_config() -> None:
    doc = load("trainjob")
    doc["spec"]["framework"] = "internevo"
    # InternEvo builds the architecture from its config (tests/unit/test_internevo.py)
    doc["spec"]["model"] = {
        "config": {
            "architectures": ["InternLM2ForCausalLM"],
            "model_type": "internlm2",
            "num_hidden_layers": 2,
            "hidden_size": 64,
            "num_attention_heads": 4,
            "vocab_size": 256,
        }
    }
    ch = children(doc)
    assert "internevo_config.py" in ch.config_map["data"]
    assert "TOTAL_STEP = 5000" in ch.config_map["data"]["internevo_config.py"]
    parse_config(json.loads(ch.config_map["data"]["config.json"]), "pretrain")


@pytest.mark.parametrize(
    "mutate,needle",
    [
        (
            lambda s: s["optimization"].update(globalBatchSize=8, microBatchSize=1),
            "globalBatchSize",
        ),
        (lambda s: s["optimization"].pop("maxSteps"), "maxSteps"),
        # ZeRO data parallelism only: a model-parallel size would leave DeepSpeed's batch
        # sizes inconsistent with the processes it runs
        (
            lambda s: s["parallelism"].update(tensor=2),
            "parallelism.tensor 2 is not supported by framework deepspeed",
        ),
        (
            lambda s: s["parallelism"].update(sequence=4),
            "parallelism.sequence 4 is not supported by framework deepspeed",
        ),
    ],
)
def test_invalid_specs_are_permanent_errors(mutate: Any, needle: str) -> None:
    doc = load("trainjob")
    mutate(doc["spec"])
    with pytest.raises(InvalidSpec, match=needle):
        children(doc)


def test_name_too_long_is_invalid() -> None:
    doc = load("trainjob")
    doc["metadata"]["name"] = "x" * 62
    with pytest.raises(InvalidSpec, match="too long"):
        children(doc)


def test_upstream_location_mounts_pvc() -> None:
    doc = load("finetune")
    doc["spec"]["model"] = {"fromResource": {"kind": "TrainJob", "name": "a"}}
    ch = children(doc, upstream={"model": "pvc://model-store/runs/a/hf"})
    cfg = json.loads(ch.config_map["data"]["config.json"])
    assert cfg["spec"]["modelPath"] == "/mnt/pvc/model-store/runs/a/hf"
    mounts = {m["mountPath"]: m for m in container(ch)["volumeMounts"]}
    assert mounts["/mnt/pvc/model-store"]["readOnly"] is False  # also the output claim


def test_locations_round_trip() -> None:
    assert to_location("/mnt/pvc/store/a/hf", "", None) == "pvc://store/a/hf"
    m = parse(load("trainjob")).spec
    assert source_location(m.data) == "pvc://pretrain-corpus/tokenized/internlm2"
    assert source_location(m.model.source) == "hf://internlm/internlm2_5-7b@main"


def test_registry_has_every_framework() -> None:
    assert set(REGISTRY) == {
        "deepspeed",
        "internevo",
        "xtuner",
        "opencompass",
        "lmdeploy",
        "transformers",
        "lagent",
    }


DEFAULTS = {"requests": {"cpu": "2", "memory": "8Gi"}, "limits": {"memory": "16Gi"}}


@pytest.mark.parametrize(
    "spec_resources,defaults,requests,limits",
    [
        # no defaults: only what the spec sets (request = limit)
        ({"gpusPerNode": 8, "cpu": "64", "memory": "800Gi"}, {}, None, None),
        # defaults fill cpu and memory the spec leaves out, request and limit separately
        (
            {"gpusPerNode": 8},
            DEFAULTS,
            {"nvidia.com/gpu": "8", "cpu": "2", "memory": "8Gi"},
            {"nvidia.com/gpu": "8", "memory": "16Gi"},
        ),
        # the spec wins per resource: its cpu, the default memory
        (
            {"gpusPerNode": 8, "cpu": "64"},
            DEFAULTS,
            {"nvidia.com/gpu": "8", "cpu": "64", "memory": "8Gi"},
            {"nvidia.com/gpu": "8", "cpu": "64", "memory": "16Gi"},
        ),
        # the spec sets both: defaults play no part
        (
            {"gpusPerNode": 8, "cpu": "64", "memory": "800Gi"},
            DEFAULTS,
            {"nvidia.com/gpu": "8", "cpu": "64", "memory": "800Gi"},
            {"nvidia.com/gpu": "8", "cpu": "64", "memory": "800Gi"},
        ),
        # GPUs only ever come from the spec, even when the defaults name some
        (
            {"gpusPerNode": 0},
            {"requests": {"nvidia.com/gpu": "4", "cpu": "1"}, "limits": {"nvidia.com/gpu": "4"}},
            {"cpu": "1"},
            None,
        ),
    ],
)
def test_default_resources_fill_cpu_and_memory(
    spec_resources: dict[str, Any],
    defaults: dict[str, Any],
    requests: dict[str, str] | None,
    limits: dict[str, str] | None,
) -> None:
    doc = load("trainjob")
    doc["spec"]["resources"] = {**spec_resources, "sharedMemory": "64Gi"}
    res = container(children(doc, default_resources=defaults)).get("resources", {})
    if requests is None and limits is None:  # exactly the spec's, as before defaults existed
        amounts = {k: str(v) for k, v in spec_resources.items() if k in ("cpu", "memory")}
        amounts = {"nvidia.com/gpu": str(spec_resources["gpusPerNode"]), **amounts}
        assert res == {"requests": amounts, "limits": amounts}
        return
    assert res.get("requests") == requests
    assert res.get("limits") == limits


def test_default_resources_change_the_spec_hash() -> None:
    doc = load("evalrun")
    doc["spec"]["resources"] = {"gpusPerNode": 1}
    a = children(doc)
    b = children(doc, default_resources={"requests": {"cpu": "4"}})
    assert a.spec_hash != b.spec_hash
    assert container(b)["resources"]["requests"] == {"nvidia.com/gpu": "1", "cpu": "4"}


def volumes(ch: Any) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in ch.job["spec"]["template"]["spec"]["volumes"]}


@pytest.mark.parametrize(
    "sample,size,fetches",
    [
        ("trainjob", "500Gi", ["fetch-model"]),  # model from the Hub, corpus on a PVC
        ("finetune", "200Gi", ["fetch-model", "fetch-dataset"]),
        ("evalrun", "200Gi", ["fetch-model"]),
    ],
)
def test_hub_cache_is_an_ephemeral_volume_with_a_storage_class(
    sample: str, size: str, fetches: list[str]
) -> None:
    doc = load(sample)
    plain = children(doc)
    assert volumes(plain)["inputs"] == {"name": "inputs", "emptyDir": {}}  # no class: as before

    ch = children(doc, storage_class="fast-nvme")
    pod = ch.job["spec"]["template"]["spec"]
    assert [c["name"] for c in pod["initContainers"]] == fetches
    for c in pod["initContainers"]:
        assert {"name": "inputs", "mountPath": "/mnt/inputs"} in c["volumeMounts"]
    template = volumes(ch)["inputs"]["ephemeral"]["volumeClaimTemplate"]
    assert set(volumes(ch)["inputs"]) == {"name", "ephemeral"}
    assert template["spec"] == {
        "accessModes": ["ReadWriteOnce"],
        "storageClassName": "fast-nvme",
        "resources": {"requests": {"storage": size}},
    }
    labels = template["metadata"]["labels"]
    assert labels["app.kubernetes.io/instance"] == doc["metadata"]["name"]
    assert labels["app.kubernetes.io/component"] == "cache"
    assert set(template["metadata"]) == {"labels"}  # the API allows only labels, annotations
    # everything else is unchanged, and the pod change is a spec change
    assert {k: v for k, v in volumes(ch).items() if k != "inputs"} == {
        k: v for k, v in volumes(plain).items() if k != "inputs"
    }
    assert ch.spec_hash != plain.spec_hash


def test_hub_cache_has_no_queue_label() -> None:
    doc = load("evalrun")
    doc["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] = "team-a"
    template = volumes(children(doc, storage_class="ssd"))["inputs"]["ephemeral"][
        "volumeClaimTemplate"
    ]
    assert "kueue.x-k8s.io/queue-name" not in template["metadata"]["labels"]


def test_no_hub_source_no_cache_volume_even_with_a_storage_class() -> None:
    doc = load("evalrun")
    doc["spec"]["target"]["model"] = {"pvc": {"claimName": "model-store", "path": "m"}}
    ch = children(doc, storage_class="fast-nvme")
    assert "inputs" not in volumes(ch)
    assert "initContainers" not in ch.job["spec"]["template"]["spec"]
    assert not any("ephemeral" in v for v in volumes(ch).values())


@pytest.mark.parametrize("fmt", ["mcq", "qa"])
def test_custom_dataset_format_reaches_the_workload_unchanged(fmt: str) -> None:
    doc = load("evalrun")
    doc["spec"]["customDatasets"] = [
        {"name": "domain", "format": fmt, "pvc": {"claimName": "evals", "path": "domain.jsonl"}},
        {"name": "plain", "pvc": {"claimName": "evals", "path": "plain.csv"}},  # default qa
    ]
    ch = children(doc)
    cfg = json.loads(ch.config_map["data"]["config.json"])
    assert cfg["spec"]["customDatasets"] == [
        {"name": "domain", "path": "/mnt/pvc/evals/domain.jsonl", "format": fmt},
        {"name": "plain", "path": "/mnt/pvc/evals/plain.csv", "format": "qa"},
    ]
    parsed = parse_config(cfg, "eval")  # the workload's own parser: mcq | qa
    assert [(c.name, c.format) for c in parsed.spec.custom_datasets] == [
        ("domain", fmt),
        ("plain", "qa"),
    ]
    # the OpenCompass config the workload runs lists them too, with data_type = format
    oc = ch.config_map["data"]["opencompass_config.py"]
    assert (
        f'datasets.append({{"abbr": "domain", "data_type": "{fmt}", "infer_method": "gen", '
        '"path": "/mnt/pvc/evals/domain.jsonl"})'
    ) in oc
    assert '"abbr": "plain", "data_type": "qa"' in oc
    compile(oc, "opencompass_config.py", "exec")  # valid Python


@pytest.mark.parametrize(
    "value,same_as_before",
    [
        (None, True),
        (True, True),
        ([1, 2.5, "x", False], True),
        ({"b": None, "a": [True, {"c": "d"}]}, True),
        ('quote " and \\ backslash\n', True),
        # JSON keywords inside strings stay as they are (the old text replacement broke them)
        ("/mnt/pvc/true-north/null/false.jsonl", False),
        ({"path": "/data/nullable", "flag": True}, False),
    ],
)
def test_py_literal_round_trips(value: Any, same_as_before: bool) -> None:
    from internlm_operator.runtimes.base import py_literal

    text = py_literal(value)
    assert ast.literal_eval(text) == value
    old = (
        json.dumps(value, sort_keys=True)
        .replace("true", "True")
        .replace("false", "False")
        .replace("null", "None")
    )
    # the same spelling wherever the old one was right: no config-hash churn on upgrade
    assert (text == old) is same_as_before


def test_xtuner_config_is_a_complete_xtuner_config() -> None:
    """Not a parameter list: model, tokenizer, dataset + map fn, template, loop, hooks, work dir
    (the workload runs it as is; tests/workloads runs it for real)."""
    ch = children(load("finetune"))
    x = ch.config_map["data"]["xtuner_config.py"]
    tree = ast.parse(x)
    assigned = {t.id for n in tree.body if isinstance(n, ast.Assign) for t in n.targets}  # type: ignore[attr-defined]
    assert {
        "model",
        "tokenizer",
        "train_dataset",
        "train_dataloader",
        "optim_wrapper",
        "param_scheduler",
        "train_cfg",
        "default_hooks",
        "work_dir",
    } <= assigned
    assert "from xtuner.dataset.map_fns import alpaca_map_fn, template_map_fn_factory" in x
    assert "prompt_template = PROMPT_TEMPLATE.internlm2_chat" in x
    assert 'target_modules=["wqkv", "wo", "w1", "w2", "w3"]' in x
    assert "BitsAndBytesConfig" not in x
    assert 'work_dir = "/mnt/pvc/model-store/finetunes/internlm2-5-7b-chat-lora/work_dirs"' in x
    assert "deepspeed_stage = 2" in x and "accumulative_counts = 16" in x
    # a Hub dataset arrives as a directory: load_dataset picks the format
    assert "dataset=dict(type=load_dataset, path=data_path)" in x


@pytest.mark.parametrize(
    "method,path,expect,absent",
    [
        ("qlora", "d/a.jsonl", ["quantization_config=dict(type=BitsAndBytesConfig"], []),
        ("full", "d/a.json", ["lora=None"], ["LoraConfig"]),
        ("lora", "d/a.parquet", ['path="parquet", data_files=dict(train=data_path)'], []),
    ],
)
def test_xtuner_config_methods_and_dataset_files(
    method: str, path: str, expect: list[str], absent: list[str]
) -> None:
    doc = load("finetune")
    doc["spec"]["method"] = method
    doc["spec"]["dataset"] = {"pvc": {"claimName": "data", "path": path}, "format": "openai"}
    if method == "full":
        doc["spec"].pop("lora")
        doc["spec"]["produce"] = "merged"
    x = children(doc).config_map["data"]["xtuner_config.py"]
    compile(x, "xtuner_config.py", "exec")
    assert "openai_map_fn" in x
    assert all(e in x for e in expect), x
    assert not any(a in x for a in absent)


def test_evalrun_named_datasets_from_their_real_modules() -> None:
    doc = load("evalrun")
    doc["spec"]["datasets"] = ["gsm8k_gen", "ARC_c_gen", "IFEval_gen"]
    oc = children(doc).config_map["data"]["opencompass_config.py"]
    assert "from opencompass.configs.datasets.gsm8k.gsm8k_gen import gsm8k_datasets as _d" in oc
    assert "from opencompass.configs.datasets.ARC_c.ARC_c_gen import ARC_c_datasets" in oc
    assert "from opencompass.configs.datasets.IFEval.IFEval_gen import ifeval_datasets" in oc
    assert "datasets = [*_datasets_0, *_datasets_1, *_datasets_2]" in oc
    assert "type=HuggingFacewithChatTemplate" in oc and "run_cfg=dict(num_gpus=2)" in oc
    compile(oc, "opencompass_config.py", "exec")


def test_evalrun_unknown_dataset_is_a_permanent_error() -> None:
    doc = load("evalrun")
    doc["spec"]["datasets"] = ["gsm8k_gen", "no_such_dataset_gen"]
    doc["spec"]["thresholds"] = None
    with pytest.raises(InvalidSpec, match="'no_such_dataset_gen' is not an OpenCompass dataset"):
        children(doc)


@pytest.mark.parametrize("tokenizer", [None, "/mnt/pvc/models/tok"])
def test_evalrun_endpoint_model_works_offline(tokenizer: str | None) -> None:
    """An endpoint is queried through OpenAISDK with the API key from the environment; it
    counts tokens with the local tokenizer, or (none given) by estimate -- never tiktoken."""
    from internlm_operator.runtimes import RenderContext
    from internlm_operator.runtimes.opencompass import RUNTIME

    doc = load("evalrun")
    doc["spec"]["target"] = {"endpoint": {"url": "http://ms:23333/v1", "model": "m"}}
    spec = parse(doc).spec
    paths = {"tokenizer": tokenizer} if tokenizer else {}
    ctx = RenderContext(
        "EvalRun", "ns", "e", "u", spec, paths, "/out",
        extra={"endpointUrl": "http://ms:23333/v1", "endpointModel": "m"},
    )  # fmt: skip
    files = RUNTIME.render(ctx).files
    oc = files["opencompass_config.py"]
    assert "key='ENV'" in oc and 'openai_api_base="http://ms:23333/v1"' in oc
    cfg = parse_config(json.loads(files["config.json"]), "eval")
    if tokenizer:
        assert "from opencompass.models import OpenAISDK" in oc
        assert f'tokenizer_path="{tokenizer}"' in oc
        assert cfg.spec.target.tokenizer_path == tokenizer
    else:
        assert (
            "from internlm_workloads.opencompass_models import OpenAISDKEstimatedTokens as "
            "OpenAISDK" in oc
        )
        assert "tokenizer_path=None" in oc


def test_evalrun_endpoint_tokenizer_is_mounted_and_rendered() -> None:
    doc = load("evalrun")
    doc["spec"]["target"] = {
        "endpoint": {"url": "http://ms:23333/v1", "model": "m"},
        "tokenizer": {"pvc": {"claimName": "models", "path": "internlm2/tok"}},
    }
    ch = children(doc, extra={"endpointUrl": "http://ms:23333/v1", "endpointModel": "m"})
    cfg = json.loads(ch.config_map["data"]["config.json"])
    assert cfg["spec"]["target"]["tokenizerPath"] == "/mnt/pvc/models/internlm2/tok"
    oc = ch.config_map["data"]["opencompass_config.py"]
    assert 'tokenizer_path="/mnt/pvc/models/internlm2/tok"' in oc
    assert "/mnt/pvc/models" in {m["mountPath"] for m in container(ch)["volumeMounts"]}
