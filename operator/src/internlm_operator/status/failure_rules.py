"""A failure's verdict and the rules that decide it: the default table of termination messages
and the resource's ``runPolicy.failurePolicy`` rules."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from ..api.v1alpha1 import FailurePolicy
from ..api.v1alpha1.common import FailureAction
from ..api.v1alpha1.pattern import Pattern, compile_pattern


@dataclass(frozen=True)
class Failure:
    retryable: bool
    reason: str
    message: str
    pod: str | None = None
    result: Mapping[str, Any] | None = field(default=None, compare=False)
    counted: bool = True  # a retry uses up one of runPolicy.backoffLimit


@dataclass(frozen=True)
class MessageRule:
    """A default rule: the termination message contains one of ``needles`` (lowercase,
    compared case-insensitively)."""

    action: FailureAction
    reason: str  # reported reason; "" keeps the exit's own (ExitCode or the workload's kind)
    needles: tuple[str, ...]
    what: str = ""  # for the docs


# First match wins. The user errors come first: one rank's device-side assert makes the others'
# NCCL watchdog time out, and the message of that rank mentions both.
MESSAGE_RULES: tuple[MessageRule, ...] = (
    MessageRule(
        "FailFast",
        "",
        (
            "device-side assert",
            "cuda out of memory",
            "outofmemoryerror",
            "an illegal memory access was encountered",
            "ncclinvalidusage",
            "ncclinvalidargument",
        ),
        "a bug or a job too big for its GPUs",
    ),
    MessageRule(
        "Retry",
        "NCCLError",
        (
            "ncclsystemerror",
            "ncclremoteerror",
            "ncclinternalerror",
            "ncclunhandledcudaerror",
            "nccl error",
            "nccl watchdog",
            "watchdog caught collective operation timeout",
            "nccl communicator was aborted",
            "nccl timeout",
        ),
        "the collective library or its network (IB/RoCE, NVLink)",
    ),
    MessageRule(
        "Retry",
        "GPUError",
        (
            "uncorrectable ecc error",
            "cuda error: unspecified launch failure",
            "cuda error: an illegal instruction was encountered",
            "uncorrectable nvlink error",
            "gpu has fallen off the bus",
            "cuda-capable device(s) is/are busy or unavailable",
            "cudaerrordevicesunavailable",
        ),
        "the accelerator (ECC, Xid-style faults)",
    ),
    MessageRule(
        "Retry",
        "PeerLost",
        (
            "connection reset by peer",
            "connection closed by peer",
            "distnetworkerror",
            "diststoreerror",
            "rendezvoustimeouterror",
            "rendezvousconnectionerror",
            "rendezvousclosederror",
            "client socket has timed out",
            "socket timeout",
        ),
        "another pod of the gang went away (torch.distributed c10d, gloo, torchelastic)",
    ),
)


def message_rule(text: str) -> MessageRule | None:
    low = text.lower()
    for rule in MESSAGE_RULES:
        if any(n in low for n in rule.needles):
            return rule
    return None


@dataclass(frozen=True)
class Rule:
    """A rule of ``runPolicy.failurePolicy`` (or ``retryableExitCodes``), ready to match."""

    action: FailureAction
    exit_codes: frozenset[int] = frozenset()
    pattern: Pattern | None = None
    reasons: frozenset[str] = frozenset()
    reason: str | None = None
    origin: str = ""  # where it came from, for the message

    def matches(self, failure: Failure, code: int | None, text: str) -> bool:
        if self.exit_codes and code not in self.exit_codes:
            return False
        if self.reasons and failure.reason not in self.reasons:
            return False
        return self.pattern is None or self.pattern.search(text)


def rules_of(policy: FailurePolicy | None) -> tuple[Rule, ...]:
    """The resource's rules, in order (messagePattern was checked when the spec was parsed)."""
    out: list[Rule] = []
    for i, r in enumerate(policy.rules if policy else ()):
        out.append(
            Rule(
                r.action,
                frozenset(r.exit_codes or ()),
                compile_pattern(r.message_pattern) if r.message_pattern else None,
                frozenset(r.reasons or ()),
                r.reason,
                f"runPolicy.failurePolicy.rules[{i}]",
            )
        )
    return tuple(out)


def exit_code_rule(codes: Iterable[int]) -> tuple[Rule, ...]:
    """``runPolicy.retryableExitCodes`` as the Retry rule it stands for."""
    cs = frozenset(codes)
    if not cs:
        return ()
    return (Rule("Retry", cs, reason="RetryableExitCode", origin="runPolicy.retryableExitCodes"),)


def apply_rules(failure: Failure, rules: Sequence[Rule], code: int | None, text: str) -> Failure:
    """The first matching rule's verdict, else the default one."""
    for rule in rules:
        if not rule.matches(failure, code, text):
            continue
        retry = rule.action != "FailFast"
        counted = rule.action != "RetryUncounted"
        reason = rule.reason or failure.reason
        same = (retry, reason) == (failure.retryable, failure.reason)
        if same and (not retry or counted == failure.counted):
            return failure  # the rule says what the default table says
        sugar = rule.origin == "runPolicy.retryableExitCodes"
        note = "" if sugar else f" ({rule.origin}: {rule.action})"
        return replace(
            failure,
            retryable=retry,
            counted=counted,
            reason=reason,
            message=failure.message + note,
        )
    return failure
