"""Prometheus metrics: reconciles, errors and durations per kind."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

REGISTRY = CollectorRegistry(auto_describe=True)

RECONCILES = Counter(
    "internlm_operator_reconciles",
    "Reconcile passes, by kind and result (ok, error, permanent_error).",
    ["kind", "result"],
    registry=REGISTRY,
)
ERRORS = Counter(
    "internlm_operator_reconcile_errors",
    "Reconcile errors, by kind and class (transient, permanent).",
    ["kind", "type"],
    registry=REGISTRY,
)
DURATION = Histogram(
    "internlm_operator_reconcile_duration_seconds",
    "Duration of one reconcile pass, by kind.",
    ["kind"],
    registry=REGISTRY,
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
RESTARTS = Counter(
    "internlm_operator_gang_restarts",
    "Gang restarts (Job deleted and recreated) of batch resources, by kind and reason.",
    ["kind", "reason"],
    registry=REGISTRY,
)
PHASES = Gauge(
    "internlm_operator_resources",
    "Resources seen by this operator, by kind and phase.",
    ["kind", "phase"],
    registry=REGISTRY,
)
API_REQUESTS = Counter(
    "internlm_operator_api_requests",
    "Requests the reconcilers sent to the API server, by verb (watch streams not included).",
    ["verb"],
    registry=REGISTRY,
)
QUEUE_DEPTH = Gauge(
    "internlm_operator_work_queue_depth",
    "Resources waiting in the work queue (due now or later).",
    registry=REGISTRY,
)


@contextmanager
def timed(kind: str) -> Iterator[None]:
    start = time.monotonic()
    try:
        yield
    finally:
        DURATION.labels(kind).observe(time.monotonic() - start)


def serve(port: int, addr: str = "0.0.0.0") -> None:
    if port:
        start_http_server(port, addr=addr, registry=REGISTRY)
