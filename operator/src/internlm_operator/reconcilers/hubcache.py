"""The shared hub cache, reconciler side: for a resource whose pods mount cache entries, make
sure the namespace's cache ConfigMap and PVC exist, create the fetch Job of every entry that has
none, record complete entries in the ConfigMap, and say whether the resource waits, fails or
may go on (docs/inputs-and-outputs.md, "The shared hub cache").

The hooks the kind reconcilers call are :func:`check` (batch kinds and ModelServe) and
:func:`blocker` (ModelServe); :func:`register` wakes the waiting resources when a fetch Job
changes.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..builders import hubcache as build
from ..builders.common import hub_env
from ..status import hubcache as st
from ..status.serving import Blocker
from .controller import Context
from .kube import KubeError

log = logging.getLogger("internlm_operator")


def settings(ctx: Context) -> build.CacheSettings | None:
    """The operator's hub-cache flags; None when the cache is off."""
    sc = getattr(ctx.config, "hub_cache_storage_class", None)
    if not sc:
        return None
    return build.CacheSettings(sc, getattr(ctx.config, "hub_cache_size", None) or "1Ti")


def enabled(ctx: Context) -> bool:
    return settings(ctx) is not None


@dataclass(frozen=True)
class Check:
    """What :func:`check` found: the verdict and the ``status.inputs`` rows."""

    verdict: st.Verdict
    rows: list[dict[str, Any]]

    @property
    def blocked(self) -> bool:
        return self.verdict.kind != "ready"


def _me(obj: Mapping[str, Any]) -> str:
    md = obj.get("metadata", {})
    return f"{obj.get('kind')}/{md.get('name')}/{md.get('uid')}"


def _create(ctx: Context, manifest: dict[str, Any]) -> dict[str, Any] | None:
    """Create; None when it already exists (another resource's pass got there first)."""
    try:
        out: dict[str, Any] = ctx.kube.create(manifest)
        return out
    except KubeError as e:
        if e.status == 409:
            return None
        raise


def _index(ctx: Context, namespace: str) -> dict[str, Any]:
    kube = ctx.kube
    cm: dict[str, Any] | None = kube.get("v1", "ConfigMap", namespace, build.INDEX)
    if cm is None:
        cm = _create(ctx, build.index_config_map(namespace)) or kube.get(
            "v1", "ConfigMap", namespace, build.INDEX
        )
    if cm is None:
        raise KubeError(503, "NotFound", f"ConfigMap {build.INDEX} vanished", transient=True)
    return cm


def _claim(
    ctx: Context, namespace: str, cfg: build.CacheSettings, index: Mapping[str, Any]
) -> None:
    if ctx.kube.get("v1", "PersistentVolumeClaim", namespace, build.CLAIM) is None:
        _create(ctx, build.claim(namespace, cfg, build.owner_reference(index)))
        log.info("hub cache: created PVC %s/%s (%s)", namespace, build.CLAIM, cfg.storage_class)


def check(
    ctx: Context,
    obj: Mapping[str, Any],
    entries: Sequence[build.CacheEntry],
    spec: Any,
    image: str,
    pod_spec: Mapping[str, Any] | None = None,
    now: dt.datetime | None = None,
) -> Check | None:
    """The state of the resource's cache entries, creating what is missing (the ConfigMap,
    the PVC, a fetch Job per entry without one). None when the cache is off or the resource
    mounts no entry. Once every entry is recorded complete it costs one GET."""
    cfg = settings(ctx)
    if cfg is None or not entries:
        return None
    kube = ctx.kube
    ns = str(obj["metadata"]["namespace"])
    me = _me(obj)
    now = now or dt.datetime.now(dt.UTC)
    index = _index(ctx, ns)
    needed: list[st.Needed] = []
    claim_checked = False
    for e in entries:
        rec = st.record_of(index, e.hash)
        state = st.entry_state(None, [], rec, build.REQUESTED_BY)
        if rec is None:
            if not claim_checked:
                _claim(ctx, ns, cfg, index)
                claim_checked = True
            job = kube.get("batch/v1", "Job", ns, e.job_name)
            pods = (
                kube.list("v1", "Pod", ns, {"batch.kubernetes.io/job-name": e.job_name})
                if job is not None
                else []
            )
            state = st.entry_state(job, pods, None, build.REQUESTED_BY)
            created = obj.get("metadata", {}).get("creationTimestamp")
            if st.retry_failed(state, created):
                assert job is not None
                log.info(
                    "hub cache: %s failed before %s was created: fetching again", e.job_name, me
                )
                # uid precondition: never delete a Job another resource has just re-created
                kube.delete("batch/v1", "Job", ns, e.job_name, uid=job["metadata"]["uid"])
                state = st.EntryState("Absent")
            if state.state == "Absent":
                manifest = build.fetch_job(
                    build.FetchJobInputs(
                        namespace=ns,
                        entry=e,
                        image=getattr(spec, "image", None) or image,
                        pull_policy=getattr(spec, "image_pull_policy", None)
                        or ctx.config.image_pull_policy,
                        owner=build.owner_reference(index),
                        requested_by=me,
                        env=hub_env(spec),
                        scheduling=build.fetch_scheduling(pod_spec or {}),
                    )
                )
                # 409: another resource created it first, or the deleted one is not gone yet
                made = _create(ctx, manifest)
                by = me if made is not None else None
                if made is not None:
                    log.info("hub cache: %s fetches %s for %s", e.job_name, e.describe(), me)
                state = st.EntryState("Fetching", requested_by=by, message="fetch Job created")
            elif state.state == "Complete":
                kube.merge_patch(
                    "v1",
                    "ConfigMap",
                    ns,
                    build.INDEX,
                    {"data": {e.hash: st.record(state, e.key, now)}},
                )
        needed.append(st.Needed(e.input, e.source, e.revision, e.describe(), e.job_name, state))
    return Check(st.verdict(needed), st.rows(needed, me))


def blocker(c: Check | None) -> Blocker | None:
    """For a long-running kind: wait while fetching (``dependency``: a running server keeps
    serving its current model), stall with the fetch's reason when it failed."""
    if c is None or not c.blocked:
        return None
    v = c.verdict
    return Blocker("upstream-failed" if v.kind == "failed" else "dependency", v.reason, v.message)


def register(registry: Any, controller: Any) -> None:
    """A fetch Job's changes make the resources in its namespace due now (those waiting for it
    go on, or fail, without waiting for the resync)."""
    import kopf

    def on_fetch_job(body: Any, **_: Any) -> None:
        ns = body.get("metadata", {}).get("namespace")
        for key in controller.known():
            if key[1] == ns:
                controller.touch(key)

    kopf.on.event(
        "batch",
        "v1",
        "jobs",
        labels={"app.kubernetes.io/component": build.COMPONENT},
        registry=registry,
        id="hub-cache-jobs-event",
    )(on_fetch_job)


# -- the hooks of the batch reconciler (reconcilers/batch.py) ---------------------------------


def check_batch(
    ctx: Context, obj: Mapping[str, Any], children: Any, spec: Any, stage: str, now: dt.datetime
) -> Check | None:
    """:func:`check` for a batch resource's built children (None: not built, cache off)."""
    if children is None or not getattr(children, "cache", ()):
        return None
    pod_spec = children.job["spec"]["template"]["spec"]
    return check(ctx, obj, children.cache, spec, ctx.config.image(stage), pod_spec, now)


def batch_status(
    prev: Mapping[str, Any],
    generation: int,
    now: dt.datetime,
    v: st.Verdict,
    rows: Sequence[Mapping[str, Any]],
) -> dict[str, Any]:
    return st.batch_status(prev, generation, now, v, rows)


def set_rows(status: dict[str, Any], c: Check | None) -> None:
    """``status.inputs``: the cache's rows first, then what the pods fetched themselves."""
    if c is not None and c.rows:
        status["inputs"] = st.merge_rows(c.rows, status.get("inputs"))


# -- the hook of the ModelServe reconciler (reconcilers/modelserve.py) ------------------------


def check_serve(p: Any, children: Any, spec: Any, image: str) -> None:
    """:func:`check` for a ModelServe pass ``p`` (reconcilers/serving.Pass): ``status.inputs``
    from the cache, and its blocker (a failed fetch wins over every other wait)."""
    if children is None:
        return
    pod_spec = children.deployment["spec"]["template"]["spec"]
    c = check(p.ctx, p.obj, children.cache, spec, image, pod_spec, p.now)
    p.fields["inputs"] = c.rows if c is not None and c.rows else None
    b = blocker(c)
    if b is not None and (p.blocker is None or b.kind == "upstream-failed"):
        p.blocker = b
