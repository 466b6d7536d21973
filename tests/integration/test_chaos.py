"""Chaos: ``samples/pipeline.yaml`` (TrainJob -> FineTune -> EvalRun gate -> ModelServe ->
Agent) runs to the end while the operator, a separate ``internlm-operator run`` process, is
SIGKILLed 20 times (at seeded random moments, some right after a child was applied or a status
was written) and restarted each time, and the kube-apiserver is killed and restarted once in
the middle. Everything converges: every stage reaches its final state with the scores,
endpoints and lineage of the calm run, exactly one child of each kind per resource (no
duplicate, no re-created child, no generateName leftover), no restart counted, no resource
Failed or Stalled, a handful of Events per resource, and the operator never died by itself.

Beside it: both cuts around one transition, deterministically (no Event lost or doubled), and
one operator process kept through an API server restart (its watches come back).

``INTERNLM_CHAOS_SEED`` (default 15) picks the moments; ``INTERNLM_CHAOS_KILLS`` (default 20)
how many.
"""

from __future__ import annotations

import json
import os
import random
import secrets
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, Cluster, localcluster, wait_until
from tests.integration.conftest import Batch, claims_of, make_pvcs, samples
from tests.integration.test_modelserve import Serve
from tests.integration.test_trainjob import small

pytestmark = pytest.mark.cluster

SEED = int(os.environ.get("INTERNLM_CHAOS_SEED", "15"))
KILLS = int(os.environ.get("INTERNLM_CHAOS_KILLS", "20"))
# The operator's health port: in the 28400-28499 range the chaos cluster's own ports leave free
# (PORT_BASE+0/1/43/57/59/80), away from the default cluster's 16400-16499.
HEALTH_PORT = int(os.environ.get("INTERNLM_CHAOS_HEALTH_PORT", "28490"))
WRAPPER = Path(__file__).resolve().parent / "chaos_operator.py"
# Where a kill may land besides "at a random moment": right after this write succeeded, per
# stage of the pipeline (what the operator writes then).
STAGE_POINTS = {
    "TrainJob": ("apply:ConfigMap", "apply:Service", "apply:Job", "status:TrainJob", "event:*"),
    "FineTune": ("apply:ConfigMap", "apply:Job", "status:FineTune", "event:*"),
    "EvalRun": ("apply:ConfigMap", "apply:Job", "status:EvalRun", "event:*"),
    "serving": (
        "apply:Deployment",
        "apply:Service",
        "status:ModelServe",
        "status:Agent",
        "event:*",
    ),
}
KILL_POINTS = tuple(sorted({p for points in STAGE_POINTS.values() for p in points}))
CHILD_KINDS = ("jobs", "services", "configmaps", "deployments", "replicasets")
MANAGED = "app.kubernetes.io/managed-by=internlm-operator"
OUR_KINDS = ("TrainJob", "FineTune", "EvalRun", "ModelServe", "Agent")
# Events every run of the pipeline records, whenever the kills land (PodsRunning is not among
# them: a gang may start and end while the operator is down).
EXPECTED_EVENTS = {
    ("TrainJob", "pipeline-pretrain"): ("JobCreated", "Succeeded"),
    ("FineTune", "pipeline-sft"): ("WaitingForDependency", "JobCreated", "Succeeded"),
    ("EvalRun", "pipeline-eval"): (
        "WaitingForDependency",
        "JobCreated",
        "Succeeded",
        "ThresholdsMet",
    ),
    ("ModelServe", "pipeline-serve"): ("WaitingForDependency", "Serving"),
    ("Agent", "pipeline-agent"): ("WaitingForDependency", "Serving"),
}


def health_ok() -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{HEALTH_PORT}/readyz", timeout=0.5) as r:
            return bool(r.status == 200)
    except OSError:
        return False


@dataclass
class Kill:
    n: int
    point: str | None  # the armed kill point (None: a kill at a random moment)
    where: str  # what actually happened: "mid-pass: ...", "random", "before ready"
    uptime: float
    ready: float | None  # seconds from the start to /readyz


@dataclass
class Chaos:
    """Runs the operator as a subprocess and kills it ``kills`` times, then leaves one run."""

    cluster: Cluster
    namespace: str
    log: Path
    kills: int = KILLS
    seed: int = SEED
    done_kills: list[Kill] = field(default_factory=list)
    crashes: list[str] = field(default_factory=list)
    proc: subprocess.Popen[bytes] | None = None
    finished: threading.Event = field(default_factory=threading.Event)
    stop_flag: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None
    last_start: float = 0.0
    running: bool = False
    # The writes the stage at hand makes (the test moves it along): an armed run dies there.
    points: tuple[str, ...] = KILL_POINTS
    requested: str | None = None
    armed_ready: threading.Event = field(default_factory=threading.Event)

    def command(self) -> list[str]:
        images = {s: f"registry.local/internlm-{s}:chaos" for s in OPERATOR_STAGES}
        return [
            sys.executable,
            str(WRAPPER),
            "run",
            "--kubeconfig",
            str(self.cluster.kubeconfig),
            "--namespace",
            self.namespace,
            "--health-port",
            str(HEALTH_PORT),
            "--metrics-port",
            "0",
            "--resync-seconds",
            "1",
            "--progress-timeout",
            "0",
            "--images",
            json.dumps(images),
        ]

    def spawn(self, point: str | None) -> subprocess.Popen[bytes]:
        env = {k: v for k, v in os.environ.items() if k != "INTERNLM_CHAOS_KILL_AT"}
        if point:
            env["INTERNLM_CHAOS_KILL_AT"] = point
        with self.log.open("ab") as f:
            f.write(f"\n===== operator run {len(self.done_kills) + 1} (kill at {point})\n".encode())
            f.flush()
            self.proc = subprocess.Popen(
                self.command(),
                cwd=REPO,
                env=env,
                stdout=f,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.last_start = time.monotonic()
        return self.proc

    def tail(self, n: int = 40) -> str:
        lines = self.log.read_text(errors="replace").splitlines()
        return "\n".join(lines[-n:])

    def arm_next(self, point: str, timeout: float = 120) -> None:
        """Have the next run armed at ``point`` and wait until it is ready: the test then makes
        the write happen (ends the pods whose success makes it)."""
        self.armed_ready.clear()
        self.requested = point
        wait_until(
            f"a run armed at {point} ready",
            lambda: self.armed_ready.is_set() or self.error or self.finished.is_set(),
            timeout=timeout,
        )

    def wait_kills(self, n: int, timeout: float = 120) -> None:
        wait_until(
            f"{n} operator kills",
            lambda: len(self.done_kills) >= n or self.error or self.finished.is_set(),
            timeout=timeout,
        )
        if self.error:
            raise self.error

    def run(self) -> None:
        self.running = True
        try:
            self._run()
        except BaseException as e:
            self.error = e
        finally:
            self.finished.set()

    def _run(self) -> None:
        rng = random.Random(self.seed)
        for n in range(1, self.kills + 1):
            if self.stop_flag.is_set():
                return
            # Two in five armed at a write (mid-pass), two in five at a random moment once
            # ready, one in five while it starts (loading, logging in, starting its watches).
            mode = rng.random()
            point = rng.choice(self.points) if mode < 0.4 else None
            delay = rng.uniform(0.2, 2.5)
            starting = rng.uniform(0.5, 4.0) if mode >= 0.8 else None
            # An armed run waits for its point up to 5 s after ready, then is killed anyway.
            budget = 5.0 if point else delay
            requested, self.requested = self.requested, None
            if requested:  # the test is about to make this write happen: wait for it
                point, starting, budget = requested, None, 45.0
            proc = self.spawn(point)
            t0 = time.monotonic()
            ready_at: float | None = None
            where = ""
            while True:
                code = proc.poll()
                if code is not None:
                    if code == -signal.SIGKILL and point:
                        where = "mid-pass: " + point
                        break
                    self.crashes.append(f"run {n} exited by itself ({code}):\n{self.tail()}")
                    where = f"crashed ({code})"
                    break
                now = time.monotonic()
                if ready_at is None and health_ok():
                    ready_at = now
                    if requested:
                        self.armed_ready.set()
                if ready_at is not None and now - ready_at >= (0 if starting else budget):
                    where = (
                        f"random (armed {point}, not reached)"
                        if point
                        else ("starting (just ready)" if starting else "random")
                    )
                    break
                if ready_at is None and starting is not None and now - t0 >= starting:
                    where = "starting"
                    break
                if ready_at is None and now - t0 > 45:
                    where = "before ready (45 s)"
                    break
                time.sleep(0.05)
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
            ready = None if ready_at is None else ready_at - t0
            self.done_kills.append(Kill(n, point, where, time.monotonic() - t0, ready))
            # Down for a moment: the cluster (pods ending, Deployments rolling) moves on.
            time.sleep(rng.uniform(0.0, 0.5))
        if not self.stop_flag.is_set():
            self.spawn(None)  # the last run: converge

    def stop(self) -> None:
        self.stop_flag.set()
        if self.running:
            self.finished.wait(60)
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)


OPERATOR_STAGES = ("pretrain", "finetune", "eval", "serve", "agent")


@pytest.fixture
def chaos_namespace(cluster: Cluster, crds: list[str]) -> Iterator[str]:
    """A namespace no in-process session operator watches (those watch ``it-<token>-*``)."""
    name = f"chaos-{secrets.token_hex(3)}"
    cluster.kubectl("create", "namespace", name)
    wait_until(
        f"ServiceAccount default in {name}",
        lambda: (
            cluster.kubectl("get", "serviceaccount", "default", "-n", name, check=False).returncode
            == 0
        ),
        timeout=60,
    )
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)
    cluster.kubectl(
        "delete", "pv", "-l", f"internlm.io/test-namespace={name}", "--wait=false", check=False
    )


# ----------------------------------------------------------------------------- observation


class Ledger:
    """Every child UID ever seen, per (kind, name): a child deleted and re-created shows as two."""

    def __init__(self, cluster: Cluster, ns: str) -> None:
        self.cluster, self.ns = cluster, ns
        self.uids: dict[tuple[str, str], set[str]] = defaultdict(set)
        self.last = 0.0

    def snapshot(self, force: bool = False) -> None:
        if not force and time.monotonic() - self.last < 2:
            return
        self.last = time.monotonic()
        kinds = ",".join((*CHILD_KINDS, "pods"))
        res = self.cluster.kubectl("get", kinds, "-n", self.ns, "-o", "json", check=False)
        if res.returncode != 0:
            return  # the API server restarting: next time
        for o in json.loads(res.stdout)["items"]:
            if o["metadata"]["name"] != "kube-root-ca.crt":
                self.uids[(o["kind"], o["metadata"]["name"])].add(o["metadata"]["uid"])


def observing(ledger: Ledger, b: Batch | Serve) -> None:
    """Wrap the helper's status reads so every poll also takes a ledger snapshot."""
    status = b.status

    def observed() -> dict[str, Any]:
        ledger.snapshot()
        return status()

    b.status = observed  # type: ignore[method-assign]


def events_by_object(cluster: Cluster, ns: str) -> dict[tuple[str, str], Counter[str]]:
    out: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
    for e in cluster.get("events", "-n", ns)["items"]:
        io = e["involvedObject"]
        count = int(e.get("count") or (e.get("series") or {}).get("count") or 1)
        out[(io["kind"], io["name"])][e.get("reason") or ""] += count
    return out


def cond(st: dict[str, Any], type_: str) -> tuple[str, str] | None:
    for c in st.get("conditions") or []:
        if c["type"] == type_:
            return c["status"], c["reason"]
    return None


# ----------------------------------------------------------------------------- the test


def test_operator_killed_20_times_and_api_restarted_converges(
    cluster: Cluster, chaos_namespace: str, tmp_path: Path
) -> None:
    ns = chaos_namespace
    t_start = time.monotonic()
    docs = samples("pipeline")
    make_pvcs(cluster, ns, *sorted(set().union(*(claims_of(d) for d in docs))))

    chaos = Chaos(cluster, ns, tmp_path / "operator.log")
    runner = threading.Thread(target=chaos.run, name="chaos", daemon=True)
    runner.start()
    ledger = Ledger(cluster, ns)
    tj = Batch(cluster, ns, "TrainJob", "pipeline-pretrain")
    ft = Batch(cluster, ns, "FineTune", "pipeline-sft")
    ev = Batch(cluster, ns, "EvalRun", "pipeline-eval")
    ms = Serve(cluster, ns, "pipeline-serve")
    ag = Serve(cluster, ns, "pipeline-agent", kind="Agent")
    for b in (tj, ft, ev, ms, ag):
        observing(ledger, b)
    api_restart_s = 0.0
    api_restart_at_kill = 0
    try:
        for d in docs:
            cluster.apply(d, namespace=ns)

        # Each stage's pods end (as the workloads would) only after a few more kills, so kills
        # land before, during and after every stage; some while the operator is down.
        chaos.points = STAGE_POINTS["TrainJob"]
        tj.wait_running(2, timeout=120)
        chaos.wait_kills(3)
        # Killed right after the FineTune's Job is created (the TrainJob's success unblocks it),
        # before the FineTune's status says so.
        chaos.arm_next("apply:Job")
        tj.finish_all(
            2, {"ok": True, "outputs": {"model": "/mnt/pvc/model-store/pipeline/pretrain/hf"}}
        )
        tj.wait_phase("Succeeded", timeout=120)

        chaos.points = STAGE_POINTS["FineTune"]
        ft.wait_running(1, timeout=120)
        chaos.wait_kills(7)
        chaos.arm_next("status:FineTune")  # killed right after the Succeeded patch
        ft.finish_all(
            1,
            {
                "ok": True,
                "outputs": {
                    "adapter": "/mnt/pvc/model-store/pipeline/sft/adapter",
                    "merged": "/mnt/pvc/model-store/pipeline/sft/merged",
                },
            },
        )
        # The API server goes away while the FineTune's success is still to be noticed.
        api_restart_at_kill = len(chaos.done_kills)
        api_restart_s = localcluster.restart_apiserver()
        t_api = time.monotonic()
        ft.wait_phase("Succeeded", timeout=120)
        ft_after_api_s = time.monotonic() - t_api

        chaos.points = STAGE_POINTS["EvalRun"]
        ev.wait_running(1, timeout=120)
        chaos.wait_kills(12)
        # Killed right after the ModelServe's Deployment is created (the gate just passed).
        chaos.arm_next("apply:Deployment")
        ev.finish_all(
            1,
            {
                "ok": True,
                "scores": [
                    {"dataset": "gsm8k", "metric": "accuracy", "value": 58.2},
                    {"dataset": "mmlu", "metric": "accuracy", "value": 63.0},
                ],
            },
        )
        t_ev = time.monotonic()
        ev.wait_phase("Succeeded", timeout=120)
        chaos.points = STAGE_POINTS["serving"]

        def agent_ready() -> dict[str, Any]:
            return ag.wait(
                "phase Ready",
                lambda s: s.get("phase") == "Ready" and s.get("llm"),
                timeout=150,
            )

        # Still under fire: the gate opens, the server and the agent come up.
        ms.wait_ready(timeout=150)
        agent_ready()
        chain_s = time.monotonic() - t_ev

        # The rest of the kills, then the last run takes over what the others left.
        chaos.wait_kills(chaos.kills, timeout=240)
        chaos.finished.wait(30)
        assert chaos.error is None, chaos.error
        assert len(chaos.done_kills) == chaos.kills
        t_last = chaos.last_start
        wait_until("the last run ready", health_ok, timeout=60)
        ms_st = ms.wait_ready(timeout=60)
        ag_st = agent_ready()
        converge_s = time.monotonic() - t_last

        # Settled: a few more resync passes change nothing (no status flapping).
        def versions() -> dict[str, str]:
            return {
                k: cluster.get(k.lower(), n, "-n", ns)["metadata"]["resourceVersion"]
                for k, n in (
                    ("TrainJob", tj.name),
                    ("FineTune", ft.name),
                    ("EvalRun", ev.name),
                    ("ModelServe", ms.name),
                    ("Agent", ag.name),
                )
            }

        before = versions()
        time.sleep(3)
        assert versions() == before, "statuses still change after convergence"
        ledger.snapshot(force=True)
    finally:
        chaos.stop()
        runner.join(30)

    kills = chaos.done_kills
    summary = Counter(k.where.split(":")[0].split(" (")[0] for k in kills)
    total_s = time.monotonic() - t_start
    print(
        f"\nchaos: {len(kills)} operator kills ({dict(summary)}), API server restarted once "
        f"after kill {api_restart_at_kill} ({api_restart_s:.1f}s to /readyz; the FineTune "
        f"Succeeded {ft_after_api_s:.1f}s after), Agent Ready {chain_s:.1f}s after the last "
        f"workload ended, the last run ready and settled {converge_s:.1f}s after its start, "
        f"{total_s:.0f}s in all (seed {chaos.seed})"
    )
    for k in kills:
        up = "never ready" if k.ready is None else f"ready after {k.ready:.1f}s"
        print(f"  kill {k.n:2}: {k.where}, {k.uptime:.1f}s after the start ({up})")

    assert not chaos.crashes, "\n\n".join(chaos.crashes)

    # --- final states: what the calm pipeline test asserts
    st = tj.status()
    assert st["phase"] == "Succeeded", st
    assert st["outputs"]["model"] == "pvc://model-store/pipeline/pretrain/hf", st
    st = ft.status()
    assert st["phase"] == "Succeeded", st
    assert [(x["kind"], x["name"]) for x in st["lineage"]] == [("TrainJob", "pipeline-pretrain")]
    ev_st = ev.status()
    assert ev_st["phase"] == "Succeeded" and ev_st["passed"] is True, ev_st
    scores = {(s["dataset"], s["metric"]): s["value"] for s in ev_st["scores"]}
    assert scores == {("gsm8k", "accuracy"): 58.2, ("mmlu", "accuracy"): 63.0}, ev_st["scores"]
    assert [(x["kind"], x["name"]) for x in ev_st["lineage"]] == [
        ("TrainJob", "pipeline-pretrain"),
        ("FineTune", "pipeline-sft"),
    ]
    assert ms_st["modelSource"] == "pvc://model-store/pipeline/sft/merged"
    assert ms_st["servedModelName"] == "internlm2_5-7b-domain-chat"
    assert ms_st["endpoint"] == f"http://pipeline-serve-ms.{ns}.svc.cluster.local:23333/v1"
    assert ms_st["replicas"] == ms_st["readyReplicas"] == 1
    assert ag_st["llm"] == {"endpoint": ms_st["endpoint"], "model": "internlm2_5-7b-domain-chat"}
    assert ag_st["endpoint"] == f"http://pipeline-agent-ag.{ns}.svc.cluster.local:8000/v1"
    assert [(e["kind"], e["name"]) for e in ag_st["lineage"]] == [
        ("TrainJob", "pipeline-pretrain"),
        ("FineTune", "pipeline-sft"),
        ("EvalRun", "pipeline-eval"),
        ("ModelServe", "pipeline-serve"),
    ]
    outputs = {e["kind"]: e.get("output") for e in ag_st["lineage"]}
    assert outputs["FineTune"] == "pvc://model-store/pipeline/sft/merged"
    assert outputs["ModelServe"] == ms_st["endpoint"]

    # --- nothing Failed or Stalled, no restart counted, each status for this generation
    for b in (tj, ft, ev, ms, ag):
        obj = b.get()
        s = obj["status"]
        assert s.get("observedGeneration") == obj["metadata"]["generation"], (b.name, s)
        assert not s.get("restarts"), (b.name, s)
        for type_, want in (("Ready", "True"), ("Stalled", "False"), ("Failed", "False")):
            got = cond(s, type_) or (None if type_ == "Ready" else "False", "")
            assert got[0] == want, (b.name, type_, s["conditions"])

    # --- exactly one child of each kind per resource, never re-created, no generateName
    owned: dict[tuple[str, str], list[str]] = defaultdict(list)
    for kind in CHILD_KINDS:
        for o in cluster.get(kind, "-n", ns)["items"]:
            md = o["metadata"]
            if kind == "configmaps" and md["name"] == "kube-root-ca.crt":
                continue
            labels = md.get("labels") or {}
            if kind != "replicasets":
                assert labels.get("app.kubernetes.io/managed-by") == "internlm-operator", md
                assert not md.get("generateName"), md
            owned[(labels.get("app.kubernetes.io/instance", "?"), kind)].append(md["name"])
    dupes = {k: v for k, v in owned.items() if len(v) != 1}
    assert not dupes, f"more (or less) than one child of a kind per resource: {dupes}"
    have = {k for k in owned}
    for name in (tj.name, ft.name, ev.name):
        assert (name, "jobs") in have and (name, "configmaps") in have, owned
    assert (tj.name, "services") in have
    for name in (ms.name, ag.name):
        for kind in ("deployments", "services", "replicasets"):
            assert (name, kind) in have, owned
    for name in (ms.name, ag.name):
        d = cluster.get("deployment", f"{name}-{'ms' if name == ms.name else 'ag'}", "-n", ns)
        assert d["metadata"]["generation"] == 1, f"{name}'s Deployment re-rolled: {d['metadata']}"
    pods = Counter(
        (p["metadata"].get("labels") or {}).get("app.kubernetes.io/instance")
        for p in cluster.get("pods", "-n", ns)["items"]
    )
    assert pods == {tj.name: 2, ft.name: 1, ev.name: 1, ms.name: 1, ag.name: 1}, pods
    recreated = {k: v for k, v in ledger.uids.items() if len(v) > 1}
    assert not recreated, f"children deleted and created again: {recreated}"

    # --- Events: one per transition, none lost and none twice whatever the kills cut
    events = events_by_object(cluster, ns)
    for (kind, name), want in EXPECTED_EVENTS.items():
        got = events.get((kind, name), Counter())
        assert set(want) <= set(got), f"{kind} {name}: Events lost: {dict(got)}"
    for (kind, name), reasons in events.items():
        if kind in OUR_KINDS:
            assert all(n == 1 for n in reasons.values()), (kind, name, reasons)
        if kind == "Job":
            assert reasons["SuccessfulCreate"] <= 2, (kind, name, reasons)
        if kind == "Deployment":
            assert reasons["ScalingReplicaSet"] == 1, (kind, name, reasons)
    print("  events: " + "; ".join(f"{k[0]}/{k[1]} {dict(v)}" for k, v in sorted(events.items())))


def test_killed_between_events_and_status_records_each_event_once(
    cluster: Cluster, chaos_namespace: str, tmp_path: Path
) -> None:
    """The two cuts around a transition, deterministically. Killed right after the first Event
    (before the status patch that makes its transition), the next run records it again under
    the same name and the API server refuses the copy; killed right after a status patch, its
    Events are already recorded. Before Events went first with derived names, a kill after the
    status patch lost the transition's Events for good (the next pass sees no transition)."""
    ns = chaos_namespace
    doc = small("evt")
    make_pvcs(cluster, ns, *claims_of(doc))
    chaos = Chaos(cluster, ns, tmp_path / "operator.log")
    tj = Batch(cluster, ns, "TrainJob", "evt")

    def died(proc: subprocess.Popen[bytes], within: float) -> bool:
        try:
            code = proc.wait(within)
        except subprocess.TimeoutExpired:
            return False
        assert code == -signal.SIGKILL and "chaos: SIGKILL right after" in chaos.tail(5), (
            chaos.tail()
        )
        return True

    try:
        proc = chaos.spawn("event:*#1")
        cluster.apply(doc, namespace=ns)
        assert died(proc, 90), chaos.tail()
        proc = chaos.spawn("status:TrainJob#1")
        if not died(proc, 20):  # no transition left before the end: make one
            tj.finish_all(1)
            assert died(proc, 60), chaos.tail()
        chaos.spawn(None)
        wait_until(
            "Running or done",
            lambda: tj.status().get("phase") in ("Running", "Succeeded"),
            timeout=90,
        )
        if tj.pods():
            tj.finish_all(1)
        tj.wait_phase("Succeeded", timeout=90)
        reasons = events_by_object(cluster, ns)[("TrainJob", "evt")]
        assert reasons == {"JobCreated": 1, "PodsRunning": 1, "Succeeded": 1}, chaos.tail()
        assert not tj.status().get("restarts")
    finally:
        chaos.stop()


def test_operator_outlives_api_restart_and_sees_new_resources(
    cluster: Cluster, chaos_namespace: str, tmp_path: Path
) -> None:
    """One operator process through an API server restart: its watches come back (kopf retries
    them), so a TrainJob created after the restart gets its Job from the same process."""
    ns = chaos_namespace
    chaos = Chaos(cluster, ns, tmp_path / "operator.log")
    try:
        proc = chaos.spawn(None)
        wait_until("the operator ready", health_ok, timeout=60)
        took = localcluster.restart_apiserver()
        doc = small("after-restart")
        make_pvcs(cluster, ns, *claims_of(doc))
        t0 = time.monotonic()
        cluster.apply(doc, namespace=ns)
        tj = Batch(cluster, ns, "TrainJob", "after-restart")
        wait_until("its Job", tj.job, timeout=60, explain=chaos.tail)
        print(
            f"\nAPI server back in {took:.1f}s; a TrainJob created after it had its Job in "
            f"{time.monotonic() - t0:.1f}s, from the same operator process"
        )
        assert proc.poll() is None, chaos.tail()
    finally:
        chaos.stop()
