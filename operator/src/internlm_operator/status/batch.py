"""Pure decision for the batch kinds (TrainJob, FineTune, EvalRun); re-exported from
``batch_decide`` (the steps of a pass: ``STEPS``), ``batch_observation`` and ``batch_phase``."""

from __future__ import annotations

from ..api.labels import SPEC_HASH_ANNOTATION as HASH_ANNOTATION
from .batch_context import BatchContext, Step
from .batch_decide import STEPS, decide
from .batch_observation import (
    NEXT_RESTART,
    Action,
    BatchDecision,
    BatchObservation,
    backoff_left,
    checkpoint_of,
    lost_member,
    restart_time,
)
from .batch_phase import SUSPENDED_QUEUED, TERMINAL, build_status, stalled, waiting

__all__ = [
    "HASH_ANNOTATION",
    "NEXT_RESTART",
    "STEPS",
    "SUSPENDED_QUEUED",
    "TERMINAL",
    "Action",
    "BatchContext",
    "BatchDecision",
    "BatchObservation",
    "Step",
    "backoff_left",
    "build_status",
    "checkpoint_of",
    "decide",
    "lost_member",
    "restart_time",
    "stalled",
    "waiting",
]
