"""FineTune: XTuner supervised fine-tuning (LoRA, QLoRA or full), then HF conversion and merge."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Self

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

Method = Literal["lora", "qlora", "full"]
Produce = Literal["adapter", "merged", "both"]


class LoraConfig(ApiModel):
    """LoRA adapter parameters (method lora or qlora only)."""

    r: int = Field(default=64, ge=1, le=1024, description="Rank of the update matrices.")
    alpha: int = Field(default=16, ge=1, le=4096, description="Scaling factor (lora_alpha).")
    dropout: float = Field(default=0.1, ge=0, lt=1, description="Dropout on the LoRA layers.")
    target_modules: (
        list[
            Annotated[
                str,
                Field(
                    min_length=1,
                    max_length=128,
                    pattern=r"^[A-Za-z0-9_.*]+$",
                    description="A module name or glob.",
                ),
            ]
        ]
        | None
    ) = Field(
        default=None,
        max_length=32,
        description="Modules to adapt (e.g. wqkv, wo, w1, w2, w3); all linear layers if unset.",
    )


class Hyperparameters(ApiModel):
    """Training hyperparameters of the fine-tune."""

    epochs: int = Field(default=3, ge=1, le=100, description="Passes over the dataset.")
    learning_rate: float = Field(default=2e-4, gt=0, le=1, description="Peak learning rate.")
    max_length: int = Field(
        default=2048, ge=128, le=1_048_576, description="Maximum tokens per (packed) sample."
    )
    batch_size: int = Field(default=1, ge=1, le=1024, description="Samples per GPU per step.")
    gradient_accumulation: int = Field(
        default=16, ge=1, le=4096, description="Steps accumulated before each optimizer update."
    )
    packing: bool = Field(
        default=True, description="Pack several samples into one sequence of maxLength."
    )
    warmup_ratio: float = Field(
        default=0.03, ge=0, le=1, description="Fraction of steps spent in linear warmup."
    )


class FineTuneSpec(WorkloadCommon):
    """Desired state of a FineTune."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "!has(self.lora) || self.method in ['lora', 'qlora']",
                "lora parameters may only be set when method is lora or qlora",
                ".lora",
            ),
            cel(
                "self.method != 'full' || self.produce != 'adapter'",
                "produce adapter requires method lora or qlora",
                ".produce",
            ),
            cel(
                "self.method != 'qlora' || self.deepspeedStage <= 2",
                "method qlora does not support deepspeedStage 3",
                ".deepspeedStage",
            ),
        )
    )

    model: ModelSource = Field(
        json_schema_extra=immutable("model"), description="Base model to fine-tune."
    )
    method: Method = Field(
        default="lora",
        json_schema_extra=immutable("method"),
        description="lora, qlora (4-bit base + LoRA) or full.",
    )
    lora: LoraConfig | None = Field(
        default=None, description="LoRA parameters; defaults apply for lora and qlora if unset."
    )
    dataset: DatasetSource = Field(
        json_schema_extra=immutable("dataset"),
        description="Training data; format alpaca or openai (chat messages).",
    )
    template: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[a-z0-9_]+$")] = Field(
        default="internlm2_chat", description="XTuner prompt template, e.g. internlm2_chat."
    )
    hyperparameters: Hyperparameters = Field(
        default_factory=Hyperparameters,
        description="Epochs, learning rate, max length, batch, packing.",
    )
    deepspeed_stage: int = Field(default=2, ge=0, le=3, description="DeepSpeed ZeRO stage.")
    nodes: int = nodes_field(64)
    resources: BatchResources = node_resources_field()
    produce: Produce = Field(
        default="both",
        description=(
            "What to produce: the adapter, the base merged with it, or both (a full fine-tune "
            "always produces a merged model)."
        ),
    )
    output: StorageLocation = Field(
        json_schema_extra=immutable("output"),
        description="Where checkpoints, the adapter and the merged model are written.",
    )
    run_policy: RunPolicy = run_policy_field()
    suspend: bool = suspend_field()

    @model_validator(mode="after")
    def _checks(self) -> Self:
        if self.lora is not None and self.method not in ("lora", "qlora"):
            raise ValueError("lora parameters may only be set when method is lora or qlora")
        if self.method == "full" and self.produce == "adapter":
            raise ValueError("produce adapter requires method lora or qlora")
        if self.method == "qlora" and self.deepspeed_stage > 2:
            raise ValueError("method qlora does not support deepspeedStage 3")
        return self

    def effective_lora(self) -> LoraConfig | None:
        """The LoRA parameters in force: the given ones or the defaults; None for full."""
        if self.method == "full":
            return None
        return self.lora or LoraConfig()


class FineTuneStatus(TrainingStatus):
    """Observed state of a FineTune."""


class FineTune(ApiModel):
    """Supervised fine-tuning of a model with XTuner."""

    api_version: Literal["internlm.io/v1alpha1"] = Field(
        default=API_VERSION, description="internlm.io/v1alpha1."
    )
    kind: Literal["FineTune"] = Field(default="FineTune", description="FineTune.")
    metadata: dict[str, Any] = Field(default_factory=dict, description="Standard object metadata.")
    spec: FineTuneSpec = Field(description="Desired state.")
    status: FineTuneStatus | None = Field(default=None, description="Observed state.")
