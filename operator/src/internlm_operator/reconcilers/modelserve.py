"""ModelServe: an LMDeploy api_server Deployment, Service, optional HPA and PDB.

Chaining: a ``fromResource`` model (or adapter) waits for its producer (``Ready=False``,
reason ``WaitingForDependency``) and stalls when the producer failed. With ``spec.gate`` a new
model is neither served nor rolled out to until the named EvalRun has passed; a server already
running keeps serving its current model meanwhile (only its replica count follows the spec).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..api.v1alpha1 import API_VERSION, parse
from ..builders import modelserve as builder
from ..builders.longrunning import endpoint, names
from ..status.serving import Blocker
from . import hubcache
from .chain import judge_producer, lineage_of
from .controller import Context, permanent_from
from .kinds import stage
from .kube import Kube
from .objects import body
from .serving import apply_or_scale, begin, check_refs, finish, merge_lineage

log = logging.getLogger("internlm_operator")
KIND = "ModelServe"


@dataclass
class ModelResolution:
    model: str | None = None  # location, when spec.model is fromResource and resolved
    adapters: dict[str, str] = field(default_factory=dict)
    lineage: list[dict[str, Any]] = field(default_factory=list)
    blocker: Blocker | None = None
    gate_lineage: list[dict[str, Any]] = field(default_factory=list)


def _block(res: ModelResolution, b: Blocker) -> None:
    order = {"invalid": 0, "upstream-failed": 1, "dependency": 2, "gate": 3, "llm": 4}
    if res.blocker is None or order[b.kind] < order[res.blocker.kind]:
        res.blocker = b


def judge_gate(name: str, ev: Mapping[str, Any] | None) -> tuple[str, str]:
    """('passed'|'waiting'|'failed', message) for the gating EvalRun (pure)."""
    ref = f"EvalRun {name}"
    if ev is None:
        return "waiting", f"waiting for {ref} to pass: not found"
    st = ev.get("status") or {}
    phase = st.get("phase")
    if phase == "Succeeded" and st.get("passed") is not False:
        return "passed", f"{ref} passed"
    if phase == "Failed" or st.get("passed") is False:
        why = next(
            (
                f"{c.get('reason')}: {c.get('message', '')}".rstrip(": ")
                for c in st.get("conditions") or []
                if c.get("type") == "Failed" and c.get("status") == "True"
            ),
            "failed",
        )
        return "failed", f"the gate {ref} did not pass ({why})"
    return "waiting", f"waiting for {ref} to pass (phase {phase or 'Pending'})"


def resolve(kube: Kube, namespace: str, spec: Any) -> ModelResolution:
    res = ModelResolution()
    refs: list[tuple[str, Any]] = []
    if spec.model.from_resource is not None:
        refs.append(("model", spec.model.from_resource))
    for a in spec.adapters or []:
        if a.source.from_resource is not None:
            refs.append((f"adapter:{a.name}", a.source.from_resource))
    for key, ref in refs:
        obj = kube.get(API_VERSION, ref.kind, namespace, ref.name)
        want = ref.output or ("adapter" if key.startswith("adapter:") else None)
        verdict, loc, msg = judge_producer(ref.kind, ref.name, want, obj)
        if verdict == "waiting":
            _block(res, Blocker("dependency", "WaitingForDependency", msg))
        elif verdict == "stalled":
            _block(res, Blocker("upstream-failed", "UpstreamFailed", msg))
        else:
            assert obj is not None and loc is not None
            if key == "model":
                res.model = loc
            else:
                res.adapters[key.split(":", 1)[1]] = loc
            res.lineage = merge_lineage(res.lineage, lineage_of(obj, loc))
    if spec.gate is not None:
        name = spec.gate.eval_run
        ev = kube.get(API_VERSION, "EvalRun", namespace, name)
        verdict, msg = judge_gate(name, ev)
        if verdict == "waiting":
            _block(res, Blocker("gate", "WaitingForDependency", msg))
        elif verdict == "failed":
            _block(res, Blocker("upstream-failed", "GateFailed", msg))
        if ev is not None:
            results = ((ev.get("status") or {}).get("outputs") or {}).get("results")
            res.gate_lineage = lineage_of(ev, results)
    return res


def reconcile_modelserve(ctx: Context, namespace: str, name: str) -> None:
    p = begin(ctx, KIND, namespace, name)
    if p is None:
        return
    kube, obj, owner = ctx.kube, p.obj, p.owner
    desired = int((obj.get("spec") or {}).get("replicas", 1) or 0)

    children: builder.ServeChildren | None = None
    try:
        spec: Any = parse(body(obj)).spec
        desired = int(spec.replicas)
        p.deployment_name, _ = names(owner)
        res = resolve(kube, namespace, spec)
        p.blocker = res.blocker
        if res.blocker is None or res.blocker.kind == "gate":
            children = builder.build(
                builder.ServeInputs(
                    owner=owner,
                    spec=spec,
                    image=ctx.config.image(stage("ModelServe")),
                    pull_policy=ctx.config.image_pull_policy,
                    model_location=res.model,
                    adapter_locations=res.adapters,
                    default_resources=ctx.config.default_resources,
                    storage_class=ctx.config.default_storage_class,
                    hub_cache=hubcache.enabled(ctx),
                )
            )
            hubcache.check_serve(p, children, spec, ctx.config.image(stage("ModelServe")))
    except Exception as e:
        perm = permanent_from(e)
        if perm is None:
            raise
        p.blocker = Blocker("invalid", perm.reason, perm.message)
        res = ModelResolution()

    deploy = kube.get("apps/v1", "Deployment", namespace, p.deployment_name)
    current_model = (
        ((deploy or {}).get("metadata", {}).get("annotations") or {}).get(builder.MODEL_ANNOTATION)
        if deploy is not None
        else None
    )
    if (
        children is not None
        and p.blocker is not None
        and p.blocker.kind == "gate"
        and deploy is not None
        and current_model == children.model_location
    ):
        p.blocker = None  # the gate guards model changes only: this one serves the same model

    check_refs(p, deploy, children)
    if apply_or_scale(p, deploy, children, desired) and children is not None:
        current_model = children.model_location

    serving_now = deploy is not None or (children is not None and p.blocker is None)
    if serving_now:
        port = children.service["spec"]["ports"][0]["port"] if children else None
        if port is None and deploy is not None:
            port = int(((obj.get("spec") or {}).get("port")) or 23333)
        p.fields["endpoint"] = endpoint(p.deployment_name, namespace, int(port or 23333))
        p.fields["servedModelName"] = (
            children.served_model_name
            if children is not None
            else ((obj.get("spec") or {}).get("servedModelName") or name)
        )
        p.fields["modelSource"] = current_model
    else:
        p.fields.update(endpoint=None, servedModelName=None, modelSource=None)
    lineage = merge_lineage(res.lineage, res.gate_lineage)
    p.fields["lineage"] = lineage or (obj.get("status") or {}).get("lineage")
    finish(p, desired, "server")
