"""The status every kind reports: conditions, lineage, phase, progress, checkpoints, outputs
and what was fetched."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from .base import ApiModel


class Condition(ApiModel):
    """A Kubernetes condition (metav1.Condition shape)."""

    type: Annotated[str, Field(min_length=1, max_length=316)] = Field(
        description="Condition type: Ready, Reconciling, Stalled, Complete, Failed, Suspended."
    )
    status: Literal["True", "False", "Unknown"] = Field(description="True, False or Unknown.")
    observed_generation: int | None = Field(
        default=None, ge=0, description="metadata.generation the condition was computed from."
    )
    last_transition_time: Annotated[str, Field(max_length=64)] = Field(
        json_schema_extra={"format": "date-time"},
        description="When the condition last changed status (RFC 3339).",
    )
    reason: Annotated[
        str,
        Field(min_length=1, max_length=1024, pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"),
    ] = Field(description="CamelCase machine-readable reason for the last transition.")
    message: Annotated[str, Field(max_length=32768)] = Field(
        default="", description="Human-readable details."
    )


class LineageEntry(ApiModel):
    """One upstream resource in the chain that produced this one."""

    kind: Annotated[str, Field(max_length=63)] = Field(description="Kind of the upstream resource.")
    name: Annotated[str, Field(max_length=253)] = Field(description="Its name.")
    namespace: Annotated[str, Field(max_length=63)] | None = Field(
        default=None, description="Its namespace."
    )
    uid: Annotated[str, Field(max_length=64)] | None = Field(default=None, description="Its UID.")
    output: Annotated[str, Field(max_length=2048)] | None = Field(
        default=None, description="The output location taken from it."
    )


class Progress(ApiModel):
    """Training progress reported by the workload."""

    step: int | None = Field(default=None, ge=0, description="Optimizer steps done.")
    total_steps: int | None = Field(default=None, ge=0, description="Steps planned.")
    loss: float | None = Field(default=None, description="Latest training loss.")
    tokens_per_second: float | None = Field(
        default=None, ge=0, description="Throughput over all GPUs."
    )
    epoch: int | None = Field(default=None, ge=0, description="Current epoch (fine-tuning).")


class Checkpoint(ApiModel):
    """A saved checkpoint."""

    step: int | None = Field(default=None, ge=0, description="Step the checkpoint was taken at.")
    path: Annotated[str, Field(max_length=2048)] | None = Field(
        default=None, description="Where it was written."
    )


class Outputs(ApiModel):
    """Where a finished job's results are."""

    model: Annotated[str, Field(max_length=2048)] | None = Field(
        default=None, description="Hugging Face format model (TrainJob, full fine-tune)."
    )
    adapter: Annotated[str, Field(max_length=2048)] | None = Field(
        default=None, description="LoRA adapter (FineTune)."
    )
    merged: Annotated[str, Field(max_length=2048)] | None = Field(
        default=None, description="Base model merged with the adapter (FineTune)."
    )
    results: Annotated[str, Field(max_length=2048)] | None = Field(
        default=None, description="OpenCompass work directory (EvalRun)."
    )


class FetchedInput(ApiModel):
    """What the pods fetched for one input (a hub repo or an s3:// object), as the workload
    reported it."""

    name: Annotated[str, Field(max_length=256)] = Field(
        description="The input: model, dataset, data, tokenizer, custom:<name>, ..."
    )
    source: Annotated[str, Field(max_length=2048)] = Field(
        description="hf://<repo>[@rev], ms://<repo>[@rev] or s3://<bucket>/<key>."
    )
    revision: Annotated[str, Field(max_length=128)] | None = Field(
        default=None,
        description="Fetched by the pod: the commit the revision resolved to (hub), or the "
        "object's ETag (S3). From the shared hub cache: the revision asked for.",
    )
    commit: Annotated[str, Field(max_length=128)] | None = Field(
        default=None,
        description="From the shared hub cache: the commit the revision resolved to.",
    )
    bytes: int | None = Field(default=None, ge=0, description="Bytes fetched.")
    files: int | None = Field(default=None, ge=0, description="Files fetched.")
    cached: bool | None = Field(
        default=None,
        description="From the shared hub cache: true when this resource reused an entry "
        "fetched for another resource, false when the fetch was started for this one.",
    )


BatchPhase = Literal["Pending", "Waiting", "Running", "Succeeded", "Failed", "Suspended"]
ServicePhase = Literal["Pending", "Waiting", "Progressing", "Ready", "Degraded", "Failed"]


class StatusBase(ApiModel):
    """Status fields every kind reports."""

    conditions: list[Condition] | None = Field(
        default=None,
        max_length=16,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
        description="Current state as Kubernetes conditions, one per type.",
    )
    observed_generation: int | None = Field(
        default=None, ge=0, description="metadata.generation of the last successful reconcile."
    )
    lineage: list[LineageEntry] | None = Field(
        default=None, max_length=32, description="Upstream resources this one was built from."
    )

    def condition(self, type_: str) -> Condition | None:
        """The condition of the given type, if present."""
        for c in self.conditions or []:
            if c.type == type_:
                return c
        return None


class BatchStatus(StatusBase):
    """Status of a batch kind (TrainJob, FineTune, EvalRun)."""

    phase: BatchPhase | None = Field(
        default=None,
        description="Pending, Waiting, Running, Succeeded, Failed or Suspended.",
    )
    start_time: Annotated[str, Field(max_length=64)] | None = Field(
        default=None,
        json_schema_extra={"format": "date-time"},
        description="When the workload first started.",
    )
    completion_time: Annotated[str, Field(max_length=64)] | None = Field(
        default=None,
        json_schema_extra={"format": "date-time"},
        description="When it succeeded or failed.",
    )
    restarts: int | None = Field(default=None, ge=0, description="Gang restarts so far.")
    next_restart_time: Annotated[str, Field(max_length=64)] | None = Field(
        default=None,
        json_schema_extra={"format": "date-time"},
        description=(
            "While a gang restart waits out runPolicy.restartDelay: the new Job is not created "
            "before this time (RFC 3339)."
        ),
    )
    outputs: Outputs | None = Field(default=None, description="Where the results are.")
    inputs: list[FetchedInput] | None = Field(
        default=None,
        max_length=32,
        description="What was fetched from hubs and object stores (repo, commit, size).",
    )


class TrainingStatus(BatchStatus):
    """Status of a training kind (TrainJob, FineTune): progress and the newest checkpoint."""

    progress: Progress | None = Field(default=None, description="Latest training progress.")
    last_checkpoint: Checkpoint | None = Field(
        default=None, description="Newest complete checkpoint."
    )


class ServiceStatus(StatusBase):
    """Status of a long-running kind (ModelServe, Agent)."""

    phase: ServicePhase | None = Field(
        default=None,
        description="Pending, Waiting, Progressing, Ready, Degraded or Failed.",
    )
    endpoint: Annotated[str, Field(max_length=2048)] | None = Field(
        default=None, description="In-cluster URL of the service."
    )
    replicas: int | None = Field(default=None, ge=0, description="Pods that exist.")
    ready_replicas: int | None = Field(default=None, ge=0, description="Pods that are ready.")
    selector: Annotated[str, Field(max_length=1024)] | None = Field(
        default=None, description="Label selector of the pods (for the scale subresource)."
    )
