"""framework internevo: the parallel layout the operator picks (a pure choice) and the config it
renders in InternEvo's own terms. tests/workloads/test_internevo.py loads these configs with
InternEvo's own loader and checks."""

from __future__ import annotations

import ast
import copy
from typing import Any

import pytest
from internlm_operator.api.v1alpha1 import parse
from internlm_operator.runtimes import InvalidSpec, RenderContext, for_resource
from internlm_operator.runtimes.internevo import layout, model_dict

# InternLM2-7B's Hugging Face config.json (the keys that matter)
INTERNLM2_7B = {
    "architectures": ["InternLM2ForCausalLM"],
    "model_type": "internlm2",
    "hidden_size": 4096,
    "intermediate_size": 14336,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "vocab_size": 92544,
    "rms_norm_eps": 1e-5,
    "rope_theta": 1000000,
    "max_position_embeddings": 32768,
    "bos_token_id": 1,
    "torch_dtype": "bfloat16",
}


def trainjob(**spec: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "apiVersion": "internlm.io/v1alpha1",
        "kind": "TrainJob",
        "metadata": {"name": "evo"},
        "spec": {
            "framework": "internevo",
            "model": {"config": copy.deepcopy(INTERNLM2_7B)},
            "data": {"pvc": {"claimName": "corpus", "path": "tok"}, "format": "tokenized"},
            "output": {"pvc": {"claimName": "store", "path": "evo"}},
            "nodes": 1,
            "resources": {"gpusPerNode": 8},
            "optimization": {"globalBatchSize": 64, "microBatchSize": 2, "maxSteps": 100},
        },
    }
    for k, v in spec.items():
        doc["spec"][k] = v
    return doc


def render(doc: dict[str, Any]) -> dict[str, str]:
    spec = parse(doc).spec
    ctx = RenderContext(
        kind="TrainJob",
        namespace="ns",
        name=doc["metadata"]["name"],
        uid="u",
        spec=spec,
        paths={"data": "/mnt/data/tok"},
        output_dir="/mnt/output/evo",
        nodes=spec.nodes,
        gpus_per_node=spec.resources.gpus_per_node,
    )
    return for_resource("TrainJob", spec).render(ctx).files


def config_values(text: str) -> dict[str, Any]:
    """The rendered config's assignments, evaluated as plain Python (no InternEvo here)."""
    ns: dict[str, Any] = {}
    exec(compile(ast.parse(text), "internevo_config.py", "exec"), ns)
    return {k: v for k, v in ns.items() if not k.startswith("__")}


# (nodes, gpusPerNode, parallelism) -> (data, InternEvo tensor size, mode, zero1)
LAYOUTS = [
    # one node: zero1 = the node's 8 GPUs (= the whole data-parallel group)
    (1, 8, {}, (8, 1, "mtp", 8)),
    # 4 and 128 nodes: zero1 stays at 8, within a node (InternEvo: 88.9% vs 55.9% at 1,024)
    (4, 8, {}, (32, 1, "mtp", 8)),
    (128, 8, {}, (1024, 1, "mtp", 8)),
    # tensor 2: a zero1 group spans tensor x zero1 consecutive ranks, so 4 per 8-GPU node
    (4, 8, {"tensor": 2}, (16, 2, "mtp", 4)),
    (4, 8, {"tensor": 8}, (4, 8, "mtp", 1)),
    # pipeline 4 over 4 nodes: each stage is a node, data 8
    (4, 8, {"pipeline": 4}, (8, 1, "mtp", 8)),
    (4, 8, {"tensor": 2, "pipeline": 2}, (8, 2, "mtp", 4)),
    # sequence parallelism is InternEvo's isp: its tensor size is the sequence size, zero1
    # shards the weight-data-parallel group (world / weight) within a node
    (2, 8, {"sequence": 4, "weight": 2}, (4, 4, "isp", 4)),
    # capped by the data-parallel size: 2 GPUs, or no GPUs (one process per node)
    (1, 2, {}, (2, 1, "mtp", 2)),
    (2, 0, {}, (2, 1, "mtp", 1)),
    # the user's choice wins
    (4, 8, {"zero1": -1}, (32, 1, "mtp", 32)),
    (4, 8, {"zero1": 16}, (32, 1, "mtp", 16)),
    (4, 8, {"zeroStage": 0}, (32, 1, "mtp", 1)),
]


@pytest.mark.parametrize(("nodes", "gpus", "par", "want"), LAYOUTS)
def test_layout_the_operator_picks(
    nodes: int, gpus: int, par: dict[str, int], want: tuple[int, int, str, int]
) -> None:
    kw = {"zero_stage" if k == "zeroStage" else k: v for k, v in par.items()}
    lay = layout(nodes, gpus, **kw)
    assert (lay.data, lay.tensor, lay.mode, lay.zero1) == want, lay.describe()
    # and it is what the rendered config says
    doc = trainjob(nodes=nodes, resources={"gpusPerNode": gpus}, parallelism=par)
    doc["spec"]["optimization"]["globalBatchSize"] = 2 * lay.data * 4
    text = render(doc)["internevo_config.py"]
    assert f"# layout: {lay.describe()}" in text
    p = config_values(text)["parallel"]
    assert p["zero1"] == {"size": want[3], "fsdp": False}
    assert p["tensor"] == {"size": want[1], "mode": want[2]}
    assert p["pipeline"]["size"] == par.get("pipeline", 1)
    assert p["weight"]["size"] == par.get("weight", 1)
    assert p["sequence_parallel"] is (want[2] == "isp")


@pytest.mark.parametrize(
    ("par", "needle"),
    [
        ({"sequence": 2, "tensor": 2}, "isp mode, which has no tensor parallelism"),
        ({"weight": 2}, "needs parallelism.sequence > 1"),
        ({"zero1": 3}, "parallelism.zero1 3 must divide the data-parallel size 32"),
        ({"zero1": 64}, "must divide"),
    ],
)
def test_layouts_internevo_cannot_run(par: dict[str, int], needle: str) -> None:
    with pytest.raises(InvalidSpec, match=needle):
        render(trainjob(nodes=4, parallelism=par))


def test_model_in_internevo_terms() -> None:
    model_type, model, unused = model_dict(INTERNLM2_7B)
    assert model_type == "INTERNLM2_PUBLIC"
    assert model == {
        "num_layers": 32,
        "hidden_size": 4096,
        "num_attention_heads": 32,
        "num_kv_attention_heads": 8,
        "vocab_size": 92544,
        "layer_norm_epsilon": 1e-5,
        "rope_base": 1000000,
        "max_position_embeddings": 32768,
        "mlp_ratio": 3.5,
    }
    assert unused == ["bos_token_id", "torch_dtype"]
    llama = {"architectures": ["LlamaForCausalLM"], "num_hidden_layers": 2, "hidden_size": 64}
    llama |= {"num_attention_heads": 4, "vocab_size": 256, "intermediate_size": 172}
    assert model_dict(llama)[0] == "LLAMA2"
    # a key the model type's builder has no parameter for is dropped and named
    t, m, unused = model_dict({**llama, "max_position_embeddings": 4096})
    assert "max_position_embeddings" not in m and unused == ["max_position_embeddings"]
    # InternEvo's own names pass through
    native = {"model_type": "INTERNLM", "num_layers": 2, "hidden_size": 64, "mlp_ratio": 2}
    native |= {"num_attention_heads": 4, "vocab_size": 256}
    t, m, _ = model_dict(native)
    assert t == "INTERNLM" and m["mlp_ratio"] == 2 and "num_kv_attention_heads" not in m
    with pytest.raises(InvalidSpec, match="lacks num_layers"):
        model_dict({"hidden_size": 64, "num_attention_heads": 4, "vocab_size": 8})
    with pytest.raises(InvalidSpec, match="architectures is"):
        model_dict({**INTERNLM2_7B, "architectures": ["Qwen2ForCausalLM"]})


def test_rendered_config_data_checkpoint_and_schedule() -> None:
    doc = trainjob(
        nodes=4,
        checkpoint={"interval": 250, "resume": True},
        optimization={
            "globalBatchSize": 256,
            "microBatchSize": 2,
            "seqLength": 2048,
            "maxSteps": 1000,
            "warmupSteps": 10,
            "learningRate": 2e-4,
            "minLearningRate": 2e-5,
            "precision": "bf16",
        },
    )
    c = config_values(render(doc)["internevo_config.py"])
    assert c["model_type"] == "INTERNLM2_PUBLIC" and c["JOB_NAME"] == "evo"
    assert c["model"]["dtype"] == "torch.bfloat16" and c["model"]["num_layers"] == 32
    # no flash-attn in the image: InternEvo's unpacked path (they must agree)
    assert c["model"]["use_flash_attn"] is c["data"]["use_packed_dataset"] is False
    d = c["data"]
    # 256 sequences = micro_bsz 2 x micro_num 4 x data parallel 32
    assert (d["seq_len"], d["micro_bsz"], d["micro_num"], d["total_steps"]) == (2048, 2, 4, 1000)
    assert d["train_folder"] == "/mnt/data/tok" and d["type"] == "tokenized"
    k = c["ckpt"]
    assert k["save_ckpt_folder"] == "local:/mnt/output/evo/checkpoints"
    assert k["checkpoint_every"] == 250 and k["auto_resume"] is True
    assert k["stop_file_path"] == "/mnt/output/evo/internevo-stop"
    assert c["lr_scheduler"]["warmup_ratio"] == 0.01 and c["lr_scheduler"]["eta_min"] == 2e-5
    assert c["adam"]["lr"] == 2e-4
    const = trainjob(optimization={"globalBatchSize": 64, "microBatchSize": 2, "maxSteps": 9})
    const["spec"]["optimization"]["lrSchedule"] = "constant"
    assert config_values(render(const)["internevo_config.py"])["lr_scheduler"]["eta_min"] == 3e-4


@pytest.mark.parametrize(
    ("mutate", "needle"),
    [
        (lambda s: s["optimization"].update(lrSchedule="linear"), "cosine warmup only"),
        (
            lambda s: s.update(model={"source": {"huggingFace": {"repo": "internlm/x"}}}),
            "continuing from model.source weights is not supported yet",
        ),
    ],
)
def test_specs_internevo_cannot_run(mutate: Any, needle: str) -> None:
    doc = trainjob()
    mutate(doc["spec"])
    with pytest.raises(InvalidSpec, match=needle):
        render(doc)


def test_deepspeed_refuses_internevo_only_fields() -> None:
    for par in ({"zero1": 8}, {"weight": 2, "sequence": 1}):
        doc = trainjob(parallelism=par)
        doc["spec"]["framework"] = "deepspeed"
        with pytest.raises(InvalidSpec, match="framework deepspeed shards with"):
            render(doc)


def test_the_sample_renders_the_layout_it_documents() -> None:
    from pathlib import Path

    import yaml

    path = Path(__file__).resolve().parents[2] / "samples" / "trainjob-internevo.yaml"
    doc = yaml.safe_load(path.read_text())
    text = render(doc)["internevo_config.py"]
    assert (
        "# layout: 32 processes: data 32 x tensor 1 (mtp) x pipeline 1, weight 1, zero1 8" in text
    )
    c = config_values(text)
    assert c["parallel"]["zero1"]["size"] == 8
    assert (c["data"]["micro_bsz"], c["data"]["micro_num"]) == (4, 8)  # 1024 = 4 x 8 x 32
    assert c["model"]["mlp_ratio"] == 4.0 and c["model"]["num_kv_attention_heads"] == 8
    # tokenBudget / (globalBatchSize x seqLength), rounded up
    assert c["TOTAL_STEP"] == -(-200_000_000_000 // (1024 * 4096))


@pytest.mark.parametrize(("framework", "model"), [("internevo", None), ("deepspeed", "hf")])
def test_a_succeeded_trainjob_claims_a_model_only_when_its_framework_writes_one(
    framework: str, model: str | None
) -> None:
    import datetime as dt

    from internlm_operator.reconcilers.trainjob import finish

    doc = trainjob(framework=framework)
    if framework == "deepspeed":
        doc["spec"]["model"] = {"source": {"pvc": {"claimName": "corpus", "path": "m"}}}
    spec = parse({**doc, "metadata": {"name": "evo", "namespace": "ns"}}).spec
    result = {"ok": True, "checkpoint": {"step": 100, "path": "/mnt/output/checkpoints/100"}}
    st = finish({"phase": "Succeeded"}, result, spec, "/mnt/output", dt.datetime.now(dt.UTC), 1, {})
    got = (st.get("outputs") or {}).get("model")
    assert (got is None) == (model is None), st
    assert got is None or got.endswith(f"/{model}"), st
