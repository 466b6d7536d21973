"""InternEvo pretraining (stage ``pretrain``, framework ``internevo``): renders InternEvo's own
Python config (``internevo_config.py``, in the keys of InternEvo's ``configs/7B_sft.py``) and
picks the parallel layout (:func:`layout`; docs/internevo.md)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .base import InvalidSpec, RenderContext, Rendered, py_literal, rendered
from .deepspeed import gradient_accumulation, max_steps, pretrain_spec

# Hugging Face config.json architectures -> InternEvo model_type (its MODEL_INITIALIZER names)
MODEL_TYPES = {
    "InternLM2ForCausalLM": "INTERNLM2_PUBLIC",
    "InternLMForCausalLM": "INTERNLM",
    "LlamaForCausalLM": "LLAMA2",
}
DEFAULT_MODEL_TYPE = "INTERNLM2_PUBLIC"
# Hugging Face config keys -> InternEvo model = dict(...) keys
HF_KEYS = {
    "num_hidden_layers": "num_layers",
    "hidden_size": "hidden_size",
    "num_attention_heads": "num_attention_heads",
    "num_key_value_heads": "num_kv_attention_heads",
    "vocab_size": "vocab_size",
    "rms_norm_eps": "layer_norm_epsilon",
    "rope_theta": "rope_base",
    "max_position_embeddings": "max_position_embeddings",
}
# keys already in InternEvo's terms, passed through as given
INTERNEVO_KEYS = frozenset(
    {
        *HF_KEYS.values(),
        "mlp_ratio",
        "norm_type",
        "no_bias",
        "embed_split_hidden",
        "embed_grad_scale",
        "apply_post_layer_norm",
        "checkpoint",
        "num_chunks",
        "multiple_of",
        "use_swiglu",
        "adapt_hf",
        "use_dynamic_ntk_rope",
    }
)
# keys a model type's builder (InternEvo 0.4.9) has no parameter for
NOT_ACCEPTED = {
    "INTERNLM": frozenset({"num_kv_attention_heads", "no_bias", "adapt_hf"}),
    "LLAMA2": frozenset({"max_position_embeddings", "use_dynamic_ntk_rope"}),
}
REQUIRED = ("num_layers", "hidden_size", "num_attention_heads", "vocab_size")
DTYPES = {"bf16": "torch.bfloat16", "fp16": "torch.float16", "fp32": "torch.float32"}


@dataclass(frozen=True)
class Layout:
    """How InternEvo splits the job's processes (InternEvo's own sizes)."""

    world: int  # processes: nodes x GPUs per node (one per node without GPUs)
    tensor: int  # InternEvo's tensor size: the tensor (mtp) or sequence (isp) parallel size
    mode: str  # mtp (Megatron tensor parallel) or isp (InternEvo sequence parallel)
    pipeline: int
    weight: int
    data: int  # data-parallel size: world / (pipeline x tensor)
    zero1: int  # ranks that shard the optimizer states
    reason: str  # why this zero1

    def describe(self) -> str:
        procs = f"{self.world} process{'es' if self.world != 1 else ''}"
        return (
            f"{procs}: data {self.data} x tensor {self.tensor} ({self.mode}) x "
            f"pipeline {self.pipeline}, weight {self.weight}, zero1 {self.zero1} ({self.reason})"
        )


def _largest_divisor(n: int, cap: int) -> int:
    return max(d for d in range(1, max(1, min(n, cap)) + 1) if n % d == 0)


def layout(
    nodes: int,
    gpus_per_node: int,
    *,
    tensor: int = 1,
    pipeline: int = 1,
    sequence: int = 1,
    weight: int = 1,
    zero_stage: int = 2,
    zero1: int | None = None,
) -> Layout:
    """The parallel layout for InternEvo. ZeRO-1 by default shards within one node: InternEvo's
    own table (7B, 8 -> 1,024 GPUs) keeps 88.9% scaling efficiency with zero1=8 but 55.9% with
    zero1=-1 (the whole data-parallel group), whose all-gathers cross the network every step.
    InternEvo orders ranks tensor-innermost, so a zero1 group spans tensor x zero1 consecutive
    ranks (weight x zero1 in isp): one node holds gpusPerNode / tensor of them."""
    gpn = max(1, gpus_per_node)
    world = nodes * gpn
    if sequence > 1:
        if tensor > 1:
            raise InvalidSpec(
                "framework internevo runs parallelism.sequence as InternEvo's isp mode, which has "
                "no tensor parallelism: set parallelism.tensor 1 (or sequence 1 for tensor "
                "parallelism)"
            )
        mode, tp, inner = "isp", sequence, weight
    else:
        if weight > 1:
            raise InvalidSpec(
                "parallelism.weight > 1 is InternEvo's isp mode: it needs parallelism.sequence > 1"
            )
        mode, tp, inner = "mtp", tensor, tensor
    if world % (pipeline * tp) or world % (pipeline * weight):
        raise InvalidSpec(
            f"{world} processes cannot be split into pipeline {pipeline} x tensor {tp} "
            f"(weight {weight})"
        )
    data = world // (pipeline * tp)
    group = world // (pipeline * weight) if mode == "isp" else data
    if zero1 is None:
        if zero_stage == 0:
            z, why = 1, "zeroStage 0: no optimizer sharding"
        else:
            z = _largest_divisor(group, gpn // inner if gpn >= inner else 1)
            why = f"default: within one node of {gpn} GPU(s)"
            if inner > 1:
                why += f" over {'weight' if mode == 'isp' else 'tensor'} {inner}"
            if z < gpn // max(1, inner):
                why += f", capped by the {'weight-' if mode == 'isp' else ''}data-parallel size"
    elif zero1 in (-1, 0):
        z, why = group, "parallelism.zero1 -1: the whole data-parallel group"
    else:
        if zero1 > group or group % zero1:
            raise InvalidSpec(
                f"parallelism.zero1 {zero1} must divide the data-parallel size {group}"
            )
        z, why = zero1, "parallelism.zero1"
    return Layout(world, tp, mode, pipeline, weight, data, z, why)


def layout_for(ctx: RenderContext) -> Layout:
    p = ctx.spec.parallelism
    return layout(
        ctx.nodes,
        ctx.gpus_per_node,
        tensor=p.tensor,
        pipeline=p.pipeline,
        sequence=p.sequence,
        weight=p.weight,
        zero_stage=p.zero_stage,
        zero1=p.zero1,
    )


def model_dict(config: dict[str, Any]) -> tuple[str, dict[str, Any], list[str]]:
    """(model_type, InternEvo's model = dict(...), the config keys it has no use for) from a
    Hugging Face config.json (or keys already in InternEvo's terms)."""
    cfg = dict(config)
    arch = cfg.pop("architectures", None) or []
    model_type = cfg.pop("model_type", None)
    if model_type not in MODEL_TYPES.values():  # an HF model_type ("internlm2") names no class
        model_type = next((MODEL_TYPES[a] for a in arch if a in MODEL_TYPES), None)
        if model_type is None and arch:
            raise InvalidSpec(
                f"framework internevo trains {', '.join(sorted(MODEL_TYPES))}; "
                f"model.config.architectures is {arch}"
            )
    model: dict[str, Any] = {}
    unused = []
    for k, v in cfg.items():
        if k in HF_KEYS:
            model[HF_KEYS[k]] = v
        elif k in INTERNEVO_KEYS:
            model[k] = v
        elif k != "intermediate_size":
            unused.append(k)
    if "mlp_ratio" not in model and "intermediate_size" in cfg and "hidden_size" in model:
        model["mlp_ratio"] = cfg["intermediate_size"] / model["hidden_size"]
    missing = [k for k in REQUIRED if k not in model]
    if missing:
        raise InvalidSpec(f"model.config lacks {', '.join(missing)} (framework internevo)")
    given = set(model)
    model.setdefault("num_kv_attention_heads", model["num_attention_heads"])
    model.setdefault("mlp_ratio", 8 / 3)
    model_type = model_type or DEFAULT_MODEL_TYPE
    for k in NOT_ACCEPTED.get(model_type, ()):  # InternLM (v1) has no grouped-query attention
        if model.pop(k, None) is not None and k in given:
            unused.append(k)
    return model_type, model, sorted(unused)


def _lr(ctx: RenderContext, steps: int) -> tuple[float, str]:
    o = ctx.spec.optimization
    if o.lr_schedule == "linear":
        raise InvalidSpec(
            "framework internevo schedules the learning rate with cosine warmup only: "
            "optimization.lrSchedule cosine or constant"
        )
    eta_min = o.learning_rate if o.lr_schedule == "constant" else o.min_learning_rate
    return eta_min, repr(round(o.warmup_steps / max(1, steps), 6))


def internevo_config(ctx: RenderContext) -> str:
    s = ctx.spec
    o = s.optimization
    if s.model.config is None:
        raise InvalidSpec(
            "framework internevo trains from model.config (InternEvo builds the architecture "
            "from its config); continuing from model.source weights is not supported yet"
        )
    model_type, model, unused = model_dict(s.model.config)
    lay = layout_for(ctx)
    steps = max_steps(ctx)
    eta_min, warmup_ratio = _lr(ctx, steps)
    out = ctx.output_dir.rstrip("/")
    fields = {
        **model,
        "dtype": DTYPES[o.precision],
        "checkpoint": model.get("checkpoint", False),
        "embed_split_hidden": model.get("embed_split_hidden", True),
        "num_chunks": model.get("num_chunks", 1),
        "parallel_output": False,
    }
    model_items = "".join(f"    {k}={py_literal(v)},\n" for k, v in sorted(fields.items()))
    lines = [
        "# Rendered by internlm-operator for InternEvo (internlm.core.context.Config.from_file);",
        "# do not edit. Keys as in InternEvo's configs/7B_sft.py; docs/internevo.md.",
        f"# layout: {lay.describe()}",
        *([f"# model.config keys InternEvo does not use: {', '.join(unused)}"] if unused else []),
        "import importlib.util",
        "",
        f"JOB_NAME = {py_literal(ctx.name)}",
        f"model_type = {py_literal(model_type)}",
        "# flash-attn is not in the pretrain image; with it InternEvo packs sequences (varlen)",
        'USE_FLASH_ATTN = importlib.util.find_spec("flash_attn") is not None',
        f"SEQ_LEN = {o.seq_length}",
        f"TOTAL_STEP = {steps}",
        "model = dict(",
        model_items + "    use_flash_attn=USE_FLASH_ATTN,",
        ")",
        "data = dict(",
        "    type='tokenized',",
        f"    train_folder={py_literal(ctx.paths['data'])},",
        "    valid_folder=None,",
        "    seq_len=SEQ_LEN,",
        f"    micro_num={gradient_accumulation(ctx)},",
        f"    micro_bsz={o.micro_batch_size},",
        "    valid_micro_num=1,",
        "    valid_every=0,",
        "    total_steps=TOTAL_STEP,",
        "    pack_sample_into_one=False,",
        "    skip_batches='',",
        "    rampup_batch_size='',",
        "    min_length=0,",
        "    use_packed_dataset=USE_FLASH_ATTN,",
        "    num_worker=4,",
        ")",
        "ckpt = dict(",
        "    enable_save_ckpt=True,",
        f"    save_ckpt_folder={py_literal('local:' + out + '/checkpoints')},",
        f"    checkpoint_every={s.checkpoint.interval},",
        f"    auto_resume={s.checkpoint.resume},",
        "    load_ckpt_info=None,",
        "    async_upload=False,",
        "    # a step number written here makes every rank save a checkpoint there and stop",
        f"    stop_file_path={py_literal(out + '/internevo-stop')},",
        ")",
        "grad_scaler = dict(",
        "    fp16=dict(initial_scale=2**16, min_scale=1, growth_interval=1000),",
        "    growth_factor=2, backoff_factor=0.5, max_scale=2**24, hysteresis=2,",
        ")",
        "hybrid_zero_optimizer = dict(",
        "    overlap_sync_grad=True, overlap_sync_param=False,",
        f"    reduce_bucket_size=512 * 1024 * 1024, clip_grad_norm={o.gradient_clipping!r},",
        ")",
        "loss = dict(label_smoothing=0)",
        "adam = dict(",
        f"    lr={o.learning_rate!r}, adam_beta1=0.9, adam_beta2=0.95, adam_beta2_c=0,",
        f"    adam_eps=1e-8, weight_decay={o.weight_decay!r},",
        ")",
        "lr_scheduler = dict(",
        f"    total_steps=TOTAL_STEP, init_steps=0, warmup_ratio={warmup_ratio},",
        f"    eta_min={eta_min!r}, last_epoch=-1,",
        ")",
        "beta2_scheduler = dict(init_beta2=0.95, c=0, cur_iter=-1)",
        "parallel = dict(",
        f"    zero1=dict(size={lay.zero1}, fsdp=False),",
        f"    tensor=dict(size={lay.tensor}, mode={py_literal(lay.mode)}),",
        f"    pipeline=dict(size={lay.pipeline}, interleaved_overlap=True),",
        f"    weight=dict(size={lay.weight}, overlap={lay.weight > 1}, memory_pool=False),",
        f"    sequence_parallel={lay.mode != 'mtp'},",
        ")",
        "cudnn_deterministic = False",
        "cudnn_benchmark = False",
        "enable_tb = False",
        "monitor = dict(",
        "    alert=dict(enable_feishu_alert=False, feishu_alert_address=None,",
        "               light_monitor_address=None, alert_file_path=None),",
        "    tensorboard=dict(queue_max_length=1),",
        ")",
        "",
    ]
    return "\n".join(lines)


class InternEvo:
    name = "internevo"
    stage = "pretrain"

    def render(self, ctx: RenderContext) -> Rendered:
        config = internevo_config(ctx)
        spec = pretrain_spec(ctx, None)
        return rendered(ctx, self.stage, spec, {"internevo_config.py": config})


RUNTIME = InternEvo()
