"""GPU benchmark for the workload images: DeepSpeed training throughput/MFU of a random ~1B
Llama-style model, and LMDeploy serving throughput of a random model.

Run each part in its image's environment (images/workloads/envs.sh creates them):

    envs=$(images/workloads/envs.sh pretrain serve)
    PRE=$(echo "$envs" | awk '/^pretrain/{print $2}')
    SRV=$(echo "$envs" | awk '/^serve/{print $2}')
    $PRE/bin/python bench/gpu_train_serve.py train --steps 300 --out train.json
    $SRV/bin/python bench/gpu_train_serve.py serve --out serve.json

``--dry-run`` runs the same code at a tiny size on CPU (DeepSpeed's CPU accelerator, gloo) to
check the script itself; serving is skipped there (LMDeploy inference is CUDA-only).
Everything is random and local: no hub access (the tokenizer is trained here).
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
    ap.add_argument("part", nargs="?", choices=["train", "serve", "all"], default="all")
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
    ap.add_argument("--requests", type=int, default=256)
    ap.add_argument("--in-len", type=int, default=512)
    ap.add_argument("--out-len", type=int, default=256)
    ap.add_argument("--out", type=Path, default=None, help="write results as JSON here")
    args = ap.parse_args(argv)
    results = []
    if args.part in ("train", "all"):
        results.append(train(args))
    if args.part in ("serve", "all"):
        results.append(serve(args))
    text = json.dumps(results, indent=1)
    print(text)
    if args.out:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
