"""Types shared by the five kinds of ``internlm.io/v1alpha1``.

Everything here is pure data: pydantic v2 models whose JSON schema is turned into the CRDs by
``internlm_operator.crdgen``. CEL rules the API server enforces are attached to the models with
``json_schema_extra`` (key ``x-kubernetes-validations``) and mirrored, where cheap, by pydantic
validators so that the operator and the API server agree on what is valid.

Field names are snake_case in Python and camelCase on the wire (``alias_generator=to_camel``);
serialise with :func:`ApiModel.to_dict` (``by_alias=True, exclude_none=True``).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Final, Literal, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, WithJsonSchema, model_validator
from pydantic.alias_generators import to_camel

from .pattern import check_pattern

GROUP = "internlm.io"
VERSION = "v1alpha1"
API_VERSION: Final = "internlm.io/v1alpha1"
CATEGORY = "internlm"

# ---------------------------------------------------------------------------------------------
# Constrained scalar types (bounds keep CEL cost estimates within the API server's budget)
# ---------------------------------------------------------------------------------------------

DNS_LABEL_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS_SUBDOMAIN_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
QUANTITY_PATTERN = r"^[0-9]+(\.[0-9]+)?(m|k|Ki|Mi|Gi|Ti|Pi|Ei|M|G|T|P|E)?$"
URI_PATTERN = r"^(s3|gs|oss|az|hdfs|https?)://[^\s]+$"
HTTP_URL_PATTERN = r"^https?://[^\s]+$"
HUB_REPO_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$"
ENV_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
IDENTIFIER_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"

ResourceName = Annotated[str, Field(min_length=1, max_length=253, pattern=DNS_SUBDOMAIN_PATTERN)]
"""A Kubernetes object name (DNS-1123 subdomain)."""
LabelName = Annotated[str, Field(min_length=1, max_length=63, pattern=DNS_LABEL_PATTERN)]
"""A DNS-1123 label (Service names, Kueue queue names)."""
Path = Annotated[str, Field(max_length=1024, pattern=r"^[^\x00]*$")]
"""A filesystem path inside a volume."""
ShortText = Annotated[str, Field(max_length=256)]
"""A short free-text string."""
Identifier = Annotated[str, Field(min_length=1, max_length=128, pattern=IDENTIFIER_PATTERN)]
"""A name such as an OpenCompass dataset config, a metric, a tool or a served model name."""


def _check_quantity(value: int | str) -> int | str:
    if isinstance(value, int):
        if value < 0:
            raise ValueError("quantity must not be negative")
        return value
    if not re.fullmatch(QUANTITY_PATTERN, value):
        raise ValueError(f"{value!r} is not a Kubernetes quantity such as 500m, 8, 64Gi")
    return value


Quantity = Annotated[
    int | str,
    AfterValidator(_check_quantity),
    WithJsonSchema(
        {
            "x-kubernetes-int-or-string": True,
            "pattern": QUANTITY_PATTERN,
            "maxLength": 64,
        }
    ),
]
"""A Kubernetes resource quantity (``8``, ``500m``, ``64Gi``)."""


def cel(rule: str, message: str, field_path: str | None = None) -> dict[str, str]:
    """One ``x-kubernetes-validations`` entry."""
    entry = {"rule": rule, "message": message}
    if field_path:
        entry["fieldPath"] = field_path
    return entry


def immutable(name: str) -> dict[str, Any]:
    """``json_schema_extra`` for a field that cannot change once the resource exists."""
    return {"x-kubernetes-validations": [cel("self == oldSelf", f"{name} is immutable")]}


def validations(*rules: dict[str, str]) -> dict[str, Any]:
    """``json_schema_extra`` carrying CEL rules for a model."""
    return {"x-kubernetes-validations": list(rules)}


class ApiModel(BaseModel):
    """Base of every API model: camelCase on the wire, unknown fields rejected."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        extra="forbid",
        protected_namespaces=(),
    )

    def to_dict(self) -> dict[str, Any]:
        """The wire form: camelCase keys, unset optional fields left out."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


# ---------------------------------------------------------------------------------------------
# References
# ---------------------------------------------------------------------------------------------


class SecretKeyRef(ApiModel):
    """A key of a Secret in the resource's namespace. Its value is never copied into status,
    events or logs; the pod reads it through an environment variable."""

    name: ResourceName = Field(description="Name of the Secret in the same namespace.")
    key: Annotated[str, Field(min_length=1, max_length=253, pattern=r"^[-._a-zA-Z0-9]+$")] = Field(
        description="Key inside the Secret whose value is used."
    )


class HubTokens(ApiModel):
    """Secrets holding access tokens for model hubs (needed for gated or private repos)."""

    hugging_face: SecretKeyRef | None = Field(
        default=None, description="Hugging Face token, exposed to the pod as HF_TOKEN."
    )
    model_scope: SecretKeyRef | None = Field(
        default=None, description="ModelScope token, exposed to the pod as MODELSCOPE_API_TOKEN."
    )


OutputKind = Literal["model", "adapter", "merged"]
ProducerKind = Literal["TrainJob", "FineTune"]


class HubRepo(ApiModel):
    """A repository on a model hub."""

    repo: Annotated[str, Field(min_length=3, max_length=256, pattern=HUB_REPO_PATTERN)] = Field(
        description="Repository id as owner/name, e.g. internlm/internlm2_5-7b-chat."
    )
    revision: Annotated[str, Field(min_length=1, max_length=128)] | None = Field(
        default=None,
        description="Branch, tag or commit to fetch; the repository's default branch if unset.",
    )
    include: (
        list[Annotated[str, Field(min_length=1, max_length=256, description="A glob pattern.")]]
        | None
    ) = Field(
        default=None,
        max_length=32,
        description=(
            "Fetch only the files matching one of these glob patterns (e.g. *.json, "
            "*.safetensors, tokenizer*); every file of the repository if unset."
        ),
    )


class PVCLocation(ApiModel):
    """A directory on a PersistentVolumeClaim in the resource's namespace."""

    claim_name: ResourceName = Field(description="Name of the PersistentVolumeClaim.")
    path: Path = Field(
        default="",
        description="Directory inside the volume (relative to its root); the root if empty.",
    )


class FromResource(ApiModel):
    """The output of another resource of this API in the same namespace. The dependent waits
    (Ready=False, reason WaitingForDependency) until the producer has succeeded."""

    kind: ProducerKind = Field(description="Kind of the producing resource.")
    name: ResourceName = Field(description="Name of the producing resource.")
    output: OutputKind | None = Field(
        default=None,
        description=(
            "Which output to use: model (TrainJob), adapter or merged (FineTune). Defaults to "
            "model for a TrainJob and to merged for a FineTune."
        ),
    )


_SOURCE_FORMS = ("huggingFace", "modelScope", "pvc", "uri")
_ONE_OF_SOURCE = " + ".join(f"(has(self.{f}) ? 1 : 0)" for f in _SOURCE_FORMS)
_ONE_OF_MODEL_SOURCE = _ONE_OF_SOURCE + " + (has(self.fromResource) ? 1 : 0)"

SourceForm = Literal["huggingFace", "modelScope", "pvc", "uri", "fromResource"]


class _SourceBase(ApiModel):
    hugging_face: HubRepo | None = Field(
        default=None, description="Download from the Hugging Face Hub."
    )
    model_scope: HubRepo | None = Field(default=None, description="Download from ModelScope.")
    pvc: PVCLocation | None = Field(
        default=None, description="Read from a directory on a PersistentVolumeClaim."
    )
    uri: Annotated[str, Field(max_length=2048, pattern=URI_PATTERN)] | None = Field(
        default=None,
        description="Object-store or HTTP URI (s3://, gs://, oss://, az://, hdfs://, https://).",
    )

    def forms(self) -> list[SourceForm]:
        """The source forms that are set (exactly one on a valid object)."""
        found: list[SourceForm] = []
        for name, form in (
            ("hugging_face", "huggingFace"),
            ("model_scope", "modelScope"),
            ("pvc", "pvc"),
            ("uri", "uri"),
            ("from_resource", "fromResource"),
        ):
            if getattr(self, name, None) is not None:
                found.append(form)  # type: ignore[arg-type]
        return found

    @property
    def form(self) -> SourceForm:
        """The one source form that is set."""
        return self.forms()[0]

    @model_validator(mode="after")
    def _exactly_one(self) -> Self:
        n = len(self.forms())
        if n != 1:
            allowed = ", ".join(self._allowed_forms())
            raise ValueError(f"exactly one of {allowed} must be set (found {n})")
        return self

    @classmethod
    def _allowed_forms(cls) -> tuple[str, ...]:
        return _SOURCE_FORMS


class ModelSource(_SourceBase):
    """Where model weights come from: exactly one of huggingFace, modelScope, pvc, uri or
    fromResource."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                _ONE_OF_MODEL_SOURCE + " == 1",
                "exactly one of huggingFace, modelScope, pvc, uri or fromResource must be set",
            ),
        )
    )

    from_resource: FromResource | None = Field(
        default=None,
        description="Use the output of a TrainJob or FineTune in the same namespace.",
    )

    @classmethod
    def _allowed_forms(cls) -> tuple[str, ...]:
        return (*_SOURCE_FORMS, "fromResource")


DatasetFormat = Literal["alpaca", "openai", "tokenized", "text", "jsonl"]


class DatasetSource(_SourceBase):
    """Where a dataset comes from (exactly one of huggingFace, modelScope, pvc or uri) and how
    its records are laid out."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                _ONE_OF_SOURCE + " == 1",
                "exactly one of huggingFace, modelScope, pvc or uri must be set",
            ),
        )
    )

    format: DatasetFormat = Field(
        default="alpaca",
        description=(
            "Record layout: alpaca (instruction/input/output), openai (chat messages), "
            "tokenized (pre-tokenised training shards), text (raw text) or jsonl (generic)."
        ),
    )


class StorageLocation(ApiModel):
    """A place to read or write files: exactly one of pvc or uri."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "(has(self.pvc) ? 1 : 0) + (has(self.uri) ? 1 : 0) == 1",
                "exactly one of pvc or uri must be set",
            ),
        )
    )

    pvc: PVCLocation | None = Field(
        default=None, description="A directory on a PersistentVolumeClaim."
    )
    uri: Annotated[str, Field(max_length=2048, pattern=URI_PATTERN)] | None = Field(
        default=None,
        description="Object-store URI; outputs are written locally and synced there.",
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> Self:
        if (self.pvc is None) == (self.uri is None):
            raise ValueError("exactly one of pvc or uri must be set")
        return self


# ---------------------------------------------------------------------------------------------
# Pod-level settings
# ---------------------------------------------------------------------------------------------


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


class RestartDelay(ApiModel):
    """How long the operator waits before it recreates a gang after a retried failure."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "self.maxSeconds >= self.initialSeconds",
                "maxSeconds (default 300) must be at least initialSeconds",
            ),
        )
    )

    initial_seconds: int = Field(
        default=10,
        ge=0,
        le=3600,
        description=(
            "Delay before the first restart (and before every restart that is not counted: a "
            "preemption or eviction, a RetryUncounted rule)."
        ),
    )
    max_seconds: int = Field(
        default=300, ge=0, le=86_400, description="The delay never grows beyond this."
    )
    factor: int = Field(
        default=2,
        ge=1,
        le=10,
        description="Each counted restart waits factor times longer than the one before.",
    )

    @model_validator(mode="after")
    def _max_at_least_initial(self) -> Self:
        if self.max_seconds < self.initial_seconds:
            raise ValueError("maxSeconds (default 300) must be at least initialSeconds")
        return self

    def seconds(self, restarts: int) -> int:
        """The delay before counted restart number ``restarts`` (1 for the first)."""
        return int(
            min(self.max_seconds, self.initial_seconds * self.factor ** max(0, restarts - 1))
        )


FailureAction = Literal["Retry", "RetryUncounted", "FailFast"]
REASON_PATTERN = r"^[A-Z][A-Za-z0-9]{0,63}$"
ReasonName = Annotated[
    str, Field(min_length=1, max_length=64, pattern=REASON_PATTERN, description="A reason.")
]


class FailureRule(ApiModel):
    """A failure-policy rule: every criterion it sets must match the failure (an AND)."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "has(self.exitCodes) || has(self.messagePattern) || has(self.reasons)",
                "a rule needs at least one of exitCodes, messagePattern or reasons",
            ),
        )
    )

    exit_codes: list[Annotated[int, Field(ge=1, le=255, description="An exit code.")]] | None = (
        Field(
            default=None,
            min_length=1,
            max_length=32,
            description="The failed container exited with one of these codes.",
        )
    )
    message_pattern: (
        Annotated[str, Field(min_length=1, max_length=256), AfterValidator(check_pattern)] | None
    ) = Field(
        default=None,
        description=(
            "A regular expression searched, case-insensitively, in the failed container's "
            "termination message (the workload's result, or the tail of its log) and reason. "
            "RE2-like syntax matched in linear time: literals, ., classes, \\d \\w \\s, groups, "
            "|, * + ? {m,n}, ^ $ \\b; no backreferences or look-arounds (docs/operator.md)."
        ),
    )
    reasons: list[ReasonName] | None = Field(
        default=None,
        min_length=1,
        max_length=16,
        description=(
            "The failure has one of these reasons in the default table (docs/operator.md "
            "'Failure policy'): e.g. OOMKilled, Signal, NCCLError, GPUError, NodeLost, "
            "Preempted, ExitCode."
        ),
    )
    action: FailureAction = Field(
        description=(
            "Retry: restart the gang, counted against backoffLimit. RetryUncounted: restart "
            "without counting. FailFast: fail the resource now."
        )
    )
    reason: ReasonName | None = Field(
        default=None,
        description="The reason to report for a failure this rule matches (default: the table's).",
    )


class FailurePolicy(ApiModel):
    """Per-resource overrides of the default failure table."""

    rules: list[FailureRule] = Field(
        default_factory=list,
        max_length=16,
        description="Evaluated in order before the default table; the first match decides.",
    )


class RunPolicy(ApiModel):
    """How a batch job is retried and cleaned up."""

    backoff_limit: int = Field(
        default=3,
        ge=0,
        le=100,
        description=(
            "Gang restarts allowed after retryable failures (signals, OOM kill, node loss, "
            "NCCL / GPU faults) before the resource fails."
        ),
    )
    active_deadline_seconds: int | None = Field(
        default=None,
        ge=1,
        le=31_536_000,
        description="Fail the resource when it has been running longer than this.",
    )
    ttl_seconds_after_finished: int | None = Field(
        default=None,
        ge=0,
        le=31_536_000,
        description="Delete the children (not the resource) this long after it finished.",
    )
    retryable_exit_codes: (
        list[Annotated[int, Field(ge=1, le=255, description="An exit code.")]] | None
    ) = Field(
        default=None,
        max_length=32,
        description=(
            "Exit codes below 128 that are retried like a signal (a Retry rule evaluated after "
            "failurePolicy.rules); by default codes 1-127 are permanent errors except 75 and "
            "messages the failure table recognises (NCCL, GPU, lost peers), and codes >= 128 "
            "are retried."
        ),
    )
    restart_delay: RestartDelay = Field(
        default_factory=RestartDelay,
        description=(
            "Exponential backoff between gang restarts: initialSeconds, doubling (factor) up "
            "to maxSeconds."
        ),
    )
    failure_policy: FailurePolicy | None = Field(
        default=None,
        description="Rules that override the default failure table for this resource.",
    )


def run_policy_field() -> Any:
    """The ``runPolicy`` field of a batch kind."""
    return Field(default_factory=RunPolicy, description="Retries, deadline and clean-up.")


def suspend_field(
    description: str = "Suspend the job: its pods are deleted and it resumes when set to false.",
) -> Any:
    """The ``suspend`` field of a batch kind (Kueue suspends and resumes through it)."""
    return Field(default=False, description=description)


def nodes_field(most: int) -> Any:
    """The immutable ``nodes`` field of a multi-node batch kind, at most ``most`` nodes."""
    return Field(
        default=1,
        ge=1,
        le=most,
        json_schema_extra=immutable("nodes"),
        description="Number of nodes (one pod per node).",
    )


def node_resources_field() -> Any:
    """The immutable per-node ``resources`` field of a multi-node batch kind."""
    return Field(
        default_factory=BatchResources,
        json_schema_extra=immutable("resources"),
        description="GPUs, CPU and memory per node.",
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


# ---------------------------------------------------------------------------------------------
# Status
# ---------------------------------------------------------------------------------------------


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
