"""ModelServe: an OpenAI-compatible server for a model: LMDeploy's api_server (GPU, the
default) or Hugging Face ``transformers serve`` (engine ``transformers``, runs on CPU)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal, Self

from pydantic import ConfigDict, Field, model_validator

from .common import (
    API_VERSION,
    ApiModel,
    FetchedInput,
    Identifier,
    ModelSource,
    ResourceName,
    Resources,
    SecretKeyRef,
    ServiceStatus,
    WorkloadCommon,
    cel,
    validations,
)

Engine = Literal["turbomind", "pytorch", "transformers"]
CPU_ENGINE = "transformers"
"""``transformers serve``: the engine that runs without a GPU (LMDeploy inference is CUDA-only)."""
DEFAULT_PORT = 23333
"""LMDeploy api_server's default port (used for both engines, so the Service never changes)."""
DEFAULT_MAX_BATCH_SIZE = 128
DEFAULT_CACHE_MAX_ENTRY_COUNT = 0.8

# Options only LMDeploy understands: (field, what the message calls it, CEL that holds when the
# field is left alone, the same test in Python). transformers serve has no equivalent, so with
# engine transformers they are refused rather than silently ignored.
_LMDEPLOY_ONLY: tuple[tuple[str, str, str, Callable[[Any], bool]], ...] = (
    (
        "tensorParallel",
        "tensorParallel > 1",
        "self.tensorParallel == 1",
        lambda s: s.tensor_parallel == 1,
    ),
    (
        "quantization",
        "quantization (AWQ/GPTQ, KV cache bits)",
        "!has(self.quantization)",
        lambda s: s.quantization is None,
    ),
    ("sessionLen", "sessionLen", "!has(self.sessionLen)", lambda s: s.session_len is None),
    (
        "maxBatchSize",
        "maxBatchSize",
        f"self.maxBatchSize == {DEFAULT_MAX_BATCH_SIZE}",
        lambda s: s.max_batch_size == DEFAULT_MAX_BATCH_SIZE,
    ),
    (
        "cacheMaxEntryCount",
        "cacheMaxEntryCount",
        f"self.cacheMaxEntryCount == {DEFAULT_CACHE_MAX_ENTRY_COUNT}",
        lambda s: s.cache_max_entry_count == DEFAULT_CACHE_MAX_ENTRY_COUNT,
    ),
    (
        "apiKeySecret",
        "apiKeySecret (API keys)",
        "!has(self.apiKeySecret)",
        lambda s: s.api_key_secret is None,
    ),
)


def lmdeploy_only_message(what: str) -> str:
    return (
        f"{what} is an LMDeploy option: use engine turbomind or pytorch, "
        f"or leave it unset with engine {CPU_ENGINE}"
    )


class Quantization(ApiModel):
    """Weight and KV-cache quantisation."""

    weights: Literal["awq", "gptq"] | None = Field(
        default=None,
        description="4-bit weight format of the model (awq or gptq); unquantised if unset.",
    )
    kv_cache_bits: Literal[0, 4, 8] = Field(
        default=0, description="KV cache quantisation: 0 (off), 8 or 4 bits (quant_policy)."
    )


class Autoscaling(ApiModel):
    """A HorizontalPodAutoscaler for the servers."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "self.minReplicas <= self.maxReplicas",
                "minReplicas must not exceed maxReplicas",
                ".minReplicas",
            ),
        )
    )

    min_replicas: int = Field(default=1, ge=1, le=1000, description="Fewest replicas.")
    max_replicas: int = Field(ge=1, le=1000, description="Most replicas.")
    target_cpu_utilization_percentage: int = Field(
        default=80, ge=1, le=100, description="Average CPU utilisation to scale at."
    )

    @model_validator(mode="after")
    def _bounds(self) -> Self:
        if self.min_replicas > self.max_replicas:
            raise ValueError("minReplicas must not exceed maxReplicas")
        return self


class Adapter(ApiModel):
    """A LoRA adapter served next to the base model (pytorch engine)."""

    name: Identifier = Field(description="Model name clients request to use this adapter.")
    source: ModelSource = Field(description="Where the adapter comes from.")


class Gate(ApiModel):
    """Serve (or roll out a change) only after an EvalRun has passed."""

    eval_run: ResourceName = Field(description="Name of an EvalRun in the same namespace.")


class DisruptionBudget(ApiModel):
    """A PodDisruptionBudget for the servers."""

    max_unavailable: int = Field(
        default=1, ge=0, le=1000, description="Servers that may be down during disruptions."
    )


class ModelServeSpec(WorkloadCommon):
    """Desired state of a ModelServe."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            # LMDeploy needs a GPU per tensor-parallel rank; transformers serve runs on CPU
            # (gpusPerNode 0) or uses what it is given.
            cel(
                f"self.engine == '{CPU_ENGINE}' || "
                "(self.resources.gpusPerNode >= self.tensorParallel && "
                "self.resources.gpusPerNode % self.tensorParallel == 0)",
                "resources.gpusPerNode must be a non-zero multiple of tensorParallel",
                ".resources.gpusPerNode",
            ),
            cel(
                "!has(self.adapters) || size(self.adapters) == 0 || self.engine == 'pytorch'",
                "adapters require engine pytorch",
                ".adapters",
            ),
            *(
                cel(
                    f"self.engine != '{CPU_ENGINE}' || {rule}",
                    lmdeploy_only_message(what),
                    f".{field}",
                )
                for field, what, rule, _ in _LMDEPLOY_ONLY
            ),
        )
    )

    model: ModelSource = Field(description="The model to serve.")
    engine: Engine = Field(
        default="turbomind",
        description=(
            "Serving engine: turbomind or pytorch run LMDeploy's api_server with that backend "
            "(CUDA GPUs); transformers runs Hugging Face transformers serve, which also runs on "
            "CPU (set resources.gpusPerNode to 0 there)."
        ),
    )
    tensor_parallel: Literal[1, 2, 4, 8] = Field(
        default=1, description="GPUs one server splits the model over (--tp)."
    )
    quantization: Quantization | None = Field(
        default=None, description="AWQ/GPTQ weights and KV cache quantisation."
    )
    max_batch_size: int = Field(
        default=DEFAULT_MAX_BATCH_SIZE,
        ge=1,
        le=4096,
        description="Concurrent requests batched per step (LMDeploy).",
    )
    session_len: int | None = Field(
        default=None,
        ge=128,
        le=1_048_576,
        description="Maximum tokens of a session (prompt + answer); the model's if unset.",
    )
    cache_max_entry_count: float = Field(
        default=DEFAULT_CACHE_MAX_ENTRY_COUNT,
        gt=0,
        le=1,
        description="Fraction of free GPU memory given to the KV cache (LMDeploy).",
    )
    served_model_name: Identifier | None = Field(
        default=None, description="Model name clients request; the resource name if unset."
    )
    adapters: list[Adapter] | None = Field(
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
        default=None,
        max_length=16,
        description="LoRA adapters served next to the base model.",
    )
    replicas: int = Field(default=1, ge=0, le=1000, description="Number of servers.")
    autoscaling: Autoscaling | None = Field(
        default=None, description="Scale between bounds with a HorizontalPodAutoscaler."
    )
    disruption_budget: DisruptionBudget | None = Field(
        default=None, description="Add a PodDisruptionBudget."
    )
    gate: Gate | None = Field(
        default=None, description="An EvalRun that must pass before the model is served."
    )
    api_key_secret: SecretKeyRef | None = Field(
        default=None, description="Secret key with the API key clients must send."
    )
    port: int = Field(default=DEFAULT_PORT, ge=1, le=65535, description="Service port.")
    resources: Resources = Field(
        default_factory=Resources, description="GPUs, CPU and memory per server."
    )

    @model_validator(mode="after")
    def _checks(self) -> Self:
        if self.engine == CPU_ENGINE:
            for _, what, _, left_alone in _LMDEPLOY_ONLY:
                if not left_alone(self):
                    raise ValueError(lmdeploy_only_message(what))
        gpus = self.resources.gpus_per_node
        if self.engine != CPU_ENGINE and (
            gpus < self.tensor_parallel or gpus % self.tensor_parallel
        ):
            raise ValueError("resources.gpusPerNode must be a non-zero multiple of tensorParallel")
        if self.adapters and self.engine != "pytorch":
            raise ValueError("adapters require engine pytorch")
        return self


class ModelServeStatus(ServiceStatus):
    """Observed state of a ModelServe."""

    served_model_name: Annotated[str, Field(max_length=128)] | None = Field(
        default=None, description="Model name the server answers to."
    )
    model_source: Annotated[str, Field(max_length=2048)] | None = Field(
        default=None,
        description="Location of the model being served (pvc://claim/path, hf://repo, ms://repo).",
    )
    inputs: list[FetchedInput] | None = Field(
        default=None,
        max_length=32,
        description="What the shared hub cache fetched for the pods (repo, commit, size).",
    )


class ModelServe(ApiModel):
    """An OpenAI-compatible server (LMDeploy, or transformers serve on CPU) for a model."""

    api_version: Literal["internlm.io/v1alpha1"] = Field(
        default=API_VERSION, description="internlm.io/v1alpha1."
    )
    kind: Literal["ModelServe"] = Field(default="ModelServe", description="ModelServe.")
    metadata: dict[str, Any] = Field(default_factory=dict, description="Standard object metadata.")
    spec: ModelServeSpec = Field(description="Desired state.")
    status: ModelServeStatus | None = Field(default=None, description="Observed state.")
