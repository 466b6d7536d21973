"""Operator-wide settings: from CLI flags, falling back to environment variables.

Environment variables (all optional; the Helm chart sets them):

- ``INTERNLM_IMAGE_<STAGE>``  workload image per stage (PRETRAIN, FINETUNE, EVAL, SERVE, AGENT)
- ``INTERNLM_IMAGES``         JSON object ``{"pretrain": "...", ...}`` (per-stage vars win)
- ``INTERNLM_IMAGE_PULL_POLICY``  ``IfNotPresent`` by default
- ``INTERNLM_DEFAULT_STORAGE_CLASS``  storage class for PVCs the operator creates
- ``INTERNLM_RESYNC_SECONDS``  period of the level-based reconcile timer (default 15)
- ``INTERNLM_PROGRESS_TIMEOUT``  seconds to wait for a pod's progress endpoint (0 = do not poll)
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

STAGES = ("pretrain", "finetune", "eval", "serve", "agent")
DEFAULT_IMAGE_REPO = "ghcr.io/internlm/internlm-workloads"
DEFAULT_IMAGE_TAG = "0.1.0"


def default_images() -> dict[str, str]:
    return {s: f"{DEFAULT_IMAGE_REPO}-{s}:{DEFAULT_IMAGE_TAG}" for s in STAGES}


@dataclass(frozen=True)
class OperatorConfig:
    kubeconfig: str | None = None
    context: str | None = None
    namespaces: tuple[str, ...] = ()  # empty = all namespaces
    log_format: str = "text"
    verbose: bool = False
    metrics_port: int = 8080  # 0 = off
    health_port: int = 8081  # 0 = off
    resync_seconds: float = 15.0
    images: Mapping[str, str] = field(default_factory=default_images)
    image_pull_policy: str = "IfNotPresent"
    default_storage_class: str | None = None
    progress_timeout: float = 1.0
    # Backoff for transient errors (API unreachable, conflicts): first delay, cap.
    retry_min_seconds: float = 1.0
    retry_max_seconds: float = 60.0

    def image(self, stage: str) -> str:
        return self.images.get(stage) or default_images()[stage]


def images_from_env(
    env: Mapping[str, str], base: Mapping[str, str] | None = None
) -> dict[str, str]:
    images = dict(base or default_images())
    if env.get("INTERNLM_IMAGES"):
        images.update(json.loads(env["INTERNLM_IMAGES"]))
    for s in STAGES:
        v = env.get(f"INTERNLM_IMAGE_{s.upper()}")
        if v:
            images[s] = v
    return images


def from_env(env: Mapping[str, str] | None = None, **overrides: object) -> OperatorConfig:
    env = os.environ if env is None else env
    kw: dict[str, object] = {
        "images": images_from_env(env),
        "image_pull_policy": env.get("INTERNLM_IMAGE_PULL_POLICY", "IfNotPresent"),
        "default_storage_class": env.get("INTERNLM_DEFAULT_STORAGE_CLASS") or None,
        "resync_seconds": float(env.get("INTERNLM_RESYNC_SECONDS", "15")),
        "progress_timeout": float(env.get("INTERNLM_PROGRESS_TIMEOUT", "1")),
    }
    kw.update({k: v for k, v in overrides.items() if v is not None})
    return OperatorConfig(**kw)  # type: ignore[arg-type]
