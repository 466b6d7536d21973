"""GPU benchmark for the workload images: DeepSpeed training throughput/MFU of a random ~1B
Llama-style model, InternEvo training throughput (tokens/s per GPU) of the same shape through
the operator's rendered config and the pretrain stage's InternEvo worker, and LMDeploy serving
throughput of a random model.

Run each part in its image's environment (images/workloads/envs.sh creates them):

    envs=$(images/workloads/envs.sh pretrain serve)
    PRE=$(echo "$envs" | awk '/^pretrain/{print $2}')
    SRV=$(echo "$envs" | awk '/^serve/{print $2}')
    $PRE/bin/python bench/gpu_train_serve.py train --steps 300 --out train.json
    $PRE/bin/python bench/gpu_train_serve.py internevo --steps 50 --out internevo.json
    $SRV/bin/python bench/gpu_train_serve.py serve --out serve.json

``--dry-run`` runs the same code at a tiny size on CPU (DeepSpeed's CPU accelerator, gloo) to
check the script itself; serving is skipped there (LMDeploy inference is CUDA-only), and the
InternEvo part renders its config and launches the worker, which stops with InternEvo's
CUDA-only reason (docs/internevo.md). Everything is random and local: no hub access (the
tokenizer is trained here).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# bf16 dense peak TFLOPs per GPU (no sparsity), by device-name substring
PEAK_TFLOPS = {
    "H200": 989.0,
    "H100": 989.0,
    "H800": 989.0,
    "A100": 312.0,
    "A800": 312.0,
    "L40S": 362.0,
    "L4": 121.0,
    "A10": 125.0,
}

# TinyLlama-1.1B shape: 22 layers, hidden 2048, GQA 32/4 heads, MLP 5632
SIZES: dict[str, dict[str, Any]] = {
    "1b": dict(
        hidden_size=2048,
        intermediate_size=5632,
        num_hidden_layers=22,
        num_attention_heads=32,
        num_key_value_heads=4,
        vocab_size=32000,
    ),
    "tiny": dict(
        hidden_size=64,
        intermediate_size=192,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=512,
    ),
}


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def peak_tflops(name: str, override: float | None) -> float | None:
    if override:
        return override
    for k, v in PEAK_TFLOPS.items():
        if k in name:
            return v
    return None


def train(args: argparse.Namespace) -> dict[str, Any]:
    os.environ.setdefault("RANK", "0")
    os.environ.setdefault("LOCAL_RANK", "0")
    os.environ.setdefault("WORLD_SIZE", "1")
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", str(args.port))
    if args.dry_run:
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
    import deepspeed
    import torch
    import transformers
    from deepspeed.accelerator import get_accelerator

    accel = get_accelerator()
    on_cpu = accel.device_name() == "cpu"
    if not on_cpu and not torch.cuda.is_available():
        raise SystemExit("no GPU: run with --dry-run")
    deepspeed.init_distributed(dist_backend="gloo" if on_cpu else "nccl")
    device = torch.device("cpu" if on_cpu else "cuda:0")
    size = SIZES["tiny" if args.dry_run else args.size]
    seq = 64 if args.dry_run else args.seq_len
    micro = 2 if args.dry_run else args.micro_batch
    steps = min(args.steps, 6) if args.dry_run else args.steps
    warmup = 2 if args.dry_run else args.warmup
    cfg = transformers.LlamaConfig(max_position_embeddings=max(seq, 2048), **size)
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(cfg)
    if args.grad_ckpt and not args.dry_run:
        model.gradient_checkpointing_enable()
    n_params = sum(p.numel() for p in model.parameters())
    log(f"model: {n_params / 1e9:.3f}B parameters, seq {seq}, micro batch {micro}")
    bf16 = not on_cpu
    ds_config = {
        "train_micro_batch_size_per_gpu": micro,
        "gradient_accumulation_steps": 1,
        "zero_optimization": {"stage": args.zero},
        "bf16": {"enabled": bf16},
        "gradient_clipping": 1.0,
        "steps_per_print": 10**9,
    }
    opt = torch.optim.AdamW(
        model.parameters(), lr=3e-4, betas=(0.9, 0.95), weight_decay=0.1, fused=not on_cpu
    )
    engine, _, _, _ = deepspeed.initialize(model=model, optimizer=opt, config=ds_config)
    g = torch.Generator().manual_seed(0)
    batch = torch.randint(0, cfg.vocab_size, (micro, seq), generator=g).to(device)
    losses: list[float] = []
    t0 = 0.0
    for step in range(warmup + steps):
        if step == warmup:
            accel.synchronize()
            t0 = time.perf_counter()
        loss = engine(input_ids=batch, labels=batch).loss
        engine.backward(loss)
        engine.step()
        losses.append(float(loss.detach()))
    accel.synchronize()
    dt = time.perf_counter() - t0
    tokens_per_s = steps * micro * seq / dt
    # training FLOPs per token: 6N for the dense parts + 12 * layers * hidden * seq for attention
    flops_per_token = 6 * n_params + 12 * cfg.num_hidden_layers * cfg.hidden_size * seq
    achieved = tokens_per_s * flops_per_token / 1e12
    name = "cpu" if on_cpu else torch.cuda.get_device_name(0)
    peak = None if on_cpu else peak_tflops(name, args.peak_tflops)
    res = {
        "part": "train",
        "device": name,
        "params": n_params,
        "seqLength": seq,
        "microBatch": micro,
        "zeroStage": args.zero,
        "steps": steps,
        "seconds": round(dt, 3),
        "tokensPerSecond": round(tokens_per_s, 1),
        "achievedTFLOPs": round(achieved, 2),
        "mfu": round(achieved / peak, 4) if peak else None,
        "peakTFLOPs": peak,
        "lossFirst": round(losses[0], 4),
        "lossLast": round(losses[-1], 4),
        "maxMemoryGiB": None if on_cpu else round(torch.cuda.max_memory_allocated() / 2**30, 2),
    }
    log(json.dumps(res))
    return res


REPO = Path(__file__).resolve().parent.parent


def write_internevo_data(folder: Path, vocab: int, seq: int, docs: int) -> None:
    """Random documents in InternEvo's tokenised format: <folder>/<type>/*.bin (one JSON
    {"tokens": [...]} per line) with its .bin.meta index (offset, length) per document."""
    import numpy as np

    rng = np.random.default_rng(0)
    (folder / "en").mkdir(parents=True, exist_ok=True)
    meta, offset = [], 0
    with open(folder / "en" / "train.bin", "wb") as f:
        for _ in range(docs):
            n = int(rng.integers(seq // 2, seq * 2))
            line = (json.dumps({"tokens": rng.integers(1, vocab, n).tolist()}) + "\n").encode()
            meta.append((offset, n))
            f.write(line)
            offset += len(line)
    with open(folder / "en" / "train.bin.meta", "wb") as f:
        np.save(f, np.array(meta, dtype=np.int64))


def internevo_config(
    work: Path, size: dict[str, Any], gpus: int, seq: int, micro: int, steps: int, zero1: int | None
) -> tuple[Path, str]:
    """The operator's own rendering of a 1-node TrainJob (framework internevo)."""
    sys.path.insert(0, str(REPO / "operator" / "src"))
    from internlm_operator.api.v1alpha1 import parse
    from internlm_operator.runtimes import RenderContext, for_resource
    from internlm_operator.runtimes.internevo import layout_for

    hf = {"architectures": ["InternLM2ForCausalLM"], "model_type": "internlm2", **size}
    doc = {
        "apiVersion": "internlm.io/v1alpha1",
        "kind": "TrainJob",
        "metadata": {"name": "bench-internevo"},
        "spec": {
            "framework": "internevo",
            "model": {"config": hf},
            "data": {"pvc": {"claimName": "bench", "path": "data"}, "format": "tokenized"},
            "output": {"pvc": {"claimName": "bench", "path": "out"}},
            "nodes": 1,
            "resources": {"gpusPerNode": gpus},
            "parallelism": {} if zero1 is None else {"zero1": zero1},
            "optimization": {
                "globalBatchSize": micro * max(1, gpus),
                "microBatchSize": micro,
                "seqLength": seq,
                "maxSteps": steps,
                "precision": "bf16" if gpus else "fp32",
            },
            "checkpoint": {"interval": 10**6, "resume": False},
        },
    }
    spec = parse(doc).spec
    ctx = RenderContext(
        kind="TrainJob",
        namespace="bench",
        name="bench-internevo",
        uid="0",
        spec=spec,
        paths={"data": str(work / "data")},
        output_dir=str(work / "out"),
        nodes=1,
        gpus_per_node=gpus,
    )
    path = work / "internevo_config.py"
    path.write_text(for_resource("TrainJob", spec).render(ctx).files["internevo_config.py"])
    return path, layout_for(ctx).describe()


def internevo(args: argparse.Namespace) -> dict[str, Any]:
    """InternEvo (the pretrain image's, 0.4.9) under torchrun, one process per GPU, through the
    pretrain stage's worker: tokens/s per GPU, the median over the steps after the warm-up."""
    import subprocess

    import torch

    gpus = 0 if args.dry_run else (args.gpus or torch.cuda.device_count())
    if not args.dry_run and not gpus:
        raise SystemExit("no GPU: run with --dry-run")
    size = SIZES["tiny" if args.dry_run else args.size]
    seq = 128 if args.dry_run else args.seq_len  # the API's minimum seqLength
    micro = 2 if args.dry_run else args.micro_batch
    warmup = 2 if args.dry_run else args.warmup
    steps = warmup + (min(args.steps, 4) if args.dry_run else args.steps)
    with tempfile.TemporaryDirectory() as d:
        work = Path(d)
        write_internevo_data(
            work / "data", size["vocab_size"], seq, docs=max(64, 4 * steps * micro * max(1, gpus))
        )
        config, layout = internevo_config(work, size, gpus, seq, micro, steps, args.zero1)
        env = dict(os.environ)
        env.update(
            INTERNEVO_CONFIG=str(config),
            INTERNLM_OUTPUT_DIR=str(work / "out"),
            INTERNLM_WORKER_DIR=str(work),
            INTERNLM_PROGRESS_FILE=str(work / "progress.json"),
            PYTHONPATH=os.pathsep.join(
                [str(REPO / "images" / "workloads" / "src"), env.get("PYTHONPATH", "")]
            ),
            OMP_NUM_THREADS="4",
        )
        (work / "out").mkdir()
        argv = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={max(1, gpus)}"]
        argv += ["--master_addr=127.0.0.1", f"--master_port={args.port + 1}"]
        argv += ["-m", "internlm_workloads.stages.internevo_worker"]
        log(f"InternEvo: {layout}")
        t0 = time.perf_counter()
        proc = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
        wall = time.perf_counter() - t0
        errors = sorted(work.glob("error-rank-*.txt"))
        reason = errors[0].read_text().strip() if errors else proc.stderr.strip()[-500:]
        metrics_file = work / "out" / "metrics.jsonl"
        rows = (
            [json.loads(x) for x in metrics_file.read_text().splitlines()]
            if metrics_file.exists()
            else []
        )
    res: dict[str, Any] = {
        "part": "internevo",
        "layout": layout,
        "gpus": gpus,
        "wallSeconds": round(wall, 1),
    }
    if proc.returncode != 0 or not rows:
        res.update(ok=False, exitCode=proc.returncode, reason=reason)
        if args.dry_run and "InternEvo needs a CUDA device" in reason:
            res["skipped"] = (
                "InternEvo is CUDA-only (dry run on CPU): config rendered, worker launched"
            )
        log(json.dumps(res))
        return res
    timed = sorted(r["tokensPerSecondPerGPU"] for r in rows[warmup:]) or [0.0]
    # InternEvo's model is not built in this process: N from the shape (GQA attention, SwiGLU)
    h, layers, vocab = size["hidden_size"], size["num_hidden_layers"], size["vocab_size"]
    kv = size["num_key_value_heads"] / size["num_attention_heads"]
    n_params = layers * (h * h * (2 + 2 * kv) + 3 * h * size["intermediate_size"]) + 2 * vocab * h
    per_gpu = timed[len(timed) // 2]
    flops_per_token = 6 * n_params + 12 * layers * h * seq
    name = torch.cuda.get_device_name(0) if gpus else "cpu"
    peak = peak_tflops(name, args.peak_tflops) if gpus else None
    achieved = per_gpu * flops_per_token / 1e12
    res.update(
        ok=True,
        device=name,
        params=n_params,
        seqLength=seq,
        microBatch=micro,
        steps=len(rows),
        tokensPerSecondPerGPU=round(per_gpu, 1),
        achievedTFLOPs=round(achieved, 2),
        mfu=round(achieved / peak, 4) if peak else None,
        lossFirst=rows[0]["loss"],
        lossLast=rows[-1]["loss"],
    )
    log(json.dumps(res))
    return res


def make_random_model(out: Path, size: dict[str, Any]) -> None:
    """A random Llama with a tokenizer trained here (no hub)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    words = [f"w{i}" for i in range(4000)]
    text = [" ".join(words[(i * 7 + j) % 4000] for j in range(50)) for i in range(2000)]
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(
        text,
        trainers.BpeTrainer(
            vocab_size=8000,
            special_tokens=["<unk>", "<s>", "</s>"],
            show_progress=False,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        ),
    )
    hf_tok = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>"
    )
    hf_tok.chat_template = (
        "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}assistant: "
    )
    cfg = LlamaConfig(
        **{**size, "vocab_size": len(hf_tok)},
        max_position_embeddings=4096,
        bos_token_id=1,
        eos_token_id=2,
        torch_dtype="bfloat16",
    )
    LlamaForCausalLM(cfg).to(dtype=__import__("torch").bfloat16).save_pretrained(out)
    hf_tok.save_pretrained(out)


def serve(args: argparse.Namespace) -> dict[str, Any]:
    if args.dry_run:
        with tempfile.TemporaryDirectory() as d:  # exercise the model builder, then stop
            make_random_model(Path(d) / "m", SIZES["tiny"])
            ok = (Path(d) / "m" / "config.json").exists()
        return {
            "part": "serve",
            "randomModelBuilt": ok,
            "skipped": "LMDeploy inference is CUDA-only (dry run on CPU)",
        }
    try:
        import torch
        from lmdeploy import GenerationConfig, PytorchEngineConfig, pipeline
    except ImportError as e:
        return {"part": "serve", "skipped": f"lmdeploy not importable: {e}"}
    if not torch.cuda.is_available():
        return {"part": "serve", "skipped": "no GPU"}
    with tempfile.TemporaryDirectory() as d:
        model_dir = Path(d) / "model"
        make_random_model(model_dir, SIZES[args.size])
        pipe = pipeline(
            str(model_dir),
            backend_config=PytorchEngineConfig(tp=1, session_len=4096, cache_max_entry_count=0.5),
        )
        gen = GenerationConfig(max_new_tokens=args.out_len, ignore_eos=True, do_sample=False)
        prompts = [f"w{i} w{i + 1} w{i + 2} " * (args.in_len // 4) for i in range(args.requests)]
        pipe(prompts[:4], gen_config=gen)  # warm-up
        t0 = time.perf_counter()
        outs = pipe(prompts, gen_config=gen)
        dt = time.perf_counter() - t0
        out_tokens = sum(o.generate_token_len for o in outs)
        in_tokens = sum(o.input_token_len for o in outs)
        res = {
            "part": "serve",
            "device": torch.cuda.get_device_name(0),
            "requests": args.requests,
            "inputTokens": in_tokens,
            "outputTokens": out_tokens,
            "seconds": round(dt, 3),
            "outputTokensPerSecond": round(out_tokens / dt, 1),
            "requestsPerSecond": round(args.requests / dt, 2),
        }
        log(json.dumps(res))
        return res


def guard_network() -> None:
    """Benchmarks stay on this machine: the project's network guard (e2e/netguard) refuses any
    connection off it, here and in the servers this script starts."""
    guard_dir = Path(__file__).resolve().parent.parent / "e2e" / "netguard"
    sys.path.insert(0, str(guard_dir))
    import internlm_netguard

    log = os.environ.get("INTERNLM_NETGUARD_LOG") or str(
        Path(tempfile.gettempdir()) / "bench-netguard.log"
    )
    os.environ.update(internlm_netguard.child_env(log))
    internlm_netguard.install()


def main(argv: list[str] | None = None) -> int:
    guard_network()
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "part", nargs="?", choices=["train", "internevo", "serve", "all"], default="all"
    )
    ap.add_argument("--dry-run", action="store_true", help="tiny model on CPU")
    ap.add_argument("--size", choices=sorted(SIZES), default="1b")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--seq-len", type=int, default=2048)
    ap.add_argument("--micro-batch", type=int, default=8)
    ap.add_argument("--zero", type=int, default=1, choices=[0, 1, 2, 3])
    ap.add_argument("--grad-ckpt", action="store_true")
    ap.add_argument("--peak-tflops", type=float, default=None)
    ap.add_argument("--port", type=int, default=29517)
    ap.add_argument("--gpus", type=int, default=0, help="internevo: GPUs (default: all)")
    ap.add_argument("--zero1", type=int, default=None, help="internevo: parallelism.zero1")
    ap.add_argument("--requests", type=int, default=256)
    ap.add_argument("--in-len", type=int, default=512)
    ap.add_argument("--out-len", type=int, default=256)
    ap.add_argument("--out", type=Path, default=None, help="write results as JSON here")
    args = ap.parse_args(argv)
    results = []
    if args.part in ("train", "all"):
        results.append(train(args))
    if args.part in ("internevo", "all"):
        results.append(internevo(args))
    if args.part in ("serve", "all"):
        results.append(serve(args))
    text = json.dumps(results, indent=1)
    print(text)
    if args.out:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
