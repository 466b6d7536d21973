"""The simulated demo plays the batch workloads: a pod Running for a few seconds is annotated
with exit 0 and the result its real workload would report (kwok ends it so)."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import time
from typing import Any

from demo_base import EXIT_CODE, EXIT_MESSAGE, Kube


def _env(pod: dict[str, Any], name: str) -> str | None:
    for c in pod["spec"].get("containers", []):
        for e in c.get("env") or []:
            if e.get("name") == name and "value" in e:
                return str(e["value"])
    return None


def _stage(pod: dict[str, Any]) -> str | None:
    stage = _env(pod, "INTERNLM_STAGE")
    if stage:
        return stage
    labels = pod["metadata"].get("labels") or {}
    return labels.get("internlm.io/stage") or labels.get("app.kubernetes.io/component")


def _config(kube: Kube, pod: dict[str, Any]) -> dict[str, Any]:
    """The rendered config.json the operator mounted into the pod (its ConfigMap)."""
    for v in pod["spec"].get("volumes") or []:
        cm = (v.get("configMap") or {}).get("name")
        if not cm:
            continue
        res = kube.kubectl(
            "get", "configmap", cm, "-n", pod["metadata"]["namespace"], "-o", "json", check=False
        )
        if res.returncode == 0:
            data = json.loads(res.stdout).get("data") or {}
            if "config.json" in data:
                with contextlib.suppress(ValueError):
                    cfg: dict[str, Any] = json.loads(data["config.json"])
                    return cfg
    return {}


def workload_result(kube: Kube, pod: dict[str, Any]) -> dict[str, Any]:
    """What the real workload would write to its termination message on success."""
    stage = _stage(pod) or ""
    out = _env(pod, "INTERNLM_OUTPUT_DIR") or "/output"
    cfg = _config(kube, pod)
    spec = cfg.get("spec") or {}
    if stage == "pretrain":
        steps = int(spec.get("maxSteps") or 1000)
        return {
            "ok": True,
            "outputs": {"model": f"{out}/hf"},
            "checkpoint": {"step": steps, "path": f"{out}/checkpoints/step-{steps}"},
        }
    if stage == "finetune":
        return {"ok": True, "outputs": {"adapter": f"{out}/adapter", "merged": f"{out}/merged"}}
    if stage == "eval":
        scores = []
        thresholds = {t.get("dataset"): t for t in spec.get("thresholds") or []}
        names = [t for t in thresholds] or [
            str(d).removesuffix("_gen").removesuffix("_ppl") for d in spec.get("datasets") or []
        ]
        for i, name in enumerate(names or ["gsm8k", "mmlu"]):
            t = thresholds.get(name) or {}
            base = float(t.get("min", 50.0))
            scores.append(
                {
                    "dataset": name,
                    "metric": t.get("metric", "accuracy"),
                    "value": round(base + 4.2 + i * 1.3, 1),
                }
            )
        return {"ok": True, "outputs": {"results": f"{out}/results"}, "scores": scores}
    return {"ok": True}


def _running_since(pod: dict[str, Any]) -> float | None:
    if pod.get("status", {}).get("phase") != "Running":
        return None
    for cs in pod["status"].get("containerStatuses") or []:
        started = ((cs.get("state") or {}).get("running") or {}).get("startedAt")
        if started:
            t = dt.datetime.fromisoformat(started.replace("Z", "+00:00"))
            return t.timestamp()
    return None


def play_workloads(kube: Kube, namespace: str, run_seconds: float) -> list[str]:
    """End every batch pod that has been Running for ``run_seconds``, successfully."""
    ended = []
    pods = kube.json("pods", "-n", namespace)["items"]
    for pod in pods:
        md = pod["metadata"]
        if EXIT_CODE in (md.get("annotations") or {}) or md.get("deletionTimestamp"):
            continue
        owners = {o.get("kind") for o in md.get("ownerReferences") or []}
        if "Job" not in owners:
            continue  # Deployments (ModelServe, Agent) serve until deleted
        since = _running_since(pod)
        if since is None or time.time() - since < run_seconds:
            continue
        result = workload_result(kube, pod)
        kube.kubectl(
            "annotate",
            "--overwrite",
            "pod",
            md["name"],
            "-n",
            namespace,
            f"{EXIT_CODE}=0",
            f"{EXIT_MESSAGE}={json.dumps(result, separators=(',', ':'))}",
            check=False,
        )
        ended.append(md["name"])
    return ended
