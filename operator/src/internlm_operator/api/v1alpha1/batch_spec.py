"""The spec every batch kind shares: ``runPolicy`` (retries, failure rules, restart backoff,
clean-up) and the ``suspend``, ``nodes`` and per-node ``resources`` fields."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Self

from pydantic import AfterValidator, ConfigDict, Field, model_validator

from .base import ApiModel, cel, immutable, validations
from .pattern import check_pattern
from .pod import BatchResources


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
