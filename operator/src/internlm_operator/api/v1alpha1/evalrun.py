"""EvalRun: OpenCompass over a set of datasets, against weights or a served endpoint."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Self

from pydantic import ConfigDict, Field, model_validator

from .common import (
    API_VERSION,
    HTTP_URL_PATTERN,
    ApiModel,
    BatchStatus,
    DatasetSource,
    Identifier,
    ModelSource,
    ResourceName,
    Resources,
    RunPolicy,
    SecretKeyRef,
    StorageLocation,
    WorkloadCommon,
    cel,
    immutable,
    run_policy_field,
    suspend_field,
    validations,
)

DatasetName = Annotated[
    str,
    Field(
        min_length=1,
        max_length=128,
        pattern=r"^[A-Za-z0-9_.-]+$",
        description="An OpenCompass dataset config name or a custom dataset name.",
    ),
]
"""An OpenCompass dataset config name (e.g. gsm8k_gen) or a custom dataset name."""


class OpenAIEndpoint(ApiModel):
    """An OpenAI-compatible API."""

    url: Annotated[str, Field(max_length=2048, pattern=HTTP_URL_PATTERN)] = Field(
        description="Base URL of the API, usually ending in /v1."
    )
    model: Identifier = Field(description="Model name to request.")
    api_key_secret: SecretKeyRef | None = Field(
        default=None, description="Secret key holding the API key (sent as a bearer token)."
    )


class EvalTarget(ApiModel):
    """What to evaluate: exactly one of model (weights), modelServe or endpoint."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "(has(self.model) ? 1 : 0) + (has(self.modelServe) ? 1 : 0) + "
                "(has(self.endpoint) ? 1 : 0) == 1",
                "exactly one of model, modelServe or endpoint must be set",
            ),
        )
    )

    model: ModelSource | None = Field(
        default=None, description="Weights to load and evaluate in the eval pod."
    )
    model_serve: ResourceName | None = Field(
        default=None, description="Name of a ModelServe in the same namespace to query."
    )
    endpoint: OpenAIEndpoint | None = Field(
        default=None, description="An external OpenAI-compatible endpoint to query."
    )
    tokenizer: ModelSource | None = Field(
        default=None,
        description=(
            "A tokenizer (a model or tokenizer directory) for counting prompt tokens: for "
            "modelServe and endpoint, where no local tokenizer is known otherwise (without it "
            "token counts are estimated), or to override the weights' own."
        ),
    )

    @model_validator(mode="after")
    def _one_of(self) -> Self:
        n = sum(x is not None for x in (self.model, self.model_serve, self.endpoint))
        if n != 1:
            raise ValueError("exactly one of model, modelServe or endpoint must be set")
        return self


CustomDatasetFormat = Literal["mcq", "qa"]
"""The record layouts of OpenCompass custom datasets the eval workload runs (its data_type)."""


class CustomDataset(DatasetSource):
    """A dataset of your own (a .jsonl or .csv file), evaluated alongside the OpenCompass ones."""

    name: DatasetName = Field(description="Name used in scores and thresholds.")
    # Narrows DatasetSource.format (training layouts) to what OpenCompass custom datasets take.
    format: CustomDatasetFormat = Field(  # type: ignore[assignment]
        default="qa",
        description=(
            "Record layout, OpenCompass' custom dataset data_type: qa (question and answer "
            "columns, scored on the generated answer) or mcq (multiple choice: question, "
            "option columns A, B, C, ..., and the answer letter)."
        ),
    )


class Generation(ApiModel):
    """Generation settings for the evaluated model."""

    max_out_len: int = Field(
        default=1024, ge=1, le=131_072, description="Maximum new tokens per answer."
    )
    batch_size: int = Field(default=16, ge=1, le=1024, description="Prompts per batch.")
    temperature: float = Field(
        default=0.0, ge=0, le=2, description="Sampling temperature (0 is greedy)."
    )


class Threshold(ApiModel):
    """A minimum score on one dataset and metric; any missed threshold fails the run."""

    dataset: DatasetName = Field(
        description=(
            "A dataset listed in datasets (its config name, or the part before an underscore, "
            "e.g. gsm8k for gsm8k_gen) or the name of a custom dataset. Matched to OpenCompass' "
            "summary rows exactly, then ignoring case, '-' versus '_' and the lukaemon_/openai_ "
            "prefixes, then without a config suffix (_gen, _ppl, _gen_<hash>), else as the mean "
            "of its subject rows (mmlu: lukaemon_mmlu_*); matching nothing, or more than one "
            "dataset, fails the run (docs/api.md)."
        )
    )
    metric: Identifier = Field(
        default="accuracy",
        description="Metric name as OpenCompass' summary prints it, e.g. accuracy, score.",
    )
    min: float = Field(ge=-1e9, le=1e9, description="Lowest passing value.")


_THRESHOLD_RULE = (
    "!has(self.thresholds) || self.thresholds.all(t, "
    "(has(self.datasets) && self.datasets.exists(d, d == t.dataset || "
    "d.startsWith(t.dataset + '_'))) || "
    "(has(self.customDatasets) && self.customDatasets.exists(c, c.name == t.dataset)))"
)


class EvalRunSpec(WorkloadCommon):
    """Desired state of an EvalRun."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "(has(self.datasets) ? size(self.datasets) : 0) + "
                "(has(self.customDatasets) ? size(self.customDatasets) : 0) > 0",
                "at least one of datasets or customDatasets must be listed",
                ".datasets",
            ),
            cel(
                _THRESHOLD_RULE,
                "thresholds may only name datasets listed in datasets or customDatasets",
                ".thresholds",
            ),
        )
    )

    target: EvalTarget = Field(
        json_schema_extra=immutable("target"),
        description="Weights, a ModelServe or an OpenAI-compatible endpoint.",
    )
    datasets: list[DatasetName] | None = Field(
        default=None,
        max_length=64,
        description="OpenCompass dataset config names, e.g. gsm8k_gen, mmlu_gen, ceval_gen.",
    )
    custom_datasets: list[CustomDataset] | None = Field(
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
        default=None,
        max_length=16,
        description="Datasets of your own from a source.",
    )
    generation: Generation = Field(
        default_factory=Generation, description="Answer length, batch size and temperature."
    )
    thresholds: list[Threshold] | None = Field(
        json_schema_extra={
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["dataset", "metric"],
        },
        default=None,
        max_length=64,
        description="Minimum scores; the run fails when any is missed.",
    )
    data: StorageLocation | None = Field(
        default=None,
        description="Where the offline OpenCompass datasets live (the image's copy if unset).",
    )
    output: StorageLocation | None = Field(
        default=None,
        description="Where the OpenCompass work directory is kept (discarded if unset).",
    )
    resources: Resources = Field(
        default_factory=Resources,
        json_schema_extra=immutable("resources"),
        description="GPUs, CPU and memory of the eval pod (GPUs only needed for weights).",
    )
    run_policy: RunPolicy = run_policy_field()
    suspend: bool = suspend_field(
        "Suspend the run: its pod is deleted and it resumes when set to false."
    )

    @model_validator(mode="after")
    def _checks(self) -> Self:
        names = list(self.datasets or [])
        custom = [c.name for c in self.custom_datasets or []]
        if not names and not custom:
            raise ValueError("at least one of datasets or customDatasets must be listed")
        for t in self.thresholds or []:
            if not (
                any(d == t.dataset or d.startswith(t.dataset + "_") for d in names)
                or t.dataset in custom
            ):
                raise ValueError(
                    "thresholds may only name datasets listed in datasets or customDatasets "
                    f"({t.dataset!r} is not)"
                )
        return self


class Score(ApiModel):
    """One result of the evaluation."""

    dataset: Annotated[str, Field(max_length=128)] = Field(description="Dataset name.")
    metric: Annotated[str, Field(max_length=128)] = Field(description="Metric name.")
    value: float = Field(description="Score.")
    threshold: float | None = Field(default=None, description="Minimum required, if any.")
    passed: bool | None = Field(
        default=None, description="Whether the threshold was met (unset without a threshold)."
    )
    averaged_over: (
        list[Annotated[str, Field(max_length=128, description="A summary row's dataset name.")]]
        | None
    ) = Field(
        default=None,
        max_length=512,
        description=(
            "For a threshold on a group (e.g. mmlu) that OpenCompass' summary has no row for: "
            "the subject rows whose mean this score is."
        ),
    )


class EvalRunStatus(BatchStatus):
    """Observed state of an EvalRun."""

    scores: list[Score] | None = Field(
        default=None, max_length=512, description="Scores per dataset and metric."
    )
    passed: bool | None = Field(
        default=None, description="Whether every threshold was met (set once finished)."
    )


class EvalRun(ApiModel):
    """Evaluation of a model with OpenCompass."""

    api_version: Literal["internlm.io/v1alpha1"] = Field(
        default=API_VERSION, description="internlm.io/v1alpha1."
    )
    kind: Literal["EvalRun"] = Field(default="EvalRun", description="EvalRun.")
    metadata: dict[str, Any] = Field(default_factory=dict, description="Standard object metadata.")
    spec: EvalRunSpec = Field(description="Desired state.")
    status: EvalRunStatus | None = Field(default=None, description="Observed state.")
