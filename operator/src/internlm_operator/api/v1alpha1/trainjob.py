"""TrainJob: multi-node (continued) pretraining with torchrun + DeepSpeed, or InternEvo."""

from __future__ import annotations

from typing import Any, Literal, Self

from pydantic import ConfigDict, Field, model_validator

from .common import (
    API_VERSION,
    ApiModel,
    BatchResources,
    DatasetSource,
    ModelSource,
    RunPolicy,
    StorageLocation,
    TrainingStatus,
    WorkloadCommon,
    cel,
    immutable,
    node_resources_field,
    nodes_field,
    run_policy_field,
    suspend_field,
    validations,
)

Framework = Literal["deepspeed", "internevo"]
Precision = Literal["bf16", "fp16", "fp32"]
LRSchedule = Literal["cosine", "linear", "constant"]


class TrainModel(ApiModel):
    """The model to train: an architecture config (from scratch) or weights to continue from."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "has(self.config) != has(self.source)",
                "exactly one of config (train from scratch) or source (continue) must be set",
            ),
        )
    )

    config: dict[str, Any] | None = Field(
        default=None,
        description=(
            "Hugging Face model config (as config.json) of an architecture to train from scratch, "
            "e.g. {architectures: [InternLM2ForCausalLM], hidden_size: 4096, ...}."
        ),
    )
    source: ModelSource | None = Field(
        default=None, description="Existing weights to continue pretraining from."
    )
    tokenizer: ModelSource | None = Field(
        default=None,
        description="Tokenizer to use; defaults to the one shipped with source.",
    )

    @model_validator(mode="after")
    def _one_of(self) -> Self:
        if (self.config is None) == (self.source is None):
            raise ValueError("exactly one of config or source must be set")
        return self


class Parallelism(ApiModel):
    """How the model is split over GPUs."""

    zero_stage: int = Field(default=2, ge=0, le=3, description="DeepSpeed ZeRO stage (0-3).")
    tensor: int = Field(default=1, ge=1, le=16, description="Tensor parallel size.")
    pipeline: int = Field(default=1, ge=1, le=64, description="Pipeline parallel size.")
    sequence: int = Field(default=1, ge=1, le=16, description="Sequence parallel size.")
    zero1: int | None = Field(
        default=None,
        ge=-1,
        le=1_048_576,
        description=(
            "framework internevo: ZeRO-1 group size (the data-parallel ranks that shard the"
            " optimizer states). Unset: one node's GPUs over the tensor (or weight) parallel size,"
            " capped by the data-parallel size (docs/internevo.md); -1: the whole data-parallel"
            " group; 1: no sharding."
        ),
    )
    weight: int = Field(
        default=1,
        ge=1,
        le=64,
        description="framework internevo: weight parallel size (isp mode, sequence > 1).",
    )


class Optimization(ApiModel):
    """Optimiser, schedule, batch and length of the run."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "!(has(self.maxSteps) && has(self.tokenBudget))",
                "set at most one of maxSteps or tokenBudget",
            ),
            cel(
                "self.minLearningRate <= self.learningRate",
                "minLearningRate must not exceed learningRate",
                ".minLearningRate",
            ),
            cel(
                "self.globalBatchSize % self.microBatchSize == 0",
                "globalBatchSize must be a multiple of microBatchSize",
                ".globalBatchSize",
            ),
        )
    )

    learning_rate: float = Field(default=3e-4, gt=0, le=1, description="Peak learning rate.")
    min_learning_rate: float = Field(
        default=3e-5, ge=0, le=1, description="Learning rate at the end of the schedule."
    )
    lr_schedule: LRSchedule = Field(default="cosine", description="cosine, linear or constant.")
    warmup_steps: int = Field(default=0, ge=0, le=10_000_000, description="Linear warmup steps.")
    weight_decay: float = Field(default=0.01, ge=0, le=1, description="AdamW weight decay.")
    global_batch_size: int = Field(
        default=512, ge=1, le=1_048_576, description="Sequences per optimizer step, all GPUs."
    )
    micro_batch_size: int = Field(
        default=1, ge=1, le=1024, description="Sequences per GPU per forward pass."
    )
    seq_length: int = Field(
        default=4096, ge=128, le=1_048_576, description="Tokens per training sequence."
    )
    max_steps: int | None = Field(
        default=None, ge=1, le=100_000_000, description="Stop after this many optimizer steps."
    )
    token_budget: int | None = Field(
        default=None,
        ge=1,
        le=1_000_000_000_000_000,
        description="Stop after this many training tokens (alternative to maxSteps).",
    )
    precision: Precision = Field(default="bf16", description="bf16, fp16 or fp32.")
    gradient_clipping: float = Field(
        default=1.0, ge=0, le=1000, description="Max global gradient norm (0 disables)."
    )

    @model_validator(mode="after")
    def _checks(self) -> Self:
        if self.max_steps is not None and self.token_budget is not None:
            raise ValueError("set at most one of maxSteps or tokenBudget")
        if self.min_learning_rate > self.learning_rate:
            raise ValueError("minLearningRate must not exceed learningRate")
        if self.global_batch_size % self.micro_batch_size:
            raise ValueError("globalBatchSize must be a multiple of microBatchSize")
        return self


class CheckpointPolicy(ApiModel):
    """When checkpoints are written, how many are kept, and whether a restart resumes."""

    interval: int = Field(
        default=1000, ge=1, le=10_000_000, description="Save every this many steps."
    )
    keep: int = Field(default=3, ge=1, le=1000, description="Most recent checkpoints kept.")
    resume: bool = Field(
        default=True, description="Resume from the newest complete checkpoint on (re)start."
    )
    on_stop: bool = Field(
        default=True,
        description=(
            "Save a checkpoint when the pods are asked to stop (spec.suspend, a Kueue eviction or"
            " preemption, a node drain) before they exit, so the next run resumes from there."
        ),
    )
    stop_grace_period_seconds: int = Field(
        default=300,
        ge=30,
        le=86_400,
        description=(
            "How long a stopping pod has to save that checkpoint: the pods'"
            " terminationGracePeriodSeconds. Size it to one checkpoint write of the model."
        ),
    )


class TrainJobSpec(WorkloadCommon):
    """Desired state of a TrainJob."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "(self.nodes * self.resources.gpusPerNode) % "
                "(self.parallelism.tensor * self.parallelism.pipeline * "
                "self.parallelism.sequence) == 0",
                "nodes * resources.gpusPerNode must be divisible by "
                "parallelism.tensor * parallelism.pipeline * parallelism.sequence",
                ".resources.gpusPerNode",
            ),
            cel(
                "self.resources.gpusPerNode % self.parallelism.tensor == 0",
                "resources.gpusPerNode must be divisible by parallelism.tensor",
                ".parallelism.tensor",
            ),
            cel(
                "self.framework == 'internevo' || self.parallelism.pipeline == 1",
                "parallelism.pipeline > 1 requires framework internevo",
                ".parallelism.pipeline",
            ),
        )
    )

    framework: Framework = Field(
        default="deepspeed",
        json_schema_extra=immutable("framework"),
        description=(
            "deepspeed (torchrun + DeepSpeed ZeRO over Hugging Face model classes) or internevo."
        ),
    )
    model: TrainModel = Field(
        json_schema_extra=immutable("model"),
        description="Architecture to train from scratch or weights to continue from.",
    )
    data: DatasetSource = Field(
        json_schema_extra=immutable("data"),
        description="Training data (usually format tokenized).",
    )
    output: StorageLocation = Field(
        json_schema_extra=immutable("output"),
        description="Where checkpoints and the final Hugging Face model are written.",
    )
    nodes: int = nodes_field(128)
    resources: BatchResources = node_resources_field()
    parallelism: Parallelism = Field(
        default_factory=Parallelism,
        json_schema_extra=immutable("parallelism"),
        description="ZeRO stage and tensor, pipeline and sequence parallel sizes.",
    )
    optimization: Optimization = Field(
        default_factory=Optimization,
        description="Learning rate and schedule, batch sizes, sequence length, budget, precision.",
    )
    checkpoint: CheckpointPolicy = Field(
        default_factory=CheckpointPolicy, description="Checkpoint interval, retention and resume."
    )
    run_policy: RunPolicy = run_policy_field()
    suspend: bool = suspend_field()

    @model_validator(mode="after")
    def _gpus(self) -> Self:
        p, gpus = self.parallelism, self.resources.gpus_per_node
        if (self.nodes * gpus) % (p.tensor * p.pipeline * p.sequence):
            raise ValueError(
                "nodes * resources.gpusPerNode must be divisible by "
                "parallelism.tensor * parallelism.pipeline * parallelism.sequence"
            )
        if gpus % p.tensor:
            raise ValueError("resources.gpusPerNode must be divisible by parallelism.tensor")
        if self.framework != "internevo" and p.pipeline != 1:
            raise ValueError("parallelism.pipeline > 1 requires framework internevo")
        return self


class TrainJobStatus(TrainingStatus):
    """Observed state of a TrainJob."""


class TrainJob(ApiModel):
    """Multi-node pretraining or continued pretraining of an InternLM-style model."""

    api_version: Literal["internlm.io/v1alpha1"] = Field(
        default=API_VERSION, description="internlm.io/v1alpha1."
    )
    kind: Literal["TrainJob"] = Field(default="TrainJob", description="TrainJob.")
    metadata: dict[str, Any] = Field(default_factory=dict, description="Standard object metadata.")
    spec: TrainJobSpec = Field(description="Desired state.")
    status: TrainJobStatus | None = Field(default=None, description="Observed state.")
