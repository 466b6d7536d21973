"""Driving the pipeline: apply it, show the resources' live table until all are done, and sum
up what the real chain produced."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import demo_real
from demo_base import (
    BATCH,
    KINDS,
    PIPELINE,
    PLURALS,
    REPO,
    DemoError,
    Kube,
    kubectl_binary,
    note,
    say,
)
from demo_operator import LocalOperator
from demo_setup import Options
from demo_workloads import play_workloads


def _cond(obj: dict[str, Any], type_: str) -> dict[str, Any]:
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c.get("type") == type_:
            return dict(c)
    return {}


def done(obj: dict[str, Any]) -> bool:
    if obj["kind"] in BATCH:
        return (
            _cond(obj, "Complete").get("status") == "True"
            or (obj.get("status") or {}).get("phase") == "Succeeded"
        )
    return _cond(obj, "Ready").get("status") == "True"


def failed(obj: dict[str, Any]) -> str | None:
    st = obj.get("status") or {}
    for t in ("Failed", "Stalled"):
        c = _cond(obj, t)
        if c.get("status") == "True":
            return (
                f"{obj['kind']}/{obj['metadata']['name']}: {t} ({c.get('reason')}): "
                f"{c.get('message', '')}"
            )
    if st.get("phase") == "Failed":
        return f"{obj['kind']}/{obj['metadata']['name']}: Failed"
    return None


def progress(obj: dict[str, Any], pods: list[dict[str, Any]]) -> str:
    st = obj.get("status") or {}
    p = st.get("progress") or {}
    if p.get("step") is not None:
        total = f"/{p['totalSteps']}" if p.get("totalSteps") else ""
        loss = f" loss {p['loss']:.3g}" if isinstance(p.get("loss"), int | float) else ""
        return f"step {p['step']}{total}{loss}"
    if obj["kind"] not in BATCH:
        if st.get("replicas") is not None or st.get("readyReplicas") is not None:
            return f"{st.get('readyReplicas') or 0}/{st.get('replicas') or 0} ready"
        return "-"
    if done(obj):
        return "done"
    mine = [
        p
        for p in pods
        if (p["metadata"].get("labels") or {}).get("app.kubernetes.io/instance")
        == obj["metadata"]["name"]
    ]
    if mine:
        running = sum(1 for p in mine if p.get("status", {}).get("phase") == "Running")
        return f"{running}/{len(mine)} pods running"
    return "-"


def score(obj: dict[str, Any]) -> str:
    st = obj.get("status") or {}
    parts = []
    for s in st.get("scores") or []:
        mark = {True: " ok", False: " LOW"}.get(s.get("passed"), "")
        parts.append(f"{s.get('dataset')} {s.get('value')}{mark}")
    return ", ".join(parts) or "-"


def table(objs: list[dict[str, Any]], pods: list[dict[str, Any]]) -> list[str]:
    rows = [("KIND", "NAME", "PHASE", "PROGRESS", "SCORE", "ENDPOINT")]
    order = {k: i for i, k in enumerate(KINDS)}
    for o in sorted(objs, key=lambda o: (order.get(o["kind"], 9), o["metadata"]["name"])):
        st = o.get("status") or {}
        phase = st.get("phase") or "-"
        ready = _cond(o, "Ready")
        if ready.get("reason") == "WaitingForDependency" and phase in ("-", "Pending"):
            phase = "Waiting"
        rows.append(
            (
                o["kind"],
                o["metadata"]["name"],
                phase,
                progress(o, pods),
                score(o),
                st.get("endpoint") or "-",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]


def resources(kube: Kube, namespace: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = kube.json(",".join(PLURALS.values()), "-n", namespace)["items"]
    return items


def drive(
    kube: Kube, opts: Options, op: LocalOperator | None, archives: dict[str, Path] | None = None
) -> list[dict[str, Any]]:
    if opts.real:
        docs = demo_real.pipeline()
        say(
            f"Applying the real chain in {opts.namespace} (e2e/realchain.py): "
            + " -> ".join(f"{d['kind']}/{d['metadata']['name']}" for d in docs)
        )
        for d in docs:
            d["metadata"]["namespace"] = opts.namespace
        kube.apply(docs)
        say("Watching the batch half (every pod runs its tool on real-0, on CPU)")
        watch(kube, opts, op, len(docs))
        # the serving half: its images replace the batch ones on the node (disk), then the
        # ModelServe (gated on the EvalRun that passed) and the Agent on it
        serving = demo_real.serving_pipeline()
        demo_real.make_room_for_serving(archives or {}, say, note)
        for d in serving:
            d["metadata"]["namespace"] = opts.namespace
        say(
            "Applying the serving half: "
            + " -> ".join(f"{d['kind']}/{d['metadata']['name']}" for d in serving)
        )
        kube.apply(serving)
        return watch(kube, opts, op, len(docs) + len(serving))
    say(
        f"kubectl apply -n {opts.namespace} -f {PIPELINE.relative_to(REPO)}: "
        "TrainJob -> FineTune -> EvalRun -> ModelServe -> Agent"
    )
    kube.kubectl("apply", "-n", opts.namespace, "-f", str(PIPELINE))
    say(
        f"Watching the pipeline (the demo plays each batch workload: a pod Running for "
        f"{opts.run_seconds:.0f}s exits 0 with its result, as docs/workload-contract.md "
        "says)"
    )
    return watch(kube, opts, op, len(KINDS))


def watch(
    kube: Kube, opts: Options, op: LocalOperator | None, expected: int
) -> list[dict[str, Any]]:
    """The resources' table until ``expected`` resources are all done (or one failed)."""
    tty = sys.stdout.isatty()
    t0 = time.monotonic()
    last: list[str] = []
    shown = 0
    objs: list[dict[str, Any]] = []
    while True:
        if op is not None and not op.alive():
            raise DemoError(f"the operator exited ({op.proc.returncode}):\n{op.tail()}")
        for name in [] if opts.real else play_workloads(kube, opts.namespace, opts.run_seconds):
            if not tty:
                note(f"workload pod {name} finished (exit 0, result reported)")
        objs = resources(kube, opts.namespace)
        pods = kube.json("pods", "-n", opts.namespace)["items"]
        lines = table(objs, pods)
        elapsed = time.monotonic() - t0
        if tty:
            if shown:
                sys.stdout.write(f"\033[{shown}F\033[J")
            header = f"[{elapsed:5.0f}s]"
            out = [header, *lines]
            sys.stdout.write("\n".join(out) + "\n")
            sys.stdout.flush()
            shown = len(out)
        elif lines != last:
            print(f"[{elapsed:5.0f}s]")
            print("\n".join(lines), flush=True)
        last = lines
        problems = [p for p in (failed(o) for o in objs) if p]
        if problems:
            raise DemoError("the pipeline failed:\n" + "\n".join(problems))
        if len(objs) == expected and all(done(o) for o in objs):
            return objs
        if elapsed > opts.timeout:
            waiting = [
                f"{o['kind']}/{o['metadata']['name']}: "
                + json.dumps((o.get("status") or {}).get("conditions") or [])[:400]
                for o in objs
                if not done(o)
            ]
            raise DemoError(
                f"timed out after {opts.timeout:.0f}s; not finished:\n" + "\n".join(waiting)
            )
        time.sleep(1.0)


def real_answers(kube: Kube, opts: Options) -> list[str]:
    """One question to the ModelServe and one to the Agent, through their pods."""
    lines = []
    for kind, name, model, text in demo_real.QUESTIONS:
        try:
            got = demo_real.ask(kube, opts.namespace, kind, name, model, text)
        except (OSError, RuntimeError, ValueError, KeyError) as e:
            raise DemoError(f"{kind}/{name} did not answer {text!r}: {e}") from e
        lines.append(f"{kind}/{name} asked {text!r}, answered {got!r}")
    return lines


def real_summary(
    kube: Kube, opts: Options, objs: list[dict[str, Any]], answers: list[str], took: float
) -> int:
    """What the real chain produced, from the statuses: the loss of each training stage, the
    evaluation's scores, the endpoints, the answers and the lineage of the last stage."""
    say(f"Done in {took:.0f}s: the chain ran for real on real-0.")
    note("network guard: no connection attempt off this machine (demo and operator)")
    for o in objs:
        st = o.get("status") or {}
        name = f"{o['kind']}/{o['metadata']['name']}"
        if st.get("progress"):
            print(f"{name}: {progress(o, [])}; outputs {st.get('outputs')}")
        if st.get("scores"):
            print(f"{name}: {score(o)} (passed: {st.get('passed')})")
        if st.get("endpoint"):
            print(f"{name}: endpoint {st['endpoint']}")
    for line in answers:
        print(line)
    last = next(o for o in objs if o["kind"] == "Agent")
    lineage = " -> ".join(
        f"{e.get('kind')}/{e.get('name')}" for e in (last.get("status") or {}).get("lineage") or []
    )
    if lineage:
        print(f"Agent lineage: {lineage} -> Agent/{last['metadata']['name']}")
    note(
        f"explore: {kubectl_binary()} --kubeconfig {kube.kubeconfig} get internlm -n "
        f"{opts.namespace}"
    )
    note("remove everything: make demo-down")
    return 0
