"""Agent: a Lagent server Deployment and Service, bound to a ModelServe or an external URL.

Bound to a ModelServe by name, the agent waits (``Ready=False``, ``WaitingForDependency``)
until that ModelServe is Ready, then runs with its endpoint and served model name (and its API
key Secret unless the Agent names its own). If the ModelServe later disappears or stops being
Ready, the agent pods keep running but the Agent reports ``Degraded`` (and not Ready) with the
reason, and recovers by itself when the ModelServe is back.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..api.v1alpha1 import API_VERSION, SecretKeyRef, parse
from ..builders import agent as builder
from ..builders.longrunning import names
from ..status.conditions import is_true
from ..status.serving import Blocker
from .chain import lineage_of
from .controller import Context, permanent_from
from .kinds import stage
from .objects import body
from .serving import apply_or_scale, begin, check_refs, finish

KIND = "Agent"


def judge_model_serve(
    name: str, ms: Mapping[str, Any] | None
) -> tuple[str, str, str] | tuple[str, str, builder.ResolvedLLM]:
    """('waiting', reason, message) or ('ready', message, ResolvedLLM) for the bound
    ModelServe (pure)."""
    ref = f"ModelServe {name}"
    if ms is None:
        return "waiting", "ModelServeNotFound", f"{ref} not found"
    st = ms.get("status") or {}
    if not is_true(st.get("conditions"), "Ready") or not st.get("endpoint"):
        phase = st.get("phase") or "Pending"
        return "waiting", "ModelServeNotReady", f"{ref} is not Ready (phase {phase})"
    key = (ms.get("spec") or {}).get("apiKeySecret")
    secret = SecretKeyRef.model_validate(key) if key else None
    model = st.get("servedModelName") or (ms.get("spec") or {}).get("servedModelName") or name
    return "ready", f"{ref} at {st['endpoint']}", builder.ResolvedLLM(st["endpoint"], model, secret)


def reconcile_agent(ctx: Context, namespace: str, name: str) -> None:
    p = begin(ctx, KIND, namespace, name)
    if p is None:
        return
    kube, obj, owner = ctx.kube, p.obj, p.owner
    desired = int((obj.get("spec") or {}).get("replicas", 1) or 0)
    prev = obj.get("status") or {}

    children: builder.AgentChildren | None = None
    llm: builder.ResolvedLLM | None = None
    lineage: list[dict[str, Any]] | None = None
    try:
        spec: Any = parse(body(obj)).spec
        desired = int(spec.replicas)
        p.deployment_name, _ = names(owner)
        if spec.llm.model_serve:
            ms = kube.get(API_VERSION, "ModelServe", namespace, spec.llm.model_serve)
            verdict = judge_model_serve(spec.llm.model_serve, ms)
            if verdict[0] == "ready":
                assert isinstance(verdict[2], builder.ResolvedLLM)
                bound = verdict[2]
                llm = builder.ResolvedLLM(
                    bound.url,
                    spec.llm.model or bound.model,
                    spec.llm.api_key_secret or bound.api_key_secret,
                )
                assert ms is not None
                lineage = lineage_of(ms, bound.url)
            else:
                reason, message = str(verdict[1]), str(verdict[2])
                p.blocker = Blocker("llm", reason, message)
        else:
            llm = builder.ResolvedLLM(spec.llm.url, spec.llm.model, spec.llm.api_key_secret)
        if llm is not None:
            children = builder.build(
                builder.AgentInputs(
                    owner=owner,
                    spec=spec,
                    image=ctx.config.image(stage("Agent")),
                    llm=llm,
                    pull_policy=ctx.config.image_pull_policy,
                    default_resources=ctx.config.default_resources,
                )
            )
    except Exception as e:
        perm = permanent_from(e)
        if perm is None:
            raise
        p.blocker = Blocker("invalid", perm.reason, perm.message)

    deploy = kube.get("apps/v1", "Deployment", namespace, p.deployment_name)
    if p.blocker is not None and p.blocker.kind == "llm" and deploy is None:
        # Never started: this is waiting, not degraded.
        p.blocker = Blocker(
            "dependency", "WaitingForDependency", f"waiting for {p.blocker.message}"
        )
    check_refs(p, deploy, children)
    apply_or_scale(p, deploy, children, desired)

    if children is not None:
        p.fields["endpoint"] = children.endpoint
    elif deploy is None:
        p.fields["endpoint"] = None
    if llm is not None:
        p.fields["llm"] = {"endpoint": llm.url, "model": llm.model}
    elif deploy is None:
        p.fields["llm"] = None
    p.fields["lineage"] = lineage or prev.get("lineage")
    finish(p, desired, "agent pod")
