"""Pure classification of why a gang's pods ended, and parsing of what the workload reported;
re-exported from ``pod_failures``, ``failure_rules`` and ``pod_reports``."""

from __future__ import annotations

from .failure_rules import (
    MESSAGE_RULES,
    Failure,
    MessageRule,
    Rule,
    apply_rules,
    exit_code_rule,
    message_rule,
    rules_of,
)
from .pod_failures import (
    DISRUPTION_REASONS,
    EXIT_ABORT,
    EXIT_TRANSIENT,
    MAX_TEXT,
    UNCOUNTED,
    classify,
    init_failure,
    pod_failure,
)
from .pod_reports import (
    COMPLETION_INDEX,
    job_condition,
    parse_result,
    pod_index,
    pod_result,
    terminated,
)

__all__ = [
    "COMPLETION_INDEX",
    "DISRUPTION_REASONS",
    "EXIT_ABORT",
    "EXIT_TRANSIENT",
    "MAX_TEXT",
    "MESSAGE_RULES",
    "UNCOUNTED",
    "Failure",
    "MessageRule",
    "Rule",
    "apply_rules",
    "classify",
    "exit_code_rule",
    "init_failure",
    "job_condition",
    "message_rule",
    "parse_result",
    "pod_failure",
    "pod_index",
    "pod_result",
    "rules_of",
    "terminated",
]
