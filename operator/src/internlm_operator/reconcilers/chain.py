"""Chaining: resolve ``fromResource`` (and EvalRun's ``modelServe``) references.

The decision part is pure (:func:`judge_producer`); :func:`resolve` does the reads.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..api.v1alpha1 import API_VERSION
from .kube import Kube

DEFAULT_OUTPUT = {"TrainJob": "model", "FineTune": "merged"}


@dataclass
class Resolution:
    upstream: dict[str, str] = field(default_factory=dict)  # input key -> location
    extra: dict[str, Any] = field(default_factory=dict)  # resolved endpoint etc.
    lineage: list[dict[str, Any]] = field(default_factory=list)
    waiting: list[str] = field(default_factory=list)  # messages
    stalled: tuple[str, str] | None = None  # (reason, message)


def _failed_reason(status: Mapping[str, Any]) -> str:
    for c in status.get("conditions") or []:
        if c.get("type") == "Failed" and c.get("status") == "True":
            return f"{c.get('reason')}: {c.get('message', '')}".strip(": ")
    return "failed"


def judge_producer(
    kind: str, name: str, want: str | None, obj: Mapping[str, Any] | None
) -> tuple[str, str | None, str]:
    """('ready'|'waiting'|'stalled', location, message) for one producer reference."""
    ref = f"{kind} {name}"
    if obj is None:
        return "waiting", None, f"waiting for {ref}: not found"
    st = obj.get("status") or {}
    phase = st.get("phase")
    if phase == "Failed":
        return "stalled", None, f"upstream {ref} failed ({_failed_reason(st)})"
    if phase != "Succeeded":
        return "waiting", None, f"waiting for {ref} to succeed (phase {phase or 'Pending'})"
    output = want or DEFAULT_OUTPUT.get(kind, "model")
    outs = st.get("outputs") or {}
    loc = outs.get(output)
    if not loc and kind == "FineTune" and want is None:
        loc = outs.get("model") or outs.get("adapter")
    if not loc:
        return "stalled", None, f"upstream {ref} succeeded but reports no {output!r} output"
    return "ready", str(loc), f"{ref} output {output}: {loc}"


def lineage_of(obj: Mapping[str, Any], location: str | None) -> list[dict[str, Any]]:
    md = obj.get("metadata", {})
    entry = {
        "kind": obj.get("kind"),
        "name": md.get("name"),
        "namespace": md.get("namespace"),
        "uid": md.get("uid"),
    }
    if location:
        entry["output"] = location
    return [*((obj.get("status") or {}).get("lineage") or []), entry]


def _refs(kind: str, spec: Any) -> list[tuple[str, Any]]:
    """(input key, FromResource) pairs of a spec."""
    out = []
    if kind == "TrainJob":
        for key, src in (("model", spec.model.source), ("tokenizer", spec.model.tokenizer)):
            if src is not None and src.from_resource is not None:
                out.append((key, src.from_resource))
    elif kind == "FineTune":
        if spec.model.from_resource is not None:
            out.append(("model", spec.model.from_resource))
    elif kind == "EvalRun":
        for key, src in (("model", spec.target.model), ("tokenizer", spec.target.tokenizer)):
            if src is not None and src.from_resource is not None:
                out.append((key, src.from_resource))
    return out


def resolve(kube: Kube, namespace: str, kind: str, spec: Any) -> Resolution:
    res = Resolution()
    seen: set[str] = set()
    for key, ref in _refs(kind, spec):
        obj = kube.get(API_VERSION, ref.kind, namespace, ref.name)
        verdict, loc, msg = judge_producer(ref.kind, ref.name, ref.output, obj)
        if verdict == "waiting":
            res.waiting.append(msg)
        elif verdict == "stalled":
            res.stalled = ("UpstreamFailed", msg)
        else:
            assert obj is not None and loc is not None
            res.upstream[key] = loc
            for e in lineage_of(obj, loc):
                k = f"{e.get('kind')}/{e.get('name')}"
                if k not in seen:
                    seen.add(k)
                    res.lineage.append(e)
    if kind == "EvalRun":
        target = spec.target
        if target.model_serve:
            ms = kube.get(API_VERSION, "ModelServe", namespace, target.model_serve)
            ref = f"ModelServe {target.model_serve}"
            st = (ms or {}).get("status") or {}
            ready = any(
                c.get("type") == "Ready" and c.get("status") == "True"
                for c in st.get("conditions") or []
            )
            if ms is None:
                res.waiting.append(f"waiting for {ref}: not found")
            elif not ready or not st.get("endpoint"):
                res.waiting.append(f"waiting for {ref} to be Ready")
            else:
                res.extra["endpointUrl"] = st["endpoint"]
                res.extra["endpointModel"] = st.get("servedModelName") or target.model_serve
                res.lineage.extend(lineage_of(ms, st["endpoint"]))
        elif target.endpoint is not None:
            res.extra["endpointUrl"] = target.endpoint.url
            res.extra["endpointModel"] = target.endpoint.model
            if target.endpoint.api_key_secret is not None:
                res.extra["apiKeySecret"] = target.endpoint.api_key_secret
    return res
