"""The reconcile pass shared by TrainJob, FineTune and EvalRun (kind modules add hooks)."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .. import metrics
from ..api.v1alpha1 import API_VERSION, parse
from ..builders import BatchInputs, build, to_location, with_suspend
from ..builders.batch import CONTAINER
from ..status import batch as batch_status
from ..status import results
from ..status.batch import NEXT_RESTART
from ..status.failures import pod_index, rules_of
from ..status.stuck import refs_of
from . import hubcache
from .chain import resolve
from .controller import Context, permanent_from
from .kinds import stage
from .kube import KubeError
from .objects import body, owned_by, owner_of, rejected
from .stuck import events_of, lookup, workload_for

log = logging.getLogger("internlm_operator")


@dataclass(frozen=True)
class KindHooks:
    kind: str
    # (status, result, spec, output_dir, now, generation, prev_status) -> status
    finish: Callable[..., dict[str, Any]]


def rank0_ip(pods: list[dict[str, Any]]) -> str | None:
    """The address of the lowest-index Running pod: the one that serves progress."""
    for p in sorted(pods, key=pod_index):
        st = p.get("status", {})
        if st.get("podIP") and st.get("phase") == "Running":
            return str(st["podIP"])
    return None


def reconcile(ctx: Context, hooks: KindHooks, namespace: str, name: str) -> float | None:
    """One pass; returns the seconds until the next one is due when that is sooner than the
    resync (a restart backoff ending; controller.py's requeue contract), else None."""
    kube = ctx.kube
    kind = hooks.kind
    obj = kube.get(API_VERSION, kind, namespace, name)
    if obj is None or obj["metadata"].get("deletionTimestamp"):
        return None
    prev: dict[str, Any] = dict(obj.get("status") or {})
    gen = int(obj["metadata"].get("generation") or 1)
    now = dt.datetime.now(dt.UTC)

    def write(status: dict[str, Any]) -> None:
        status["observedGeneration"] = gen
        status.pop("kopf", None)
        if status != prev:
            patch = dict(status)
            if NEXT_RESTART in prev and NEXT_RESTART not in status:
                patch[NEXT_RESTART] = None  # a merge patch removes only what is set to null
            # Events first: named after this version of the resource, a retry after a kill
            # here records the same names (refused as copies); after the patch, none is lost.
            ctx.events_for(obj, prev.get("conditions"), status.get("conditions") or [])
            kube.patch_status(API_VERSION, kind, namespace, name, patch)
        metrics.PHASES.labels(kind, status.get("phase") or "Unknown")  # ensure series exists

    try:
        model = parse(body(obj))
        spec: Any = model.spec
        terminal = prev.get("phase") in batch_status.TERMINAL
        res = resolve(kube, namespace, kind, spec) if not terminal else None
        if res is not None and res.stalled and not terminal:
            write(batch_status.stalled(prev, gen, now, *res.stalled, phase="Waiting"))
            return None
        owner = owner_of(obj)
        restarts = int(prev.get("restarts") or 0)
        rp = spec.run_policy
        upstream = res.upstream if res else {}
        extra = res.extra if res else {}
        job_name = f"{owner.base_name}"
        job = kube.get("batch/v1", "Job", namespace, job_name)
        if res is not None and res.waiting and job is None and not terminal:
            st = batch_status.waiting(prev, gen, now, "; ".join(res.waiting))
            st["lineage"] = res.lineage or None
            write({k: v for k, v in st.items() if v is not None})
            return None
        if terminal:
            # Inputs may be gone by now; rebuild only what the decision needs.
            children = None
        else:
            children = build(
                BatchInputs(
                    owner=owner,
                    spec=spec,
                    image=ctx.config.image(stage(kind)),
                    pull_policy=ctx.config.image_pull_policy,
                    upstream=upstream,
                    extra=extra,
                    attempt=restarts,
                    active_deadline_seconds=rp.active_deadline_seconds,
                    default_resources=ctx.config.default_resources,
                    storage_class=ctx.config.default_storage_class,
                    hub_cache=hubcache.enabled(ctx),
                )
            )
        cache = hubcache.check_batch(ctx, obj, children, spec, stage(kind), now)
    except Exception as e:
        perm = permanent_from(e)
        if perm is None:
            raise
        metrics.ERRORS.labels(kind, "permanent").inc()
        write(batch_status.stalled(prev, gen, now, perm.reason, perm.message))
        return None
    if cache is not None and cache.blocked and job is None:  # waiting for the hub cache
        write(hubcache.batch_status(prev, gen, now, cache.verdict, cache.rows))
        return None

    if not owned_by(job, obj):
        write(
            batch_status.stalled(
                prev,
                gen,
                now,
                "ChildConflict",
                f"Job {job_name} exists and is not owned by this {kind}",
            )
        )
        return None
    pods: list[dict[str, Any]] = []
    if job is not None:
        uid = job["metadata"]["uid"]
        pods = [
            p
            for p in kube.list("v1", "Pod", namespace, {"batch.kubernetes.io/job-name": job_name})
            if (p["metadata"].get("labels") or {}).get("batch.kubernetes.io/controller-uid")
            in (uid, None)
        ]
    key = (kind, namespace, name)
    progress = None
    if ctx.progress is not None:
        # Never blocks: the poller fetches off this path and makes us due when it changes.
        progress = ctx.progress.latest(key, rank0_ip(pods) if children else None)
    queued = bool((obj["metadata"].get("labels") or {}).get("kueue.x-k8s.io/queue-name")) or bool(
        getattr(getattr(spec, "scheduling", None), "queue_name", None)
    )
    refs_found = {}
    if job is None and children is not None and not spec.suspend:
        # Before the Job exists: what its pods need must be there (else say which is missing).
        own = [children.config_map["metadata"]["name"]]
        refs_found = lookup(kube, namespace, refs_of(children.job["spec"]["template"]["spec"], own))
    live = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
    job_events = (
        events_of(kube, namespace, job)
        if job is not None
        and not job.get("spec", {}).get("suspend")
        and len(live) < int(getattr(spec, "nodes", 1) or 1)
        else []
    )
    # While the Job is suspended (queued in Kueue, or held by it), Kueue's reason from the
    # Workload.
    # Kueue's reason for a Job it holds (queue-name label, or Kueue managing Jobs without one);
    # not for one the user suspended (its status says Suspended, and a LIST per pass of each
    # of those would cost requests at rest).
    workload = (
        workload_for(kube, namespace, job)
        if (queued or not spec.suspend)
        and job is not None
        and job.get("spec", {}).get("suspend")
        and not job["metadata"].get("deletionTimestamp")
        else None
    )
    decision = batch_status.decide(
        batch_status.BatchObservation(
            generation=gen,
            status=prev,
            suspend=spec.suspend,
            queued=queued,
            backoff_limit=rp.backoff_limit,
            active_deadline_seconds=rp.active_deadline_seconds,
            ttl_seconds_after_finished=rp.ttl_seconds_after_finished,
            retryable_exit_codes=tuple(rp.retryable_exit_codes or ()),
            failure_rules=rules_of(rp.failure_policy),
            restart_delay=rp.restart_delay,
            desired_hash=children.spec_hash if children else "",
            nodes=int(getattr(spec, "nodes", 1) or 1),
            job=job,
            pods=pods,
            now=now,
            container=CONTAINER,
            progress=progress,
            refs_found=refs_found,
            events=job_events,
            workload=workload,
        )
    )
    status = decision.status
    if res is not None:
        status["lineage"] = res.lineage or prev.get("lineage")
        if status["lineage"] is None:
            status.pop("lineage")
    ns = namespace

    if decision.action == "create" and children is not None:
        try:
            ctx.kube.apply(children.config_map)
            ctx.checkpoint("configmap")
            if children.service is not None:
                ctx.kube.apply(children.service)
            ctx.checkpoint("service")
            suspend = spec.suspend or queued
            ctx.kube.apply(with_suspend(children.job, suspend))
            ctx.checkpoint("job")
        except KubeError as e:
            why = rejected(e)
            if why is None:
                raise
            write(batch_status.stalled(prev, gen, now, "ChildRejected", why))
            return None
        status.setdefault("startTime", None)
        if status.get("startTime") is None:
            status.pop("startTime")
    elif decision.action == "restart":
        # Record the restart first: if we die before the delete, the next pass sees a Job
        # from an older attempt and deletes it without counting it twice.
        metrics.RESTARTS.labels(kind, decision.reason).inc()
        write(status)
        prev = dict(status)
        kube.delete("batch/v1", "Job", ns, job_name, propagation="Foreground")
        return None
    elif decision.action == "delete":
        kube.delete("batch/v1", "Job", ns, job_name, propagation="Foreground")
    elif decision.action in ("suspend", "unsuspend"):
        kube.merge_patch(
            "batch/v1", "Job", ns, job_name, {"spec": {"suspend": decision.action == "suspend"}}
        )
    elif decision.action == "cleanup":
        for k, n in (("Job", job_name), ("Service", job_name), ("ConfigMap", f"{job_name}-config")):
            kube.delete("batch/v1" if k == "Job" else "v1", k, ns, n)

    if (
        decision.status.get("phase") in batch_status.TERMINAL
        and prev.get("phase") not in batch_status.TERMINAL
    ):
        output_dir = children.output_dir if children else ""
        status = hooks.finish(status, decision.result, spec, output_dir, now, gen, prev)
    hubcache.set_rows(status, cache)
    write(status)
    return decision.requeue_after


def translate_for(spec: Any) -> Callable[[str], str | None]:
    out_loc = getattr(spec, "output", None)

    def tr(path: str) -> str | None:
        return to_location(path, "", out_loc)

    return tr


def set_outputs(
    status: dict[str, Any],
    result: dict[str, Any] | None,
    spec: Any,
    output_dir: str,
    defaults: Mapping[str, str],
) -> None:
    """``status.outputs`` from the workload's result (``defaults``: output name -> the
    sub-directory of the output directory it is in when the result does not say), when any."""
    outs = results.outputs(result, output_dir, defaults, translate_for(spec))
    if outs:
        status["outputs"] = outs
    fetched = results.inputs(result)  # what the fetch-<input> init containers fetched
    if fetched:
        status["inputs"] = fetched
