"""Assemble and run the operator: kopf settings, login, handlers, resync loop, health, metrics.

:func:`run_operator` is what ``internlm-operator run`` calls; tests call :func:`operator_task`
inside their own thread with a stop flag.
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
from collections.abc import Callable, Collection
from typing import Any

import kopf

from . import metrics
from .api.v1alpha1 import API_VERSION, KINDS
from .builders.batch import PROGRESS_PORT
from .config import OperatorConfig
from .health import Health
from .reconcilers import RECONCILERS, Context, Controller, register, watches
from .reconcilers.kube import Kube, load_api_client
from .reconcilers.kube.cached import CachedKube
from .reconcilers.kube.ratelimit import TokenBucket
from .reconcilers.kube.store import Store
from .reconcilers.progress import ProgressPoller
from .reconcilers.watches import CHILDREN

log = logging.getLogger("internlm_operator")


def connection_info(api_client: Any) -> kopf.ConnectionInfo:
    """kopf credentials from the same kubernetes client configuration the reconcilers use."""
    c = api_client.configuration
    header = c.get_api_key_with_prefix("BearerToken") or c.get_api_key_with_prefix("authorization")
    scheme, token = None, None
    if header:
        parts = header.split(" ", 1)
        scheme, token = (parts[0], parts[1]) if len(parts) == 2 else (None, parts[0])
    return kopf.ConnectionInfo(
        server=c.host,
        ca_path=c.ssl_ca_cert,
        insecure=not c.verify_ssl,
        username=c.username or None,
        password=c.password or None,
        scheme=scheme,
        token=token,
        certificate_path=c.cert_file,
        private_key_path=c.key_file,
    )


def build(
    config: OperatorConfig,
    health: Health | None = None,
    fault: Callable[[str], None] | None = None,
    reconcilers: dict[str, Any] | None = None,
) -> tuple[kopf.OperatorRegistry, Controller, Any]:
    api_client = load_api_client(config.kubeconfig, config.context)
    # Enough pooled connections for every worker (urllib3 drops the extra ones otherwise).
    api_client.rest_client.pool_manager.connection_pool_kw["maxsize"] = config.workers + 4
    store = Store()
    watched = {w.gk: w.metadata_only for w in CHILDREN}
    watched.update({(API_VERSION, k): False for k in KINDS})
    limiter = TokenBucket(config.api_qps, config.api_burst) if config.api_qps > 0 else None
    kube = CachedKube(api_client, store, watched, limiter)
    for k in KINDS:  # fed by kopf's watch; a miss is read from the API
        store.mark_synced((API_VERSION, k))
    ctx = Context(config, kube, fault)
    controller = Controller(ctx, dict(reconcilers or RECONCILERS), health, store)
    # The informers' long watches get their own connections (and no rate limit).
    watch_client = load_api_client(config.kubeconfig, config.context)
    informers = watches.informers(Kube(watch_client), store, controller.on_child, config.namespaces)
    if config.progress_timeout > 0:
        ctx.progress = ProgressPoller(
            config.progress_timeout, config.progress_interval, PROGRESS_PORT, controller.touch
        )
    registry = kopf.OperatorRegistry()
    register(registry, controller)
    info = connection_info(api_client)

    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        return info

    stop = asyncio.Event()
    tasks: list[asyncio.Task[None]] = []

    @kopf.on.startup(registry=registry)
    async def startup(settings: kopf.OperatorSettings, **_: Any) -> None:
        configure(settings, config.namespaces)
        tasks.append(asyncio.create_task(controller.loop(stop, informers)))
        if ctx.progress is not None:
            ctx.progress.start()
        if health is not None:
            health.ready.set()

    @kopf.on.cleanup(registry=registry)
    async def cleanup(**_: Any) -> None:
        stop.set()
        if ctx.progress is not None:
            ctx.progress.stop()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    return registry, controller, _Clients(api_client, watch_client)


class _Clients:
    """Both API clients, closed together."""

    def __init__(self, *clients: Any) -> None:
        self.clients = clients

    def close(self) -> None:
        for c in self.clients:
            c.close()


_EXACT_NAMESPACE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def exact_namespaces(namespaces: Collection[str]) -> bool:
    """Whether the operator watches a fixed list of namespaces: at least one, and every one an
    exact name (a DNS label), no glob (``*``, ``?``, ``[...]``), negation (``!``) or list."""
    return bool(namespaces) and all(_EXACT_NAMESPACE.match(n) for n in namespaces)


def configure(settings: kopf.OperatorSettings, namespaces: Collection[str] = ()) -> None:
    # Exact namespace names need no namespace discovery: without this kopf tries to list
    # namespaces (which least-privilege RBAC forbids), retries ~9 times (~1 minute) and only
    # then falls back to the names given. Scanning off also means kopf does not watch CRDs
    # appearing later: the five kinds must exist when the operator starts (the chart installs
    # them first). Cluster-wide or with globs, kopf scans as usual.
    settings.scanning.disabled = exact_namespaces(namespaces)
    # kopf's own bookkeeping: annotations under our domain, nothing in status (the CRD schemas
    # would prune it anyway); no kopf-generated Events (we post our own on transitions).
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="internlm.io")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix="internlm.io", key="last-handled-configuration"
    )
    settings.persistence.finalizer = "internlm.io/finalizer"
    settings.posting.enabled = False
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.networking.request_timeout = 60
    settings.execution.max_workers = 16


def namespaces_args(namespaces: Collection[str]) -> dict[str, Any]:
    if namespaces:
        return {"namespaces": list(namespaces), "clusterwide": False}
    return {"clusterwide": True}


async def operator_task(
    config: OperatorConfig,
    stop_flag: asyncio.Event | threading.Event | None = None,
    ready_flag: asyncio.Event | threading.Event | None = None,
    health: Health | None = None,
    fault: Callable[[str], None] | None = None,
) -> None:
    registry, _controller, api_client = build(config, health, fault)
    try:
        await kopf.operator(
            registry=registry,
            standalone=True,
            stop_flag=stop_flag,
            ready_flag=ready_flag,
            **namespaces_args(config.namespaces),
        )
    finally:
        api_client.close()


def run_operator(config: OperatorConfig) -> None:
    fmt = kopf.LogFormat.JSON if config.log_format == "json" else kopf.LogFormat.FULL
    kopf.configure(verbose=config.verbose, log_format=fmt)
    if not config.verbose:
        # kopf logs every handler call on every object at INFO ("Handler ... succeeded"): at a
        # few thousand resources that is most of the operator's CPU and all of its log.
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    health = Health(stale_after=max(60.0, 4 * config.resync_seconds))
    health.serve(config.health_port)
    metrics.serve(config.metrics_port)
    log.info("internlm-operator starting (namespaces: %s)", ", ".join(config.namespaces) or "all")
    asyncio.run(operator_task(config, health=health))
