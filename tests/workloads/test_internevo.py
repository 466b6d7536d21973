"""framework internevo, in the pretrain image's environment (InternEvo 0.4.9 from its lock):

- every config the operator renders (1 node, 4 nodes x 8 GPUs, tensor/pipeline > 1, isp,
  zero1 overridden) loads with InternEvo's own ``Config.from_file`` and passes InternEvo's own
  process-group construction and ``args_sanity_check`` for the job's world size, on torch's fake
  process group; InternEvo computes the layout the operator announced;
- InternEvo on CPU: it cannot train there (no CPU accelerator), the test pins the exact error,
  and the stage fails fast with that reason (docs/internevo.md).
"""

from __future__ import annotations

import copy
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from .conftest import HELPERS, free_port, image_env, make_stage, operator_rendered

pytestmark = pytest.mark.workload

TINY = {
    "architectures": ["InternLM2ForCausalLM"],
    "model_type": "internlm2",
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "vocab_size": 256,
    "rms_norm_eps": 1e-5,
    "rope_theta": 10000,
    "max_position_embeddings": 256,
}
INTERNLM2_7B = {
    **TINY,
    "hidden_size": 4096,
    "intermediate_size": 14336,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "vocab_size": 92544,
    "rope_theta": 1000000,
    "max_position_embeddings": 32768,
}
LLAMA = {**TINY, "architectures": ["LlamaForCausalLM"], "model_type": "llama"}


def trainjob(
    name: str, model: dict[str, Any], nodes: int, gpus: int, **spec: Any
) -> dict[str, Any]:
    return {
        "apiVersion": "internlm.io/v1alpha1",
        "kind": "TrainJob",
        "metadata": {"name": name},
        "spec": {
            "framework": "internevo",
            "model": {"config": copy.deepcopy(model)},
            "data": {"pvc": {"claimName": "corpus", "path": "tok"}, "format": "tokenized"},
            "output": {"pvc": {"claimName": "store", "path": name}},
            "nodes": nodes,
            "resources": {"gpusPerNode": gpus},
            "optimization": {"microBatchSize": 2, "seqLength": 2048, "maxSteps": 100},
            **spec,
        },
    }


# name, model, nodes, GPUs per node, parallelism, global batch
CASES = [
    ("one-node", INTERNLM2_7B, 1, 8, {}, 64),
    ("four-nodes", INTERNLM2_7B, 4, 8, {}, 256),
    ("tensor2", INTERNLM2_7B, 4, 8, {"tensor": 2}, 128),
    ("tensor2-pipeline2", INTERNLM2_7B, 4, 8, {"tensor": 2, "pipeline": 2}, 64),
    ("pipeline4", LLAMA, 4, 8, {"pipeline": 4}, 64),
    ("isp-sequence4-weight2", INTERNLM2_7B, 2, 8, {"sequence": 4, "weight": 2}, 32),
    ("zero1-whole-dp", INTERNLM2_7B, 4, 8, {"zero1": -1}, 256),
    ("cpu-one-process", TINY, 1, 0, {}, 4),
]


def render(doc: dict[str, Any], workdir: Path) -> tuple[Path, dict[str, Any]]:
    from internlm_operator.api.v1alpha1 import parse
    from internlm_operator.runtimes import RenderContext, for_resource
    from internlm_operator.runtimes.internevo import layout_for

    spec = parse(doc).spec
    ctx = RenderContext(
        kind="TrainJob",
        namespace="test",
        name=doc["metadata"]["name"],
        uid="0",
        spec=spec,
        paths={"data": str(workdir / "data")},
        output_dir=str(workdir / "output"),
        nodes=spec.nodes,
        gpus_per_node=spec.resources.gpus_per_node,
    )
    files = for_resource("TrainJob", spec).render(ctx).files
    path = workdir / "internevo_config.py"
    path.write_text(files["internevo_config.py"])
    lay = layout_for(ctx)
    return path, {
        "world": lay.world,
        "data": lay.data,
        "tensor": lay.tensor,
        "pipeline": lay.pipeline,
        "weight": lay.weight,
        "zero1": lay.zero1,
        "mode": lay.mode,
    }


def internevo_check(config: Path, world: int) -> dict[str, Any]:
    venv = image_env("pretrain")
    res = subprocess.run(
        [f"{venv}/bin/python", str(HELPERS / "internevo_check.py"), str(config), str(world)],
        capture_output=True,
        text=True,
        timeout=300,
        env={"PATH": "/usr/bin:/bin", "CUDA_VISIBLE_DEVICES": "", "HOME": str(config.parent)},
        check=False,
    )
    out = [x for x in res.stdout.splitlines() if x.startswith("RESULT ")]
    assert res.returncode == 0 and out, f"{res.stdout[-2000:]}\n{res.stderr[-4000:]}"
    got: dict[str, Any] = json.loads(out[-1][len("RESULT ") :])
    return got


@pytest.mark.timeout(900)
@pytest.mark.parametrize(("name", "model", "nodes", "gpus", "par", "batch"), CASES)
def test_every_rendered_config_passes_internevos_own_loader_and_checks(
    tmp_path: Path,
    name: str,
    model: dict[str, Any],
    nodes: int,
    gpus: int,
    par: dict[str, int],
    batch: int,
) -> None:
    doc = trainjob(name, model, nodes, gpus, parallelism=par)
    doc["spec"]["optimization"]["globalBatchSize"] = batch
    config, want = render(doc, tmp_path)
    got = internevo_check(config, want["world"])
    assert got["unknown_model_keys"] == [], got
    assert got["model_type"] == ("LLAMA2" if model is LLAMA else "INTERNLM2_PUBLIC")
    for key in ("world", "data", "tensor", "pipeline", "weight", "zero1", "mode"):
        assert got[key] == want[key], (key, got, want)
    assert got["sequence_parallel"] is (want["mode"] == "isp")
    # global batch = micro_bsz x micro_num x data parallel; InternEvo packs micro_bsz sequences
    assert 2 * got["micro_num"] * got["data"] == batch
    assert got["packed_length"] == 2 * 2048
    # the default zero1 group stays inside one node (ranks tensor-innermost, gpus per node)
    if "zero1" not in par:
        per_node = max(1, gpus)
        assert len({r // per_node for r in got["zero1_ranks"]}) == 1, got["zero1_ranks"]


@pytest.mark.timeout(600)
def test_the_internevo_sample_passes_internevos_own_checks(tmp_path: Path) -> None:
    import yaml

    sample = Path(__file__).resolve().parents[2] / "samples" / "trainjob-internevo.yaml"
    config, want = render(yaml.safe_load(sample.read_text()), tmp_path)
    got = internevo_check(config, want["world"])
    assert got["unknown_model_keys"] == [] and got["model_type"] == "INTERNLM2_PUBLIC", got
    assert (got["data"], got["zero1"], got["dtype"]) == (32, 8, "torch.bfloat16"), got
    assert len({r // 8 for r in got["zero1_ranks"]}) == 1, got["zero1_ranks"]


@pytest.mark.timeout(600)
def test_internevo_cannot_train_on_cpu_exact_error(tmp_path: Path) -> None:
    """One process, gloo, a tiny model: InternEvo's own launch on CPU stops at its seed
    manager, which asserts an accelerator (the stage's reason cites it). The rendezvous and the
    backend are set as the worker sets them; without them it fails earlier still."""
    doc = trainjob("cpu", TINY, 1, 0)
    doc["spec"]["optimization"].update(globalBatchSize=4, seqLength=128, maxSteps=3)
    config, _ = render(doc, tmp_path)
    venv = image_env("pretrain")
    code = (
        "import torch.distributed as dist\n"
        "from internlm.accelerator import get_accelerator\n"
        "from internlm_workloads.stages.internevo_worker import env_rendezvous\n"
        "get_accelerator()._communication_backend_name = 'gloo'\n"
        "env_rendezvous()\n"
        "from internlm.initialize import initialize_distributed_env\n"
        f"initialize_distributed_env(config={str(config)!r}, launcher='torch')\n"
        "print('TRAINS ON CPU')\n"
    )
    (tmp_path / "probe.py").write_text(code)
    src = Path(__file__).resolve().parents[2] / "images" / "workloads" / "src"
    res = subprocess.run(
        [
            *(f"{venv}/bin/python", "-m", "torch.distributed.run", "--nproc_per_node=1"),
            *(
                "--master_addr=127.0.0.1",
                f"--master_port={free_port()}",
                str(tmp_path / "probe.py"),
            ),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": str(src)},
        check=False,
    )
    text = res.stdout + res.stderr
    assert res.returncode != 0 and "TRAINS ON CPU" not in text, text[-3000:]
    where = r"parallel_context.py\", line \d+, in set_seed\n(\[rank0\]:)?\s+"
    assert re.search(where + r"assert internlm_accelerator\.is_available\(\)", text), text
    assert re.search(r"(\[rank0\]: )?AssertionError\n", text), text


@pytest.mark.timeout(600)
def test_internevo_stage_on_cpu_fails_fast_with_the_reason(tmp_path: Path) -> None:
    (tmp_path / "data" / "en").mkdir(parents=True)
    doc = trainjob("stage", TINY, 1, 0)
    doc["spec"]["optimization"].update(globalBatchSize=4, seqLength=128, maxSteps=3)
    cfg = operator_rendered(doc, {"data": str(tmp_path / "data")}, tmp_path)
    env = {
        "NPROC_PER_NODE": "1",
        "INTERNEVO_CONFIG": str(tmp_path / "etc-internlm" / "internevo_config.py"),
    }
    run = make_stage("pretrain", "pretrain", {}, tmp_path, env=env, raw_config=cfg)
    rc = run.run(timeout=300)
    result = run.termination()
    assert rc == 1, run.log()[-3000:]
    assert result["ok"] is False
    assert "InternEvo needs a CUDA device" in result["reason"], result
    assert "set_seed" in result["reason"], result
