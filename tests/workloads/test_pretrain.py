"""pretrain: DeepSpeed ZeRO under torchrun (2 CPU processes, gloo) on a tiny random Llama."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from .conftest import free_port, make_stage, py, wait_until

pytestmark = pytest.mark.workload


def pretrain_spec(tiny: Path, **over: Any) -> dict[str, Any]:
    mc = json.loads((tiny / "model_config.json").read_text())
    for k in ("torch_dtype", "transformers_version", "architectures"):
        mc.pop(k, None)
    spec: dict[str, Any] = {
        "framework": "deepspeed",
        "model": {"config": mc, "tokenizer": str(tiny / "tokenizer")},
        "dataPath": str(tiny / "corpus.jsonl"),
        "seqLength": 64,
        "microBatchSize": 4,
        "gradientAccumulation": 1,
        "learningRate": 3e-3,
        "minLearningRate": 3e-4,
        "lrSchedule": "cosine",
        "warmupSteps": 2,
        "maxSteps": 30,
        "precision": "fp32",
        "checkpoint": {"interval": 10, "keep": 2, "resume": True},
        "dsConfigPath": None,
    }
    spec.update(over)
    return spec


def _get_progress(port: str) -> dict[str, Any] | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/progress", timeout=2) as r:
            data: dict[str, Any] = json.loads(r.read())
            return data if data.get("step") else None
    except OSError:
        return None


def kill_tree(pid: int) -> None:
    """SIGKILL a process and all its descendants (torchrun and its workers run in their own
    process group, like in a container where everything dies with the pod)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
        except (OSError, IndexError, ValueError):
            pass
    todo, tree = [pid], []
    while todo:
        p = todo.pop()
        tree.append(p)
        todo += children.get(p, [])
    for p in tree:
        with contextlib.suppress(ProcessLookupError):
            os.kill(p, signal.SIGKILL)


def metrics(run_dir: Path) -> list[dict[str, Any]]:
    lines = (run_dir / "output" / "metrics.jsonl").read_text().splitlines()
    return [json.loads(x) for x in lines]


@pytest.mark.timeout(1500)
def test_pretrain_zero2_loss_decreases_kill_resume_and_hf_model_loads(
    tiny: Path, tmp_path: Path
) -> None:
    spec = pretrain_spec(tiny, maxSteps=200, checkpoint={"interval": 50, "keep": 2, "resume": True})
    env = {"NPROC_PER_NODE": "2", "MASTER_PORT": str(free_port())}
    run = make_stage("pretrain", "pretrain", spec, tmp_path, env=env).start()
    # the first start compiles DeepSpeed's CPU comm op (cached in TORCH_EXTENSIONS_DIR)
    wait_until(
        "the step-50 checkpoint",
        lambda: (run.progress().get("checkpoint") or {}).get("step", 0) >= 50,
        timeout=900,
        interval=0.05,
    )
    assert run.proc is not None
    kill_tree(run.proc.pid)  # the pod dies: every process, no chance to clean up
    prog = run.progress()
    assert prog["step"] < 200, "training finished before it could be killed"
    port = run.env["INTERNLM_PROGRESS_PORT"]
    assert prog["totalSteps"] == 200 and prog["loss"] > 0 and prog["tokensPerSecond"] > 0
    killed_at = max(m["step"] for m in metrics(tmp_path))
    last_ckpt = prog["checkpoint"]["step"]

    # the restarted pod (a new pod has its own network namespace: take a fresh port here)
    run.env["MASTER_PORT"] = str(free_port())
    run.start()
    seen = wait_until("GET /progress", lambda: _get_progress(port), timeout=600, interval=0.2)
    assert seen["totalSteps"] == 200
    rc = run.wait(timeout=900)
    log = run.log()
    assert rc == 0, log[-4000:]
    assert f"resumed from checkpoint step {last_ckpt}" in log, log[-3000:]
    result = run.termination()
    assert result["ok"] is True
    assert result["checkpoint"]["step"] == 200
    hf = Path(result["outputs"]["model"])
    assert hf == tmp_path / "output" / "hf"

    rows = metrics(tmp_path)
    # after the restart, training continued from the checkpoint step, not from 0
    steps = [r["step"] for r in rows]
    cut = steps.index(killed_at) + 1
    assert steps[cut] == last_ckpt + 1 and steps[-1] == 200, steps
    by_step = {r["step"]: r["loss"] for r in rows}
    first = sum(by_step[s] for s in range(1, 4)) / 3
    last = sum(by_step[s] for s in range(198, 201)) / 3
    assert last < first * 0.6, (first, last)
    ckpts = sorted(p.name for p in (tmp_path / "output" / "checkpoints").glob("step-*"))
    assert ckpts == ["step-150", "step-200"]  # keep: 2

    out = py(
        "pretrain",
        f"import transformers\n"
        f"m = transformers.AutoModelForCausalLM.from_pretrained({str(hf)!r})\n"
        f"t = transformers.AutoTokenizer.from_pretrained({str(hf)!r})\n"
        f"ids = t('alice likes', return_tensors='pt').input_ids\n"
        f"g = m.generate(ids, max_new_tokens=8, do_sample=False)\n"
        f"print(sum(p.numel() for p in m.parameters()), repr(t.decode(g[0])))\n",
    )
    assert int(out.split()[0]) > 100_000


@pytest.mark.timeout(1200)
def test_pretrain_sigterm_saves_a_checkpoint_then_the_next_run_resumes_from_it(
    tiny: Path, tmp_path: Path
) -> None:
    """checkpoint.onStop: the pod is deleted (suspend, preemption) and the kubelet sends SIGTERM
    to the container's first process; the ranks agree on a step, save there and exit 143
    within the grace period, and the next run starts from that step."""
    grace = 60
    ckpt = {"interval": 1000, "keep": 2, "resume": True, "onStop": True, "stopGraceSeconds": grace}
    spec = pretrain_spec(tiny, maxSteps=60, checkpoint=ckpt)
    env = {"NPROC_PER_NODE": "2", "MASTER_PORT": str(free_port())}
    run = make_stage("pretrain", "pretrain", spec, tmp_path, env=env).start()
    wait_until("step 5", lambda: run.progress().get("step", 0) >= 5, timeout=900, interval=0.05)
    assert run.proc is not None
    os.kill(run.proc.pid, signal.SIGTERM)
    t0 = time.monotonic()
    rc = run.wait(timeout=grace + 30)
    stopped_in = time.monotonic() - t0
    log = run.log()
    assert rc == 128 + signal.SIGTERM, log[-4000:]
    assert stopped_in < grace, stopped_in
    result = run.termination()
    saved = result["checkpoint"]
    assert result["ok"] is False and saved["step"] >= 5, result
    assert f"after checkpoint step {saved['step']} saved" in result["reason"], result
    assert saved["step"] < 60, "training finished before the stop"
    step_dir = tmp_path / "output" / "checkpoints" / f"step-{saved['step']}"
    assert json.loads((step_dir / "COMPLETE").read_text())["step"] == saved["step"]
    assert not (tmp_path / "output" / "hf").exists()
    # the last step both ranks ran is the checkpoint step: nothing trained is lost
    assert max(m["step"] for m in metrics(tmp_path)) == saved["step"]

    run.env["MASTER_PORT"] = str(free_port())
    run.start()
    rc = run.wait(timeout=900)
    log = run.log()
    assert rc == 0, log[-4000:]
    assert f"resumed from checkpoint step {saved['step']}" in log, log[-3000:]
    steps = [m["step"] for m in metrics(tmp_path)]
    assert steps == list(range(1, 61)), steps
    assert run.termination()["ok"] is True


@pytest.mark.timeout(900)
def test_pretrain_zero3_from_rendered_ds_config(tiny: Path, tmp_path: Path) -> None:
    """The operator renders ds_config.json with "auto" values; ZeRO-3 gathers the final model."""
    ds = {
        "train_micro_batch_size_per_gpu": "auto",
        "gradient_accumulation_steps": "auto",
        "train_batch_size": "auto",
        "zero_optimization": {"stage": 3},
        "bf16": {"enabled": "auto"},
        "gradient_clipping": 1.0,
    }
    (tmp_path / "ds_config.json").write_text(json.dumps(ds))
    spec = pretrain_spec(
        tiny,
        maxSteps=6,
        globalBatchSize=8,
        microBatchSize=2,
        checkpoint={"interval": 3, "keep": 1, "resume": True},
        dsConfigPath=str(tmp_path / "ds_config.json"),
    )
    env = {"NPROC_PER_NODE": "2", "MASTER_PORT": str(free_port())}
    run = make_stage("pretrain", "pretrain", spec, tmp_path, env=env)
    rc = run.run(timeout=800)
    assert rc == 0, run.log()[-4000:]
    result = run.termination()
    assert result["ok"] and result["checkpoint"]["step"] == 6
    py(
        "pretrain",
        f"import transformers\n"
        f"m = transformers.AutoModelForCausalLM.from_pretrained({result['outputs']['model']!r})\n"
        f"assert sum(p.numel() for p in m.parameters()) > 100_000\n",
    )


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda s: s.update(learningRatee=1.0), "unknown key(s) learningRatee"),
        (lambda s: s.update(maxSteps=0), "spec.maxSteps: must be > 0"),
        (lambda s: s.update(dataPath="/nonexistent/data"), "dataPath /nonexistent/data does not"),
        (lambda s: s.update(model={"path": "/nonexistent/m"}), "model.path /nonexistent/m"),
        (lambda s: s.update(seqLength=100000), "fewer than seqLength 100000"),
    ],
)
def test_pretrain_bad_config_or_missing_input_fails_with_reason(
    tiny: Path, tmp_path: Path, mutate: Any, reason: str
) -> None:
    spec = pretrain_spec(tiny, maxSteps=2)
    mutate(spec)
    env = {"NPROC_PER_NODE": "1", "MASTER_PORT": str(free_port())}
    run = make_stage("pretrain", "pretrain", spec, tmp_path, env=env)
    rc = run.run(timeout=600)
    result = run.termination()
    assert rc == 1, run.log()[-3000:]
    assert result["ok"] is False and reason in result["reason"], result


@pytest.mark.timeout(900)
def test_pretrain_two_nodes_indexed_job_contract(tiny: Path, tmp_path: Path) -> None:
    """Two pods of an Indexed Job (NNODES=2, NODE_RANK 0/1, MASTER_ADDR/PORT of pod 0), one
    process each, sharing the output volume: both finish and report."""
    port = str(free_port())
    spec = pretrain_spec(tiny, maxSteps=6, checkpoint={"interval": 3, "keep": 1, "resume": True})
    shared = tmp_path / "node0" / "output"
    runs = []
    for rank in (0, 1):
        env = {
            "NNODES": "2",
            "NODE_RANK": str(rank),
            "NPROC_PER_NODE": "1",
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": port,
            "INTERNLM_OUTPUT_DIR": str(shared),
        }
        runs.append(make_stage("pretrain", "pretrain", spec, tmp_path / f"node{rank}", env=env))
    for r in runs:
        r.start()
    rcs = [r.wait(timeout=800) for r in runs]
    assert rcs == [0, 0], [r.log()[-3000:] for r in runs]
    results = [r.termination() for r in runs]
    assert all(res["ok"] for res in results)
    assert results[0]["outputs"]["model"] == results[1]["outputs"]["model"] == str(shared / "hf")
    assert results[0]["checkpoint"]["step"] == 6
    assert (shared / "hf" / "config.json").exists()
    assert runs[0].progress()["step"] == 6  # global rank 0 reports progress
