"""``internlm-operator``: the operator's command line."""

from __future__ import annotations

import argparse
import json
import os
import sys

from . import config as cfg


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    env = os.environ
    p = argparse.ArgumentParser(prog="internlm-operator", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="run the operator")
    r.add_argument(
        "--kubeconfig",
        default=env.get("KUBECONFIG") or None,
        help="kubeconfig file (default: in-cluster config, else ~/.kube/config)",
    )
    r.add_argument("--context", default=None, help="kubeconfig context")
    r.add_argument(
        "-n",
        "--namespace",
        action="append",
        default=None,
        dest="namespaces",
        help="namespace (or glob) to watch; repeatable; default: all namespaces "
        "(env INTERNLM_NAMESPACES, comma-separated)",
    )
    r.add_argument(
        "--log-format", choices=("text", "json"), default=env.get("INTERNLM_LOG_FORMAT", "text")
    )
    r.add_argument("-v", "--verbose", action="store_true")
    r.add_argument(
        "--metrics-port",
        type=int,
        default=int(env.get("INTERNLM_METRICS_PORT", 8080)),
        help="Prometheus /metrics port (0 = off)",
    )
    r.add_argument(
        "--health-port",
        type=int,
        default=int(env.get("INTERNLM_HEALTH_PORT", 8081)),
        help="/healthz and /readyz port (0 = off)",
    )
    r.add_argument(
        "--resync-seconds",
        type=float,
        default=None,
        help="period of the level-based resync (env INTERNLM_RESYNC_SECONDS, 15)",
    )
    r.add_argument(
        "--workers",
        type=int,
        default=None,
        help="reconcile passes run at once (env INTERNLM_WORKERS, 8)",
    )
    r.add_argument(
        "--api-qps",
        type=float,
        default=None,
        help="client-side limit on API requests per second (env INTERNLM_API_QPS, 200; 0 = none)",
    )
    r.add_argument(
        "--api-burst",
        type=int,
        default=None,
        help="requests allowed at once above --api-qps (env INTERNLM_API_BURST, 400)",
    )
    r.add_argument(
        "--image",
        action="append",
        default=[],
        metavar="STAGE=IMAGE",
        help="workload image for a stage (pretrain, finetune, eval, serve, agent); "
        "repeatable (env INTERNLM_IMAGE_<STAGE>)",
    )
    r.add_argument(
        "--images",
        default=None,
        metavar="JSON",
        help='all workload images as JSON {"pretrain": "...", ...} (env INTERNLM_IMAGES)',
    )
    r.add_argument("--image-pull-policy", default=None, choices=("Always", "IfNotPresent", "Never"))
    r.add_argument(
        "--default-storage-class",
        default=None,
        help="storage class of the hub download cache: a generic ephemeral volume (one PVC "
        "per pod) instead of an emptyDir (env INTERNLM_DEFAULT_STORAGE_CLASS)",
    )
    r.add_argument(
        "--hub-cache-storage-class",
        default=None,
        help="turn the shared hub cache on: one ReadWriteMany PVC of this class per namespace "
        "(internlm-hub-cache), one fetch Job per repo revision, pods mount it read-only "
        "(env INTERNLM_HUB_CACHE_STORAGE_CLASS; unset: each pod fetches its own)",
    )
    r.add_argument(
        "--hub-cache-size",
        default=None,
        help="size of the hub cache PVC (env INTERNLM_HUB_CACHE_SIZE, default 1Ti)",
    )
    r.add_argument(
        "--default-resources",
        default=None,
        metavar="JSON",
        help="cpu/memory for workload containers whose resource sets none, as JSON "
        'ResourceRequirements {"requests": {...}, "limits": {...}} '
        "(env INTERNLM_DEFAULT_RESOURCES)",
    )
    r.add_argument(
        "--progress-timeout",
        type=float,
        default=None,
        help="seconds one fetch of a pod's progress endpoint may take in all; 0 = do not poll",
    )
    r.add_argument(
        "--progress-interval",
        type=float,
        default=None,
        help="seconds between fetches of each running pod's progress endpoint "
        "(env INTERNLM_PROGRESS_INTERVAL, default 5)",
    )
    return p.parse_args(argv)


def config_from_args(a: argparse.Namespace) -> cfg.OperatorConfig:
    images = cfg.images_from_env(os.environ)
    if a.images:
        images.update(json.loads(a.images))
    for item in a.image:
        stage, _, image = item.partition("=")
        if stage not in cfg.STAGES or not image:
            raise SystemExit(f"--image {item!r}: expected STAGE=IMAGE with STAGE in {cfg.STAGES}")
        images[stage] = image
    namespaces = a.namespaces
    if namespaces is None and os.environ.get("INTERNLM_NAMESPACES"):
        namespaces = [n.strip() for n in os.environ["INTERNLM_NAMESPACES"].split(",") if n.strip()]
    default_resources = None
    try:
        if a.default_resources is not None:
            default_resources = cfg.parse_default_resources(
                a.default_resources, "--default-resources"
            )
        return cfg.from_env(
            kubeconfig=a.kubeconfig,
            context=a.context,
            namespaces=tuple(namespaces or ()),
            log_format=a.log_format,
            verbose=a.verbose,
            metrics_port=a.metrics_port,
            health_port=a.health_port,
            resync_seconds=a.resync_seconds,
            workers=a.workers,
            api_qps=a.api_qps,
            api_burst=a.api_burst,
            images=images,
            image_pull_policy=a.image_pull_policy,
            default_storage_class=a.default_storage_class,
            hub_cache_storage_class=a.hub_cache_storage_class,
            hub_cache_size=a.hub_cache_size,
            progress_timeout=a.progress_timeout,
            progress_interval=a.progress_interval,
            default_resources=default_resources,
        )
    except ValueError as e:
        raise SystemExit(f"internlm-operator: {e}") from None


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    if a.command == "run":
        from .operator import run_operator

        run_operator(config_from_args(a))
    return 0


if __name__ == "__main__":
    sys.exit(main())
