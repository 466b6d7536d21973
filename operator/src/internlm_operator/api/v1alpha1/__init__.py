"""``internlm.io/v1alpha1``: TrainJob, FineTune, EvalRun, ModelServe and Agent.

The models here are the single source of truth for the CRDs in ``crds/`` (see
``internlm_operator.crdgen``). Other layers use:

- the resource models (:class:`TrainJob`, :class:`FineTune`, ...) and their spec/status models;
- :data:`KINDS`, the registry of kind metadata (plural, short name, list kind, batch or not);
- :func:`parse` to turn a manifest or a kopf body into the right model.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .agent import Agent, AgentLLM, AgentLLMStatus, AgentResources, AgentSpec, AgentStatus, Tool
from .common import (
    API_VERSION,
    CATEGORY,
    GROUP,
    VERSION,
    ApiModel,
    BatchPhase,
    BatchResources,
    BatchStatus,
    Checkpoint,
    Condition,
    ConfigMapKeyRef,
    DatasetSource,
    EnvVar,
    EnvVarSource,
    FailurePolicy,
    FailureRule,
    FetchedInput,
    FromResource,
    HubRepo,
    HubTokens,
    LineageEntry,
    ModelSource,
    ObjectStore,
    Outputs,
    PodSecurityContext,
    Progress,
    PVCLocation,
    Resources,
    RestartDelay,
    RunPolicy,
    Scheduling,
    SecretKeyRef,
    ServicePhase,
    ServiceStatus,
    SourceForm,
    StatusBase,
    StorageLocation,
    Toleration,
    TrainingStatus,
    WorkloadCommon,
)
from .evalrun import (
    CustomDataset,
    EvalRun,
    EvalRunSpec,
    EvalRunStatus,
    EvalTarget,
    Generation,
    OpenAIEndpoint,
    Score,
    Threshold,
)
from .finetune import FineTune, FineTuneSpec, FineTuneStatus, Hyperparameters, LoraConfig
from .modelserve import (
    DEFAULT_PORT,
    Adapter,
    Autoscaling,
    DisruptionBudget,
    Gate,
    ModelServe,
    ModelServeSpec,
    ModelServeStatus,
    Quantization,
)
from .trainjob import (
    CheckpointPolicy,
    Optimization,
    Parallelism,
    TrainJob,
    TrainJobSpec,
    TrainJobStatus,
    TrainModel,
)

Resource = TrainJob | FineTune | EvalRun | ModelServe | Agent
"""Any resource of this API version."""


@dataclass(frozen=True)
class KindInfo:
    """Metadata of one kind, as the CRD declares it."""

    kind: str
    model: type[ApiModel]
    spec_model: type[ApiModel]
    status_model: type[ApiModel]
    plural: str
    singular: str
    short_name: str
    list_kind: str
    batch: bool
    """True for run-to-completion kinds (TrainJob, FineTune, EvalRun)."""

    @property
    def crd_name(self) -> str:
        """``<plural>.internlm.io``."""
        return f"{self.plural}.{GROUP}"


def _info(
    model: type[ApiModel],
    spec: type[ApiModel],
    status: type[ApiModel],
    plural: str,
    short: str,
    batch: bool,
) -> KindInfo:
    kind = model.__name__
    return KindInfo(
        kind=kind,
        model=model,
        spec_model=spec,
        status_model=status,
        plural=plural,
        singular=kind.lower(),
        short_name=short,
        list_kind=f"{kind}List",
        batch=batch,
    )


KINDS: dict[str, KindInfo] = {
    i.kind: i
    for i in (
        _info(TrainJob, TrainJobSpec, TrainJobStatus, "trainjobs", "tj", True),
        _info(FineTune, FineTuneSpec, FineTuneStatus, "finetunes", "ft", True),
        _info(EvalRun, EvalRunSpec, EvalRunStatus, "evalruns", "er", True),
        _info(ModelServe, ModelServeSpec, ModelServeStatus, "modelserves", "ms", False),
        _info(Agent, AgentSpec, AgentStatus, "agents", "ag", False),
    )
}
"""Kind name -> metadata, in pipeline order."""


def kind_info(kind: str) -> KindInfo:
    """Metadata for a kind name (``TrainJob``), plural (``trainjobs``) or short name (``tj``)."""
    if kind in KINDS:
        return KINDS[kind]
    for info in KINDS.values():
        if kind in (info.plural, info.singular, info.short_name):
            return info
    raise KeyError(f"unknown kind {kind!r}")


def parse(obj: Mapping[str, Any]) -> Resource:
    """Validate a manifest (or a kopf body converted with ``dict(body)``) into its model.

    Raises ``KeyError`` for an unknown kind and ``pydantic.ValidationError`` for a bad object.
    """
    kind = obj.get("kind")
    if not isinstance(kind, str) or kind not in KINDS:
        raise KeyError(f"unknown kind {kind!r}")
    data = dict(obj)
    data.setdefault("apiVersion", API_VERSION)
    model = KINDS[kind].model.model_validate(data)
    assert isinstance(model, TrainJob | FineTune | EvalRun | ModelServe | Agent)
    return model


__all__ = [
    "API_VERSION",
    "CATEGORY",
    "DEFAULT_PORT",
    "GROUP",
    "KINDS",
    "VERSION",
    "Adapter",
    "Agent",
    "AgentLLM",
    "AgentLLMStatus",
    "AgentResources",
    "AgentSpec",
    "AgentStatus",
    "ApiModel",
    "Autoscaling",
    "BatchPhase",
    "BatchResources",
    "BatchStatus",
    "Checkpoint",
    "CheckpointPolicy",
    "Condition",
    "ConfigMapKeyRef",
    "CustomDataset",
    "DatasetSource",
    "DisruptionBudget",
    "EnvVar",
    "EnvVarSource",
    "EvalRun",
    "EvalRunSpec",
    "EvalRunStatus",
    "EvalTarget",
    "FailurePolicy",
    "FailureRule",
    "FetchedInput",
    "FineTune",
    "FineTuneSpec",
    "FineTuneStatus",
    "FromResource",
    "Gate",
    "Generation",
    "HubRepo",
    "HubTokens",
    "Hyperparameters",
    "KindInfo",
    "LineageEntry",
    "LoraConfig",
    "ModelServe",
    "ModelServeSpec",
    "ModelServeStatus",
    "ModelSource",
    "ObjectStore",
    "OpenAIEndpoint",
    "Optimization",
    "Outputs",
    "PVCLocation",
    "Parallelism",
    "PodSecurityContext",
    "Progress",
    "Quantization",
    "Resource",
    "Resources",
    "RestartDelay",
    "RunPolicy",
    "Scheduling",
    "Score",
    "SecretKeyRef",
    "ServicePhase",
    "ServiceStatus",
    "SourceForm",
    "StatusBase",
    "StorageLocation",
    "Threshold",
    "Toleration",
    "Tool",
    "TrainJob",
    "TrainJobSpec",
    "TrainJobStatus",
    "TrainModel",
    "TrainingStatus",
    "WorkloadCommon",
    "kind_info",
    "parse",
]
