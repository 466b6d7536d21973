"""Where inputs come from and outputs go: hub repositories, PVC directories, URIs, another
resource's output, and the Secret references of hub tokens."""

from __future__ import annotations

from typing import Annotated, Literal, Self

from pydantic import ConfigDict, Field, model_validator

from .base import HUB_REPO_PATTERN, URI_PATTERN, ApiModel, Path, ResourceName, cel, validations


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
