"""pretrain: launch torchrun (one process per accelerator, or NPROC_PER_NODE) running the
DeepSpeed worker (``pretrain_worker``), or InternEvo; report the worker's result."""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from ..config import PretrainSpec, StageConfig
from ..report import EXIT_TRANSIENT, StageError, Terminated, log, output_dir, run_tool

DEFAULT_MASTER_PORT = "29500"


def _nproc() -> int:
    env = os.environ.get("NPROC_PER_NODE")
    if env:
        return int(env)
    try:
        import torch

        return max(1, torch.cuda.device_count())
    except Exception:
        return 1


def check_inputs(spec: PretrainSpec) -> None:
    """Missing inputs are permanent errors: fail before starting any process."""
    if not Path(spec.data_path).exists():
        raise StageError(f"dataPath {spec.data_path} does not exist")
    if spec.model.path and not Path(spec.model.path).exists():
        raise StageError(f"model.path {spec.model.path} does not exist")
    if spec.model.tokenizer and not Path(spec.model.tokenizer).exists():
        raise StageError(f"model.tokenizer {spec.model.tokenizer} does not exist")
    if spec.ds_config_path and not Path(spec.ds_config_path).is_file():
        raise StageError(f"dsConfigPath {spec.ds_config_path} does not exist")


# Seconds kept back from the pod's grace period: torchrun and this stage exit after the workers.
STOP_MARGIN = 10


def torchrun_argv(
    module: str, extra: list[str] | None = None, shutdown_timeout: int | None = None
) -> list[str]:
    nnodes = os.environ.get("NNODES", "1")
    # torchrun gives its workers 30 s after a SIGTERM, then SIGKILLs them: a checkpoint written
    # on the way out needs the pod's grace period instead
    timeout = [f"--shutdown-timeout={shutdown_timeout}"] if shutdown_timeout else []
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        *timeout,
        f"--nnodes={nnodes}",
        f"--nproc_per_node={_nproc()}",
        f"--node_rank={os.environ.get('NODE_RANK', os.environ.get('JOB_COMPLETION_INDEX', '0'))}",
        f"--master_addr={os.environ.get('MASTER_ADDR', '127.0.0.1')}",
        f"--master_port={os.environ.get('MASTER_PORT', DEFAULT_MASTER_PORT)}",
        "-m",
        module,
        *(extra or []),
    ]


def run(cfg: StageConfig) -> dict[str, Any]:
    spec: PretrainSpec = cfg.spec
    out = output_dir(cfg.output_dir)
    check_inputs(spec)
    if spec.framework == "internevo":
        return _run_internevo(spec, out)
    scratch = Path(tempfile.mkdtemp(prefix="internlm-pretrain-"))
    env = dict(os.environ)
    env["INTERNLM_OUTPUT_DIR"] = str(out)
    env["INTERNLM_WORKER_DIR"] = str(scratch)
    env.setdefault("OMP_NUM_THREADS", "1")
    grace = max(spec.checkpoint.stop_grace_seconds - STOP_MARGIN, 5)
    try:
        try:
            run_tool(
                torchrun_argv("internlm_workloads.stages.pretrain_worker", shutdown_timeout=grace),
                "DeepSpeed training",
                env=env,
                grace=grace + STOP_MARGIN / 2,
            )
        except Terminated as e:
            stopped = scratch / "stopped.json"
            if stopped.exists():
                ckpt = json.loads(stopped.read_text())["checkpoint"]
                where = f"checkpoint step {ckpt['step']} saved" if ckpt else "no step to save"
                raise Terminated(e.signum, f"{e} after {where}", checkpoint=ckpt) from None
            raise
        except StageError as e:
            reasons = sorted(scratch.glob("error-rank-*.txt"))
            if reasons:
                e.reason = reasons[0].read_text().strip()
            kinds = {f.read_text() for f in scratch.glob("transient-rank-*")}
            if kinds:
                # the machine failed, not the job (a peer pod died, NCCL, the GPU): retried
                e.exit_code = EXIT_TRANSIENT
                what = "lost a peer of the gang" if kinds == {"peer"} else "infrastructure failure"
                e.reason = f"{what} ({', '.join(sorted(kinds))}): {e.reason}"
            raise
        result_file = scratch / "result.json"
        if not result_file.exists():
            raise StageError("training exited 0 but wrote no result")
        result: dict[str, Any] = json.loads(result_file.read_text())
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    hf = Path(result["outputs"]["model"])
    node_rank = os.environ.get("NODE_RANK", os.environ.get("JOB_COMPLETION_INDEX", "0"))
    if node_rank == "0" and not (hf / "config.json").exists():
        raise StageError(f"no Hugging Face model at {hf}")
    return result


def _run_internevo(spec: PretrainSpec, out: Path) -> dict[str, Any]:
    """InternEvo's own training (``internevo_worker`` under torchrun) with the config the
    operator rendered next to config.json (docs/internevo.md)."""
    cfg_file = Path(os.environ.get("INTERNLM_CONFIG", "/etc/internlm/config.json")).parent
    cfg_file = Path(os.environ.get("INTERNEVO_CONFIG", cfg_file / "internevo_config.py"))
    if not cfg_file.is_file():
        raise StageError(f"framework internevo needs {cfg_file} (rendered by the operator)")
    scratch = Path(tempfile.mkdtemp(prefix="internlm-internevo-"))
    env = dict(os.environ)
    env["INTERNLM_OUTPUT_DIR"] = str(out)
    env["INTERNLM_WORKER_DIR"] = str(scratch)
    env["INTERNEVO_CONFIG"] = str(cfg_file)
    env.setdefault("OMP_NUM_THREADS", "1")
    grace = max(spec.checkpoint.stop_grace_seconds - STOP_MARGIN, 5)
    layout = [x for x in cfg_file.read_text().splitlines() if x.startswith("# layout: ")]
    log(f"InternEvo: {cfg_file}" + (f", {layout[0][2:]}" if layout else ""))
    try:
        try:
            run_tool(
                torchrun_argv("internlm_workloads.stages.internevo_worker", shutdown_timeout=grace),
                "InternEvo training",
                env=env,
                grace=grace + STOP_MARGIN / 2,
            )
        except StageError as e:
            reasons = sorted(scratch.glob("error-rank-*.txt"))
            if reasons:
                e.reason = reasons[0].read_text().strip()
            raise
        result_file = scratch / "result.json"
        node_rank = os.environ.get("NODE_RANK", os.environ.get("JOB_COMPLETION_INDEX", "0"))
        if not result_file.exists():
            if node_rank != "0":  # global rank 0 runs on node 0 and reports
                return {"outputs": {"checkpoints": str(out / "checkpoints")}}
            raise StageError("InternEvo training exited 0 but wrote no result")
        done: dict[str, Any] = json.loads(result_file.read_text())
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    step = int(done["step"])
    return {
        "outputs": {"checkpoints": done["checkpoints"]},
        "checkpoint": {"step": step, "path": f"{done['checkpoints']}/{step}"},
    }
