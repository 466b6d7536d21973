"""One rank of framework internevo, started by torchrun (``pretrain``): InternEvo's own
initialisation, model, data loader, hybrid ZeRO optimizer, trainer and CheckpointManager, driven
by the config the operator rendered (``internevo_config.py``; docs/internevo.md).

InternEvo 0.4.9 needs a CUDA (or Ascend/DIPU) device: it has no CPU accelerator and its seed
manager asserts one (``ParallelContext.set_seed``), so on CPU this fails fast with that reason.

One adaptation, outside InternEvo's code: its rendezvous URL ``tcp://[host]:port`` puts
any host in IPv6 brackets, which Python >= 3.11.4 rejects for IPv4 addresses and host names
(``ValueError: An IPv4 address cannot be in brackets``), so the default group is initialised
from torchrun's environment (``env://``, the same MASTER_ADDR/MASTER_PORT) instead.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from ..report import log, one_line, write_json_atomic, write_progress

WORKER_DIR = Path(os.environ.get("INTERNLM_WORKER_DIR", "."))
CONFIG = Path(os.environ.get("INTERNEVO_CONFIG", "/etc/internlm/internevo_config.py"))
NO_CPU = (
    "InternEvo needs a CUDA device: it has no CPU accelerator (internlm.accelerator knows "
    "cuda, npu and dipu) and ParallelContext.set_seed asserts internlm_accelerator.is_available()"
    " (docs/internevo.md)"
)


def env_rendezvous() -> None:
    """Make InternEvo's ``dist.init_process_group(init_method="tcp://[host]:port")`` use
    torchrun's ``env://`` (same address and port) instead: see the module docstring."""
    import torch.distributed as dist

    original = dist.init_process_group
    if getattr(original, "_internlm_env", False):
        return

    def init_process_group(*args: Any, **kwargs: Any) -> Any:
        if str(kwargs.get("init_method", "")).startswith("tcp://["):
            kwargs["init_method"] = "env://"
        return original(*args, **kwargs)

    init_process_group._internlm_env = True  # type: ignore[attr-defined]
    dist.init_process_group = init_process_group


def train() -> dict[str, Any]:
    import torch

    if not torch.cuda.is_available():
        raise RuntimeError(NO_CPU)
    env_rendezvous()
    import internlm
    from internlm.checkpoint import CheckpointManager
    from internlm.core.context import ParallelMode
    from internlm.core.context import global_context as gpc
    from internlm.data import build_train_loader_with_data_type
    from internlm.data.train_state import get_train_state
    from internlm.initialize import initialize_distributed_env
    from internlm.model.losses import FlashGPTLMLoss
    from internlm.model.metrics import AccPerplex
    from internlm.train import (
        get_scheduler_hooks,
        initialize_isp_communicator,
        initialize_model,
        initialize_optimizer,
        load_new_batch,
    )
    from internlm.utils.common import get_current_device, launch_time
    from internlm.utils.gputest import empty_cache_and_diag

    initialize_distributed_env(config=str(CONFIG), launcher="torch", seed=1024)
    c = gpc.config
    model = initialize_model()
    isp = initialize_isp_communicator(model)
    criterion = FlashGPTLMLoss(
        parallel_output=c.model.parallel_output, label_smoothing=c.loss.label_smoothing
    )
    train_dl, dataset_types = build_train_loader_with_data_type()
    train_state = get_train_state(train_dl)
    optimizer, beta2_scheduler, lr_scheduler = initialize_optimizer(model, isp)
    ckpt = CheckpointManager(
        ckpt_config=c.ckpt,
        model=model,
        optimizer=optimizer,
        lr_scheduler=lr_scheduler,
        train_dl=train_dl,
        model_config=c.model,
        model_config_file=CONFIG.read_text(),
        feishu_address=None,
    )
    ckpt.try_resume_training(train_state, launch_time())
    resumed = train_state.step_count
    metric = AccPerplex(
        device=get_current_device(),
        tp_pg=gpc.get_group(ParallelMode.TENSOR),
        dp_pg=gpc.get_group(ParallelMode.DATA),
        dataset_types=dataset_types,
    )
    trainer, train_dl, _, _ = internlm.initialize_trainer(
        model=model,
        optimizer=optimizer,
        criterion=criterion,
        train_dataloader=train_dl,
        lr_scheduler=lr_scheduler,
        beta2_scheduler=beta2_scheduler,
        scheduler_hooks=get_scheduler_hooks(metric, optimizer, isp),
    )
    rank, world = gpc.get_global_rank(), gpc.get_world_size(ParallelMode.GLOBAL)
    total = int(c.data.total_steps)
    step_tokens = (
        c.data.seq_len * c.data.micro_bsz * c.data.micro_num * gpc.get_world_size(ParallelMode.DATA)
    )
    stop_file = c.ckpt.get("stop_file_path")
    if rank == 0 and stop_file:
        # SIGTERM (suspend, preemption): ask every rank, through InternEvo's stop file, to save
        # a checkpoint at the next step and stop there
        def on_term(signum: int, frame: Any) -> None:
            Path(stop_file).write_text(str(train_state.step_count + 1))

        signal.signal(signal.SIGTERM, on_term)
    if rank == 0:
        log(f"InternEvo: {world} ranks, resumed at step {resumed}, {total} steps")
    metrics = Path(os.environ.get("INTERNLM_OUTPUT_DIR", ".")) / "metrics.jsonl"
    ckpt_root = Path(str(c.ckpt.save_ckpt_folder).removeprefix("local:"))
    last_ckpt: dict[str, Any] | None = None
    trainer.train()
    it = iter(train_dl)
    loss_value: float | None = None
    for batch_count in range(train_state.batch_count, total):
        # InternEvo's own housekeeping: launch disabled the garbage collector, this collects
        # (and empties the CUDA cache) every data.empty_cache_and_diag_interval steps
        empty_cache_and_diag(batch_count, interval=c.data.empty_cache_and_diag_interval)
        t0 = time.time()
        batch, it = load_new_batch(train_dl=train_dl, train_iter=it, train_state=train_state)
        train_state.batch_count = batch_count
        train_state.num_consumed_samples_in_epoch += len(batch[1])
        trainer.zero_grad()
        if batch[0].get("type_ids", None) is not None:
            metric.set_current_type_ids(type_ids=batch[0].pop("type_ids", None))
        out = trainer.execute_schedule(
            batch, forward_only=False, return_loss=True, return_output_label=False
        )
        ok, _ = trainer.step()
        if ok:
            train_state.step_count += 1
        # the loss lives on the last pipeline stage; rank 0 is on the first (None when pp > 1)
        loss_value = None if out[2] is None else float(out[2])
        seconds = time.time() - t0
        if rank == 0:
            row = {
                "step": train_state.step_count,
                "loss": loss_value,
                "tokensPerSecond": step_tokens / seconds,
                "tokensPerSecondPerGPU": step_tokens / seconds / world,
                "seconds": seconds,
            }
            with metrics.open("a") as f:
                f.write(json.dumps(row) + "\n")
        stop = ckpt.try_save_checkpoint(train_state)
        step_dir = ckpt_root / str(train_state.step_count)
        if rank == 0 and step_dir.is_dir():  # InternEvo saved this step (its <step>/ folder)
            last_ckpt = {"step": train_state.step_count, "path": str(step_dir)}
        if rank == 0:
            write_progress({**row, "totalSteps": total, "checkpoint": last_ckpt})
        if stop:
            break
    ckpt.wait_async_upload_finish()
    return {
        "step": train_state.step_count,
        "resumedFrom": resumed,
        "loss": loss_value,
        "checkpoints": str(c.ckpt.save_ckpt_folder).removeprefix("local:"),
    }


def main() -> int:
    rank = int(os.environ.get("RANK", "0"))
    try:
        result = train()
        if rank == 0:
            write_json_atomic(WORKER_DIR / "result.json", result)
        return 0
    except Exception as e:
        traceback.print_exc()
        with contextlib.suppress(OSError):
            (WORKER_DIR / f"error-rank-{rank:05d}.txt").write_text(
                one_line(f"rank {rank}: {type(e).__name__}: {e}")
            )
        return 1


if __name__ == "__main__":
    sys.exit(main())
