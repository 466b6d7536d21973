"""Pod-level settings every kind carries: resources, scheduling, environment, the IDs the
pods run as and how they reach the object store."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Self

from pydantic import ConfigDict, Field, model_validator

from .base import (
    ENV_NAME_PATTERN,
    HTTP_URL_PATTERN,
    ApiModel,
    LabelName,
    Quantity,
    ResourceName,
    cel,
    validations,
)
from .sources import HubTokens, SecretKeyRef


class Resources(ApiModel):
    """Compute requested for each pod (one pod per node for multi-node jobs)."""

    gpus_per_node: int = Field(
        default=1, ge=0, le=16, description="NVIDIA GPUs per pod (nvidia.com/gpu)."
    )
    gpu_product: Annotated[str, Field(min_length=1, max_length=128)] | None = Field(
        default=None,
        description=(
            "Required GPU model, matched against the node label nvidia.com/gpu.product "
            "(e.g. NVIDIA-A100-SXM4-80GB)."
        ),
    )
    cpu: Quantity | None = Field(default=None, description="CPU request and limit per pod.")
    memory: Quantity | None = Field(default=None, description="Memory request and limit per pod.")
    shared_memory: Quantity | None = Field(
        default=None,
        description="Size of the memory-backed /dev/shm volume (NCCL and data loaders need it).",
    )


class BatchResources(Resources):
    """Compute requested for each node of a training job (one pod per node)."""

    gpus_per_node: int = Field(
        default=8, ge=0, le=16, description="NVIDIA GPUs per node (nvidia.com/gpu)."
    )


class Toleration(ApiModel):
    """A Kubernetes toleration, passed through to the pods."""

    key: Annotated[str, Field(max_length=316)] | None = Field(
        default=None, description="Taint key the toleration applies to; empty matches all."
    )
    operator: Literal["Exists", "Equal"] | None = Field(
        default=None, description="Exists or Equal (the default)."
    )
    value: Annotated[str, Field(max_length=63)] | None = Field(
        default=None, description="Taint value to match when operator is Equal."
    )
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = Field(
        default=None, description="Taint effect to match; empty matches all effects."
    )
    toleration_seconds: int | None = Field(
        default=None, ge=0, description="How long a NoExecute taint is tolerated, in seconds."
    )


class Scheduling(ApiModel):
    """Where and how the pods are scheduled."""

    node_selector: (
        dict[str, Annotated[str, Field(max_length=63, description="Label value.")]] | None
    ) = Field(default=None, max_length=32, description="Node labels the pods require.")
    tolerations: list[Toleration] | None = Field(
        default=None, max_length=32, description="Tolerations added to the pods."
    )
    affinity: dict[str, Any] | None = Field(
        default=None,
        description="A Kubernetes Affinity object (nodeAffinity, podAffinity, podAntiAffinity).",
    )
    priority_class_name: ResourceName | None = Field(
        default=None, description="PriorityClass of the pods."
    )
    scheduler_name: ResourceName | None = Field(
        default=None, description="Scheduler for the pods (e.g. a gang scheduler)."
    )
    queue_name: LabelName | None = Field(
        default=None,
        description="Kueue LocalQueue; set as the kueue.x-k8s.io/queue-name label.",
    )


class ConfigMapKeyRef(ApiModel):
    """A key of a ConfigMap in the resource's namespace."""

    name: ResourceName = Field(description="Name of the ConfigMap.")
    key: Annotated[str, Field(min_length=1, max_length=253)] = Field(
        description="Key inside the ConfigMap."
    )


class EnvVarSource(ApiModel):
    """Where an environment variable's value comes from: exactly one of the references."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "has(self.secretKeyRef) != has(self.configMapKeyRef)",
                "exactly one of secretKeyRef or configMapKeyRef must be set",
            ),
        )
    )

    secret_key_ref: SecretKeyRef | None = Field(default=None, description="A Secret key.")
    config_map_key_ref: ConfigMapKeyRef | None = Field(default=None, description="A ConfigMap key.")


class EnvVar(ApiModel):
    """An extra environment variable for the workload container."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "!(has(self.value) && has(self.valueFrom))",
                "value and valueFrom are mutually exclusive",
            ),
        )
    )

    name: Annotated[str, Field(min_length=1, max_length=128, pattern=ENV_NAME_PATTERN)] = Field(
        description="Variable name."
    )
    value: Annotated[str, Field(max_length=4096)] | None = Field(
        default=None, description="Literal value."
    )
    value_from: EnvVarSource | None = Field(
        default=None, description="Take the value from a Secret or ConfigMap key."
    )


ImagePullPolicy = Literal["Always", "IfNotPresent", "Never"]

PosixId = Annotated[int, Field(ge=0, le=2_147_483_647)]


class PodSecurityContext(ApiModel):
    """The IDs the pods run as, replacing the operator's (UID and GID 65532, the images' own
    user). The pods stay non-root, without privilege escalation or capabilities and with the
    RuntimeDefault seccomp profile whatever is set here (Pod Security Standard restricted)."""

    run_as_user: int | None = Field(
        default=None,
        ge=1,
        le=2_147_483_647,
        description="UID of every container; never 0 (the pods always run as non-root).",
    )
    run_as_group: PosixId | None = Field(
        default=None, description="Primary GID of every container."
    )
    fs_group: PosixId | None = Field(
        default=None, description="GID that owns the pods' volumes (and can write them)."
    )
    supplemental_groups: (
        list[Annotated[int, Field(ge=0, le=2_147_483_647, description="A GID.")]] | None
    ) = Field(default=None, max_length=32, description="Further GIDs of every container.")
    fs_group_change_policy: Literal["OnRootMismatch", "Always"] | None = Field(
        default=None,
        description=(
            "When volumes are re-owned to fsGroup: OnRootMismatch (the operator's default) only"
            " when the volume root is not owned by it yet, Always on every mount."
        ),
    )


class ObjectStore(ApiModel):
    """How the pods reach the S3 or S3-compatible store of the resource's ``s3://`` inputs and
    outputs. The credentials are Secret references, exposed to the pods as AWS_ACCESS_KEY_ID and
    AWS_SECRET_ACCESS_KEY; without them the pods use what the node or the pod identity gives."""

    endpoint: Annotated[str, Field(max_length=2048, pattern=HTTP_URL_PATTERN)] | None = Field(
        default=None,
        description=(
            "URL of an S3-compatible server (MinIO, Ceph RGW, SeaweedFS, ...), e.g. "
            "http://minio.storage:9000; AWS S3 if unset."
        ),
    )
    region: Annotated[str, Field(min_length=1, max_length=64)] | None = Field(
        default=None, description="Region of the buckets (us-east-1 if unset)."
    )
    access_key_id: SecretKeyRef | None = Field(
        default=None, description="Secret key holding the access key id."
    )
    secret_access_key: SecretKeyRef | None = Field(
        default=None, description="Secret key holding the secret access key."
    )
    addressing_style: Literal["path", "virtual", "auto"] | None = Field(
        default=None,
        description=(
            "Bucket addressing: path (http://host/bucket/key, what most S3-compatible servers "
            "need; the default with an endpoint), virtual (http://bucket.host/key) or auto "
            "(botocore's choice; the default without an endpoint)."
        ),
    )

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "has(self.accessKeyId) == has(self.secretAccessKey)",
                "accessKeyId and secretAccessKey are set together",
            ),
        )
    )

    @model_validator(mode="after")
    def _pair(self) -> Self:
        if (self.access_key_id is None) != (self.secret_access_key is None):
            raise ValueError("accessKeyId and secretAccessKey are set together")
        return self


class WorkloadCommon(ApiModel):
    """Fields every kind carries for its pods."""

    image: Annotated[str, Field(min_length=1, max_length=512)] | None = Field(
        default=None,
        description="Override the workload image (defaults to the operator's image for the stage).",
    )
    image_pull_policy: ImagePullPolicy | None = Field(
        default=None, description="Pull policy for the workload image."
    )
    env: list[EnvVar] | None = Field(
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
        default=None,
        max_length=64,
        description="Extra environment variables.",
    )
    scheduling: Scheduling | None = Field(
        default=None, description="Node selection, tolerations, priority and queueing."
    )
    hub_tokens: HubTokens | None = Field(
        default=None, description="Secrets with model hub tokens for private or gated repos."
    )
    object_store: ObjectStore | None = Field(
        default=None,
        description="Endpoint and credentials for the s3:// inputs and outputs of the pods.",
    )
    pod_security_context: PodSecurityContext | None = Field(
        default=None,
        description=(
            "The user and groups the pods run as, when the operator's default (65532, the"
            " images' user) does not fit the cluster."
        ),
    )
