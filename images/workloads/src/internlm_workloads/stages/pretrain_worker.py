"""One torchrun rank of DeepSpeed pretraining.

Data: ``dataPath`` is a file or a directory of ``.npy`` (1-D token ids), ``.bin`` (raw uint16
token ids, uint32 when the vocabulary needs it), ``.jsonl`` (a ``text`` field per line) or
``.txt`` files; text needs a tokenizer (``model.tokenizer`` or ``model.path``). The token stream
is cut into ``seqLength`` windows and batch ``b`` of step ``s`` is a pure function of (s, b,
rank), so a resumed run sees exactly the data it would have seen.

Checkpoints: ``$INTERNLM_OUTPUT_DIR/checkpoints/step-<N>/`` (DeepSpeed's own format plus a
``COMPLETE`` marker written after every rank saved); the run resumes from the highest
complete one; the last ``checkpoint.keep`` are kept. At the end the Hugging Face model goes to
``$INTERNLM_OUTPUT_DIR/hf``.

Stopping (``checkpoint.onStop``): a SIGTERM (the pod is deleted: suspend, preemption, drain)
only raises a flag. The flag rides on the per-step loss all-reduce, so every rank learns at the
same step that one of them was asked to stop; they all save a checkpoint there, rank-locally
note it in ``stopped.json`` and exit. The next run resumes from that checkpoint.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from ..config import PretrainSpec, load_config
from ..report import log, one_line, write_json_atomic, write_progress

WORKER_DIR = Path(os.environ.get("INTERNLM_WORKER_DIR", "/tmp"))


def complete_checkpoints(root: Path) -> list[tuple[int, Path]]:
    found = []
    if root.is_dir():
        for d in root.iterdir():
            if d.name.startswith("step-") and (d / "COMPLETE").exists():
                with contextlib.suppress(ValueError):
                    found.append((int(d.name[5:]), d))
    return sorted(found)


def load_tokens(spec: PretrainSpec, tokenizer: Any) -> Any:
    import numpy as np

    root = Path(spec.data_path)
    files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
    files = [f for f in files if f.suffix in (".npy", ".bin", ".jsonl", ".txt")]
    if not files:
        raise ValueError(f"dataPath {root}: no .npy, .bin, .jsonl or .txt files")
    parts = []
    for f in files:
        if f.suffix == ".npy":
            parts.append(np.load(f, mmap_mode="r").astype(np.int64).ravel())
        elif f.suffix == ".bin":
            parts.append(np.fromfile(f, dtype=np.uint16).astype(np.int64))
        else:
            if tokenizer is None:
                raise ValueError(
                    f"{f} is text: set model.tokenizer (or continue from model.path) "
                    "or provide pre-tokenized .npy/.bin data"
                )
            if f.suffix == ".jsonl":
                texts = [json.loads(line)["text"] for line in f.read_text().splitlines() if line]
            else:
                texts = [t for t in f.read_text().split("\n\n") if t.strip()]
            eos = tokenizer.eos_token_id
            ids: list[int] = []
            for t in texts:
                ids.extend(tokenizer(t, add_special_tokens=False)["input_ids"])
                if eos is not None:
                    ids.append(eos)
            parts.append(np.asarray(ids, dtype=np.int64))
    tokens = np.concatenate(parts)
    n = len(tokens) // spec.seq_length
    if n < 1:
        raise ValueError(
            f"dataPath has {len(tokens)} tokens, fewer than seqLength {spec.seq_length}"
        )
    return tokens[: n * spec.seq_length].reshape(n, spec.seq_length)


def build_ds_config(spec: PretrainSpec, world: int) -> dict[str, Any]:
    if spec.ds_config_path:
        ds = json.loads(Path(spec.ds_config_path).read_text())
    else:
        ds = {"zero_optimization": {"stage": 2}, "gradient_clipping": 1.0}
    micro = spec.micro_batch_size
    gas = spec.gradient_accumulation
    if spec.global_batch_size:
        if spec.global_batch_size % (micro * world):
            raise ValueError(
                f"globalBatchSize {spec.global_batch_size} is not a multiple of "
                f"microBatchSize {micro} x data-parallel size {world}"
            )
        gas = spec.global_batch_size // (micro * world)
    # HF-style "auto" values and missing ones come from the spec
    for key, value in (
        ("train_micro_batch_size_per_gpu", micro),
        ("gradient_accumulation_steps", gas),
        ("train_batch_size", micro * gas * world),
    ):
        if ds.get(key) in (None, "auto"):
            ds[key] = value
    if (
        ds["train_batch_size"]
        != ds["train_micro_batch_size_per_gpu"] * ds["gradient_accumulation_steps"] * world
    ):
        raise ValueError("ds config batch sizes do not match the data-parallel size")
    for prec in ("bf16", "fp16"):
        sect = ds.setdefault(prec, {})
        if sect.get("enabled") in (None, "auto"):
            sect["enabled"] = spec.precision == prec
    zero = ds.setdefault("zero_optimization", {})
    if zero.get("stage") == 3:
        zero["stage3_gather_16bit_weights_on_model_save"] = True
    ds.setdefault("steps_per_print", 10**9)
    ds.setdefault("wall_clock_breakdown", False)
    return ds


def can_build_ops() -> bool:
    """DeepSpeed JIT-compiles its C++ ops (the CPU shared-memory collectives, fused Adam)
    against the Python headers: an image without them (the CPU variant's Debian python3.11)
    cannot build any."""
    import sysconfig

    return (Path(sysconfig.get_paths()["include"]) / "Python.h").is_file()


def adapt_for_cpu_without_ops(ds: dict[str, Any]) -> list[str]:
    """What changes when no op can be built on CPU: DeepSpeed's Adam/AdamW become torch's
    (``torch_adam``, the same update) instead of the fused op. Returns what was changed."""
    opt = ds.get("optimizer") or {}
    if str(opt.get("type", "")).lower() in ("adam", "adamw"):
        params = opt.setdefault("params", {})
        if "torch_adam" not in params:
            params["torch_adam"] = True
            return ["optimizer.params.torch_adam"]
    return []


def lr_lambda(spec: PretrainSpec) -> Any:
    floor = spec.min_learning_rate / spec.learning_rate

    def f(step: int) -> float:
        if spec.warmup_steps and step < spec.warmup_steps:
            return (step + 1) / spec.warmup_steps
        if spec.lr_schedule == "constant":
            return 1.0
        span = max(1, spec.max_steps - spec.warmup_steps)
        frac = min(1.0, (step - spec.warmup_steps) / span)
        if spec.lr_schedule == "linear":
            return floor + (1 - floor) * (1 - frac)
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * frac))

    return f


class StopFlag:
    """Set by SIGTERM/SIGINT; read once per step."""

    def __init__(self) -> None:
        self.signum = 0

    def install(self) -> None:
        for s in (signal.SIGTERM, signal.SIGINT):
            signal.signal(s, self._set)

    def _set(self, signum: int, _frame: Any) -> None:
        if not self.signum:
            print(f"rank {os.environ.get('RANK', '0')}: {signal.Signals(signum).name}: "
                  "stopping after this step", file=sys.stderr, flush=True)  # fmt: skip
        self.signum = signum


def train() -> None:
    cfg = load_config(os.environ.get("INTERNLM_CONFIG", "/etc/internlm/config.json"), "pretrain")
    spec: PretrainSpec = cfg.spec
    stop = StopFlag()
    if spec.checkpoint.on_stop:
        stop.install()
    out = Path(os.environ.get("INTERNLM_OUTPUT_DIR") or cfg.output_dir or ".")
    import deepspeed
    import torch
    import torch.distributed as dist
    import transformers
    from deepspeed.accelerator import get_accelerator

    accel = get_accelerator()
    on_cpu = accel.device_name() == "cpu"
    no_ops = on_cpu and not can_build_ops()
    if no_ops:
        import deepspeed.ops as ds_ops

        # gloo alone carries the collectives (the shm op only speeds up ranks of one node)
        ds_ops.__compatible_ops__["deepspeed_shm_comm"] = False
    deepspeed.init_distributed(
        dist_backend="gloo" if on_cpu else accel.communication_backend_name()
    )
    rank, world = dist.get_rank(), dist.get_world_size()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if not on_cpu:
        accel.set_device(local_rank)
    device = torch.device(accel.device_name(local_rank) if not on_cpu else "cpu")
    torch.manual_seed(1234)

    tok_path = spec.model.tokenizer or spec.model.path
    tokenizer = None
    if tok_path and (
        (Path(tok_path) / "tokenizer.json").exists()
        or (Path(tok_path) / "tokenizer_config.json").exists()
    ):
        tokenizer = transformers.AutoTokenizer.from_pretrained(tok_path, trust_remote_code=True)
    data = load_tokens(spec, tokenizer)

    ds_config = build_ds_config(spec, world)
    adapted = adapt_for_cpu_without_ops(ds_config) if no_ops else []
    micro, gas = (
        ds_config["train_micro_batch_size_per_gpu"],
        ds_config["gradient_accumulation_steps"],
    )
    stage = ds_config.get("zero_optimization", {}).get("stage", 0)
    if spec.model.config is not None:
        # random init happens in full on each rank (fine up to a few B parameters); ZeRO then
        # partitions parameters and optimizer state
        mcfg = dict(spec.model.config)
        hf_config = transformers.AutoConfig.for_model(mcfg.pop("model_type"), **mcfg)
        model = transformers.AutoModelForCausalLM.from_config(hf_config)
    else:
        if stage == 3:
            from transformers.integrations import HfDeepSpeedConfig

            # kept alive until the model is built: from_pretrained loads straight into ZeRO-3
            _hf_ds = HfDeepSpeedConfig(ds_config)
        model = transformers.AutoModelForCausalLM.from_pretrained(
            spec.model.path, trust_remote_code=True, torch_dtype=torch.float32
        )
    vocab = model.config.vocab_size
    if int(data.max()) >= vocab:
        raise ValueError(f"data has token id {int(data.max())} >= the model's vocab_size {vocab}")
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = None
    scheduler = None
    if "optimizer" not in ds_config:
        optimizer = torch.optim.AdamW(
            params, lr=spec.learning_rate, betas=(0.9, 0.95), weight_decay=0.1
        )
    if "scheduler" not in ds_config and optimizer is not None:
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(spec))
    engine, _, _, _ = deepspeed.initialize(
        model=model,
        optimizer=optimizer,
        lr_scheduler=scheduler,
        model_parameters=params,
        config=ds_config,
    )
    if rank == 0:
        # what DeepSpeed runs with: the config it parsed and what it built from it
        used = {
            "source": spec.ds_config_path,
            "config": engine.config,
            "zeroStage": engine.zero_optimization_stage(),
            "optimizer": type(engine.basic_optimizer or engine.optimizer).__name__,
            "scheduler": type(engine.lr_scheduler).__name__ if engine.lr_scheduler else None,
            "trainBatchSize": engine.train_batch_size(),
            "gradientAccumulation": engine.gradient_accumulation_steps(),
            "cpuAdaptations": adapted,
        }
        write_json_atomic(out / "ds_config.used.json", used)
        log(
            f"DeepSpeed: config {spec.ds_config_path or '(built in)'}, ZeRO stage "
            f"{used['zeroStage']}, optimizer {used['optimizer']}, scheduler {used['scheduler']}"
        )

    ckpt_root = out / "checkpoints"
    start = 0
    last_ckpt: dict[str, Any] | None = None
    done = complete_checkpoints(ckpt_root)
    if spec.checkpoint.resume and done:
        step, path = done[-1]
        load_path, client = engine.load_checkpoint(str(ckpt_root), tag=path.name)
        if load_path is None:
            raise RuntimeError(f"could not load checkpoint {path}")
        start = int(client.get("step", step))
        last_ckpt = {"step": start, "path": str(path)}
        if rank == 0:
            log(f"resumed from checkpoint step {start} ({path})")

    def save(step: int) -> dict[str, Any]:
        tag = f"step-{step}"
        engine.save_checkpoint(str(ckpt_root), tag=tag, client_state={"step": step})
        dist.barrier()
        path = ckpt_root / tag
        if rank == 0:
            (path / "COMPLETE").write_text(json.dumps({"step": step, "time": time.time()}))
            for _, old in complete_checkpoints(ckpt_root)[: -spec.checkpoint.keep]:
                shutil.rmtree(old, ignore_errors=True)
            log(f"checkpoint step {step} saved to {path}")
        elif local_rank == 0 and os.environ.get("INTERNLM_OUTPUT_URI"):
            # this pod's own output dir (an emptyDir: the output goes to S3), where only its
            # ranks' shards are: keep the steps rank 0 keeps (each pod uploads its own shards)
            steps = sorted(
                int(d.name[5:]) for d in ckpt_root.glob("step-*") if d.name[5:].isdigit()
            )
            for old_step in steps[: -spec.checkpoint.keep]:
                shutil.rmtree(ckpt_root / f"step-{old_step}", ignore_errors=True)
        dist.barrier()
        return {"step": step, "path": str(path)}

    n = len(data)
    tokens_per_step = micro * gas * world * spec.seq_length
    metrics = out / "metrics.jsonl"
    engine.train()
    for step in range(start, spec.max_steps):
        t0 = time.perf_counter()
        # [loss sum, ranks asked to stop]: one all-reduce carries both
        total = torch.zeros(2, device=device)
        for m in range(gas):
            first = ((step * gas + m) * world + rank) * micro
            idx = [(first + j) % n for j in range(micro)]
            batch = torch.as_tensor(data[idx], device=device)
            loss = engine(input_ids=batch, labels=batch).loss
            engine.backward(loss)
            engine.step()
            total[0] += loss.detach().float()
        total[1] = 1.0 if stop.signum else 0.0
        dist.all_reduce(total)
        loss_value = total[0].item() / (gas * world)
        stopping = total[1].item() > 0
        if not math.isfinite(loss_value):
            raise FloatingPointError(f"loss is {loss_value} at step {step + 1}")
        dt = time.perf_counter() - t0
        done_step = step + 1
        if (
            done_step % spec.checkpoint.interval == 0
            or done_step == spec.max_steps
            or (stopping and (last_ckpt or {}).get("step") != done_step)
        ):
            last_ckpt = save(done_step)
        if rank == 0:
            row = {
                "step": done_step,
                "totalSteps": spec.max_steps,
                "loss": round(loss_value, 5),
                "tokensPerSecond": round(tokens_per_step / dt, 1),
                "learningRate": engine.get_lr()[0],
            }
            with metrics.open("a") as f:
                f.write(json.dumps(row) + "\n")
            write_progress({**row, "checkpoint": last_ckpt})
            if done_step == start + 1 or done_step % 10 == 0 or done_step == spec.max_steps:
                log(
                    f"step {done_step}/{spec.max_steps} loss {loss_value:.4f} "
                    f"{row['tokensPerSecond']:.0f} tokens/s"
                )
        if stopping:
            if rank == 0:
                log(f"stopped at step {done_step}: checkpoint {last_ckpt}")
            if local_rank == 0:
                write_json_atomic(WORKER_DIR / "stopped.json", {"checkpoint": last_ckpt})
            return

    hf = out / "hf"
    state = engine._zero3_consolidated_16bit_state_dict() if stage == 3 else None
    if rank == 0:
        if hf.exists():
            shutil.rmtree(hf)
        module = engine.module
        module.save_pretrained(str(hf), state_dict=state, safe_serialization=True)
        if tokenizer is not None and not copy_tokenizer(Path(tok_path), hf):
            tokenizer.save_pretrained(str(hf))
        log(f"Hugging Face model saved to {hf}")
    dist.barrier()
    if local_rank == 0:  # every node reports to its own pod (the operator reads node 0 first)
        result = {"outputs": {"model": str(hf)}, "checkpoint": last_ckpt}
        write_json_atomic(WORKER_DIR / "result.json", result)


# Failures of the machine, not of the job: worth a gang restart (exit 75), never a permanent
# failure. Matched in the exception text (lower case); docs/workload-contract.md has the table.
TRANSIENT = {
    # another rank's process or pod went away (gloo, NCCL, the c10d store)
    "peer": (
        "connection closed by peer",
        "connection reset by peer",
        "broken pipe",
        "connection refused",
        "socket timeout",
        "nccl communicator was aborted",
    ),
    # NCCL and its transports (IB/RoCE, NVLink) failing under a healthy job
    "nccl": (
        "ncclsystemerror",
        "ncclremoteerror",
        "ncclinternalerror",
        "nccl watchdog",
        "watchdog caught collective operation timeout",
        "nccl timeout",
    ),
    # the accelerator itself (ECC, Xid-style faults, a GPU that fell off the bus)
    "gpu": (
        "uncorrectable ecc error",
        "cuda error: unspecified launch failure",
        "cuda error: an illegal instruction was encountered",
        "cudaerrordevicesunavailable",
        "cuda error: uncorrectable nvlink error",
        "gpu has fallen off the bus",
        "cuda-capable device(s) is/are busy or unavailable",
    ),
}
TRANSIENT_TYPES = {"DistNetworkError", "DistStoreError"}


def transient_cause(e: BaseException) -> str | None:
    """Which kind of infrastructure failure ended this rank ("peer", "nccl", "gpu"), or None
    for everything else (a bug, bad data, out of memory: failing fast is right for those)."""
    chain = [x for x in (e, e.__cause__, e.__context__) if x is not None]
    if {type(x).__name__ for x in chain} & TRANSIENT_TYPES:
        return "peer"
    text = " ".join(str(x) for x in chain).lower()
    for kind, needles in TRANSIENT.items():
        if any(n in text for n in needles):
            return kind
    return None


# The tokenizer's files as given (a model directory or snapshot): names transformers and
# remote-code tokenizers read.
TOKENIZER_FILES = (
    "tokenizer*",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.*",
    "merges.txt",
    "chat_template*",
    "tokenization_*.py",
    "*.tiktoken",
)


def copy_tokenizer(src: Path, hf: Path) -> bool:
    """Copy the tokenizer files into the output as they were given. Re-saving them with this
    image's transformers (5.x) would write a tokenizer_config.json that the fine-tune and eval
    images' older transformers cannot load (tokenizer_class TokenizersBackend)."""
    files = {p for pat in TOKENIZER_FILES for p in src.glob(pat) if p.is_file()}
    for f in files:
        shutil.copy2(f, hf / f.name)
    return any(f.name.startswith("tokenizer") for f in files)


def main() -> int:
    try:
        train()
        return 0
    except Exception as e:
        traceback.print_exc()
        rank = os.environ.get("RANK", "0")
        with contextlib.suppress(OSError):
            (WORKER_DIR / f"error-rank-{int(rank):05d}.txt").write_text(
                one_line(f"rank {rank}: {type(e).__name__}: {e}")
            )
            kind = transient_cause(e)
            if kind:
                (WORKER_DIR / f"transient-rank-{int(rank):05d}").write_text(kind)
        return 1


if __name__ == "__main__":
    sys.exit(main())
