"""Operator-wide settings: from CLI flags, falling back to environment variables.

Environment variables (all optional; the Helm chart sets them):

- ``INTERNLM_IMAGE_<STAGE>``  workload image per stage (PRETRAIN, FINETUNE, EVAL, SERVE, AGENT)
- ``INTERNLM_IMAGES``         JSON object ``{"pretrain": "...", ...}`` (per-stage vars win)
- ``INTERNLM_IMAGE_PULL_POLICY``  ``IfNotPresent`` by default
- ``INTERNLM_DEFAULT_STORAGE_CLASS``  storage class of the hub download cache: set, it is a
  generic ephemeral volume (a ReadWriteOnce PVC per pod) instead of an emptyDir
- ``INTERNLM_HUB_CACHE_STORAGE_CLASS``  set: the shared hub cache is on (one ReadWriteMany PVC
  of this class per namespace, a fetch Job per repo revision; docs/inputs-and-outputs.md)
- ``INTERNLM_HUB_CACHE_SIZE``  size of that PVC (default 1Ti)
- ``INTERNLM_DEFAULT_RESOURCES``  JSON ResourceRequirements (``{"requests": {"cpu": "2"},
  "limits": {"memory": "8Gi"}}``): cpu and memory for a workload container whose resource sets
  none (other resource names are ignored; GPUs always come from the resource's spec)
- ``INTERNLM_RESYNC_SECONDS``  period of the level-based reconcile timer (default 15)
- ``INTERNLM_PROGRESS_TIMEOUT``  seconds one progress fetch may take in all (0 = do not poll)
- ``INTERNLM_PROGRESS_INTERVAL`` seconds between progress fetches of each running pod
- ``INTERNLM_WORKERS``  reconcile passes run at once (default 8)
- ``INTERNLM_API_QPS`` / ``INTERNLM_API_BURST``  client-side limit on the passes' API requests
  (default 200 per second, bursts of 400; 0 = no limit)
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

log = logging.getLogger("internlm_operator")

STAGES = ("pretrain", "finetune", "eval", "serve", "agent")
# The Helm chart's defaults (workloads.image.registry, the chart's appVersion): an operator run
# without the chart uses the same images, <registry>/<stage>:<tag>.
DEFAULT_IMAGE_REGISTRY = "ghcr.io/internlm-operator"
DEFAULT_IMAGE_TAG = "0.1.0"


def default_images() -> dict[str, str]:
    return {s: f"{DEFAULT_IMAGE_REGISTRY}/{s}:{DEFAULT_IMAGE_TAG}" for s in STAGES}


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
    # The shared hub cache (builders/hubcache.py): off unless a ReadWriteMany class is given.
    hub_cache_storage_class: str | None = None
    hub_cache_size: str = "1Ti"
    # {"requests": {"cpu": "1"}, "limits": {"memory": "4Gi"}}: only cpu and memory, see
    # parse_default_resources.
    default_resources: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    progress_timeout: float = 1.0
    # How often each running rank-0 pod's progress endpoint is fetched (off the reconcile path).
    progress_interval: float = 5.0
    # Backoff for transient errors (API unreachable, conflicts): first delay, cap.
    retry_min_seconds: float = 1.0
    retry_max_seconds: float = 60.0
    # Passes run at once (worker threads), and the client-side limit on the API requests they
    # send together (client-go's token bucket; 0 = no limit).
    workers: int = 8
    api_qps: float = 200.0
    api_burst: int = 400

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


DEFAULTABLE_RESOURCES = ("cpu", "memory")
_QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(m|k|Ki|M|Mi|G|Gi|T|Ti|P|Pi|E|Ei|e[0-9]+)?$")


def _quantity(value: Any, where: str) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"{where}: {value!r} is not a quantity")
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError(f"{where}: {value!r} is negative")
        text = format(Decimal(str(value)).normalize(), "f")
    else:
        text = value.strip()
    if not _QUANTITY.match(text):
        raise ValueError(f"{where}: {value!r} is not a quantity such as 500m, 2, 512Mi or 4Gi")
    return text


def parse_default_resources(
    value: str | Mapping[str, Any] | None, what: str = "default resources"
) -> dict[str, dict[str, str]]:
    """Default container resources from JSON (or an already decoded mapping) in the form of a
    Kubernetes ResourceRequirements: ``{"requests": {...}, "limits": {...}}``. Only ``cpu`` and
    ``memory`` are kept (GPUs always come from the resource's spec; other names are ignored
    with a warning); quantities become strings. Raises ValueError on anything malformed."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return {}
    if isinstance(value, str):
        try:
            doc = json.loads(value)
        except json.JSONDecodeError as e:
            raise ValueError(f"{what}: not JSON ({e})") from None
    else:
        doc = value
    if not isinstance(doc, Mapping):
        raise ValueError(f"{what}: expected a JSON object with requests and/or limits")
    unknown = set(doc) - {"requests", "limits", "claims"}
    if unknown:
        raise ValueError(f"{what}: unknown keys {sorted(unknown)} (expected requests, limits)")
    out: dict[str, dict[str, str]] = {}
    ignored: set[str] = set()
    for part in ("requests", "limits"):
        amounts = doc.get(part) or {}
        if not isinstance(amounts, Mapping):
            raise ValueError(f"{what}: {part} must be an object of resource name -> quantity")
        for name, amount in amounts.items():
            q = _quantity(amount, f"{what}: {part}.{name}")
            if name in DEFAULTABLE_RESOURCES:
                out.setdefault(part, {})[name] = q
            else:
                ignored.add(str(name))
    if ignored:
        log.warning(
            "%s: only cpu and memory are applied to workload containers; ignoring %s",
            what,
            ", ".join(sorted(ignored)),
        )
    return out


def from_env(env: Mapping[str, str] | None = None, **overrides: object) -> OperatorConfig:
    env = os.environ if env is None else env
    kw: dict[str, object] = {
        "images": images_from_env(env),
        "image_pull_policy": env.get("INTERNLM_IMAGE_PULL_POLICY", "IfNotPresent"),
        "default_storage_class": env.get("INTERNLM_DEFAULT_STORAGE_CLASS") or None,
        "hub_cache_storage_class": env.get("INTERNLM_HUB_CACHE_STORAGE_CLASS") or None,
        "hub_cache_size": env.get("INTERNLM_HUB_CACHE_SIZE") or "1Ti",
        "resync_seconds": float(env.get("INTERNLM_RESYNC_SECONDS", "15")),
        "progress_timeout": float(env.get("INTERNLM_PROGRESS_TIMEOUT", "1")),
        "progress_interval": float(env.get("INTERNLM_PROGRESS_INTERVAL", "5")),
        "workers": int(env.get("INTERNLM_WORKERS", "8")),
        "api_qps": float(env.get("INTERNLM_API_QPS", "200")),
        "api_burst": int(env.get("INTERNLM_API_BURST", "400")),
    }
    if overrides.get("default_resources") is None:  # a flag wins over the environment
        kw["default_resources"] = parse_default_resources(
            env.get("INTERNLM_DEFAULT_RESOURCES"), "INTERNLM_DEFAULT_RESOURCES"
        )
    kw.update({k: v for k, v in overrides.items() if v is not None})
    return OperatorConfig(**kw)  # type: ignore[arg-type]
