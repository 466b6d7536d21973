"""Reconciler core at scale, against a local cluster of its own (issue #14's four goals).

    .venv/bin/python bench/reconcile_scale.py          # 1,000 / 100 / 200 and 2,000 / 5,000
    .venv/bin/python bench/reconcile_scale.py --quick  # 200 / 50 / 100 and 500 / 1,000

One run, side by side on the same cluster:

1. burst: N TrainJobs created at once; the operator (its own process, default settings) until
   every one has its Job and a status, against a bare client that creates the same TrainJobs
   and writes the same children (ConfigMap, Service when there is one, Job, built by the
   operator's own builders) and one status patch each, as fast as 16 threads can. The bare
   client runs before and after the operator; the ratio is to their mean.
2. latency: TrainJobs created at a steady rate: apply -> Job (p50/p99); then their pods exit
   (kwok, at the same rate): pod exit -> status phase Succeeded (p50/p99).
3. steady state: API requests per minute (and writes) of the operator with A and then B idle
   (Running) TrainJobs, counted by the operator's own metric over one minute each.
4. memory: the operator's RSS with all the resources so far and their children, then with M.

Times are from watches the benchmark keeps (the same informer code the operator uses), so
polling adds no load. Nothing leaves the machine: the cluster, the operator and the benchmark
talk over loopback.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "e2e" / "cluster"))
os.environ.setdefault("INTERNLM_CLUSTER_STATE", "/tmp/internlm-bench-scale")
os.environ.setdefault("INTERNLM_CLUSTER_PORT_BASE", "29400")

import localcluster  # noqa: E402
from internlm_operator.api.v1alpha1 import API_VERSION, parse  # noqa: E402
from internlm_operator.builders import BatchInputs, build  # noqa: E402
from internlm_operator.reconcilers.kube import Kube, kind_of, load_api_client  # noqa: E402
from internlm_operator.reconcilers.kube.informer import Informer  # noqa: E402
from internlm_operator.reconcilers.kube.store import Store  # noqa: E402
from internlm_operator.reconcilers.objects import body, owner_of  # noqa: E402

IMAGE = "ghcr.io/internlm-operator/pretrain:0.1.0"
METRICS_PORT = 29481
NS_BARE = ("bench-bare-1", "bench-bare-2")
NS_OP = ("bench-burst", "bench-steady", "bench-idle")
THREADS = 16


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def trainjob(name: str) -> dict[str, Any]:
    """A one-node TrainJob whose pods need nothing that must exist first (no PVC, no Secret)."""
    return {
        "apiVersion": API_VERSION,
        "kind": "TrainJob",
        "metadata": {"name": name},
        "spec": {
            "framework": "deepspeed",
            "model": {"source": {"huggingFace": {"repo": "internlm/internlm2_5-1_8b"}}},
            "data": {"huggingFace": {"repo": "bench/corpus"}, "format": "jsonl"},
            "output": {"uri": f"s3://bench/{name}"},
            "nodes": 1,
            "resources": {"gpusPerNode": 0, "cpu": "100m", "memory": "128Mi"},
            "optimization": {"globalBatchSize": 8, "microBatchSize": 1, "maxSteps": 10},
        },
    }


# -- the cluster ------------------------------------------------------------------------------
def cluster_up() -> Path:
    cmd = [sys.executable, str(REPO / "e2e/cluster/localcluster.py")]
    if subprocess.run([*cmd, "up"], check=False).returncode != 0:
        raise SystemExit("the local cluster did not start")
    kc = localcluster.STATE / "kubeconfig"
    kubectl = str(localcluster.binaries()["kubectl"])
    nodes = [
        localcluster.node(
            f"bench-node-{i}",
            {"internlm.io/bench": "true"},
            {"cpu": "1000", "memory": "4096Gi", "pods": "1500", "ephemeral-storage": "30Ti"},
        )
        for i in range(5)
    ]
    for doc in [
        *nodes,
        *(
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": n}}
            for n in (*NS_BARE, *NS_OP)
        ),
    ]:
        subprocess.run(
            [kubectl, "--kubeconfig", str(kc), "apply", "-f", "-"],
            input=json.dumps(doc),
            text=True,
            check=True,
            capture_output=True,
        )
    subprocess.run(
        [kubectl, "--kubeconfig", str(kc), "apply", "--server-side", "-f", str(REPO / "crds")],
        check=True,
        capture_output=True,
    )
    for ns in (*NS_BARE, *NS_OP):  # pods need the namespace's ServiceAccount
        for _ in range(100):
            r = subprocess.run(
                [kubectl, "--kubeconfig", str(kc), "get", "sa", "default", "-n", ns],
                capture_output=True,
                check=False,
            )
            if r.returncode == 0:
                break
            time.sleep(0.2)
    return kc


def cluster_down() -> None:
    subprocess.run([sys.executable, str(REPO / "e2e/cluster/localcluster.py"), "down"], check=False)


# -- what the benchmark watches ----------------------------------------------------------------
class Seen:
    """First time (monotonic) each object met a condition, from a watch."""

    def __init__(
        self,
        kube: Kube,
        api_version: str,
        kind: str,
        ns: str,
        selector: str,
        when: Callable[[Mapping[str, Any]], tuple[str, str] | None],
    ) -> None:
        """``when(obj)``: (name, state) to note the first time of, or None."""
        self.at: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()

        def changed(_k: Any, obj: Mapping[str, Any]) -> None:
            key = when(obj)
            if key is None:
                return
            with self._lock:
                self.at.setdefault(key, time.monotonic())

        self.inf = Informer(
            kube, kind_of(api_version, kind), Store(), selector, changed, namespace=ns
        )
        self.inf.start()
        self.inf.synced.wait(30)

    def names(self, state: str | None = None) -> dict[str, float]:
        """Name -> the first time it was seen (in ``state``, or in any)."""
        out: dict[str, float] = {}
        with self._lock:
            for (n, st), t in self.at.items():
                if state is None or st == state:
                    out[n] = min(t, out.get(n, t))
        return out

    def stop(self) -> None:
        self.inf.stop()


def owner_name(obj: Mapping[str, Any]) -> str | None:
    return ((obj.get("metadata") or {}).get("labels") or {}).get("internlm.io/resource")


def pod_state(obj: Mapping[str, Any]) -> tuple[str, str] | None:
    name = owner_name(obj)
    return (name, str((obj.get("status") or {}).get("phase") or "")) if name else None


def job_state(obj: Mapping[str, Any]) -> tuple[str, str] | None:
    name = owner_name(obj)
    conds = (obj.get("status") or {}).get("conditions") or []
    done = any(c.get("type") == "Complete" and c.get("status") == "True" for c in conds)
    return (name, "Complete" if done else "") if name else None


def with_phase(obj: Mapping[str, Any]) -> tuple[str, str] | None:
    phase = (obj.get("status") or {}).get("phase")
    return (obj["metadata"]["name"], str(phase)) if phase else None


def wait(what: str, check: Callable[[], bool], timeout: float) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if check():
            return
        time.sleep(0.2)
    raise SystemExit(f"timed out after {timeout:.0f}s waiting for {what}")


# -- the bare client ---------------------------------------------------------------------------
def bare_one(kube: Kube, ns: str, name: str) -> None:
    doc = trainjob(name)
    doc["metadata"]["namespace"] = ns
    created = kube.create(doc)
    spec = parse(body(created)).spec
    ch = build(BatchInputs(owner=owner_of(created), spec=spec, image=IMAGE))
    kube.apply(ch.config_map)
    if ch.service is not None:
        kube.apply(ch.service)
    kube.apply(ch.job)
    kube.patch_status(
        API_VERSION, "TrainJob", ns, name, {"phase": "Pending", "observedGeneration": 1}
    )


def bare_burst(kube: Kube, ns: str, n: int) -> float:
    t0 = time.monotonic()
    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(lambda i: bare_one(kube, ns, f"tj-{i}"), range(n)))
    return time.monotonic() - t0


# -- the operator ------------------------------------------------------------------------------
class Operator:
    def __init__(self, kubeconfig: Path) -> None:
        argv = [
            str(Path(sys.executable).parent / "internlm-operator"),
            "run",
            "--kubeconfig",
            str(kubeconfig),
            "--metrics-port",
            str(METRICS_PORT),
            "--health-port",
            "0",
            "--log-format",
            "json",
        ]
        for ns in NS_OP:
            argv += ["--namespace", ns]
        self.log = open("/tmp/internlm-bench-operator.log", "w")  # noqa: SIM115
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT)
        wait("the operator's metrics", lambda: self.requests() is not None, 60)

    def requests(self) -> dict[str, float] | None:
        try:
            text = (
                urllib.request.urlopen(f"http://127.0.0.1:{METRICS_PORT}/metrics", timeout=2)
                .read()
                .decode()
            )
        except OSError:
            return None
        out: dict[str, float] = {}
        for line in text.splitlines():
            if line.startswith("internlm_operator_api_requests_total{"):
                verb = line.split('verb="', 1)[1].split('"', 1)[0]
                out[verb] = float(line.rsplit(" ", 1)[1])
        return out

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def create_many(
    kube: Kube, ns: str, names: list[str], rate: float | None = None
) -> dict[str, float]:
    """Create TrainJobs (all at once, or ``rate`` per second); returns when each was created."""
    created: dict[str, float] = {}

    def one(name: str) -> None:
        doc = trainjob(name)
        doc["metadata"]["namespace"] = ns
        kube.create(doc)
        created[name] = time.monotonic()

    if rate is None:
        with ThreadPoolExecutor(THREADS) as pool:
            list(pool.map(one, names))
    else:
        t0 = time.monotonic()
        for i, name in enumerate(names):
            time.sleep(max(0.0, t0 + i / rate - time.monotonic()))
            one(name)
    return created


class Done(Exception):
    """The stages asked for have run."""


def pct(xs: list[float], p: float) -> float:
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(p / 100 * (len(xs) - 1)))]


def per_minute(op: Operator, seconds: float) -> tuple[float, float, float]:
    """(requests of the passes, of which writes, watch (re)starts), per minute."""
    a = op.requests() or {}
    time.sleep(seconds)
    b = op.requests() or {}

    def delta(verbs: tuple[str, ...]) -> float:
        return sum(b.get(v, 0) - a.get(v, 0) for v in verbs) * 60 / seconds

    return (
        delta(("get", "list", "post", "put", "patch", "delete")),
        delta(("post", "put", "patch", "delete")),
        delta(("watch",)),
    )


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--keep", action="store_true", help="leave the cluster up")
    ap.add_argument(
        "--stages",
        default="burst,latency,idle,memory",
        help="which of burst, latency, idle, memory to run (memory needs idle)",
    )
    a = ap.parse_args()
    stages = set(a.stages.split(","))
    burst, steady, idle_a, idle_b, total = (
        (200, 50, 100, 500, 1000) if a.quick else (1000, 100, 200, 2000, 5000)
    )
    rate, window = 5.0, 60.0
    kc = cluster_up()
    api = load_api_client(str(kc))
    api.rest_client.pool_manager.connection_pool_kw["maxsize"] = THREADS + 4
    kube = Kube(api)
    rows: list[tuple[str, str, str]] = []
    op: Operator | None = None
    try:
        if "burst" in stages:
            log(f"burst: bare client, {burst} TrainJobs")
            bare1 = bare_burst(kube, NS_BARE[0], burst)
            log(f"  {bare1:.1f}s")
        op = Operator(kc)
        time.sleep(3)
        if "burst" in stages:
            jobs = Seen(
                kube,
                "batch/v1",
                "Job",
                NS_OP[0],
                "app.kubernetes.io/managed-by=internlm-operator",
                job_state,
            )
            tjs = Seen(kube, API_VERSION, "TrainJob", NS_OP[0], "", with_phase)
            log(f"burst: operator, {burst} TrainJobs")
            t0 = time.monotonic()
            create_many(kube, NS_OP[0], [f"tj-{i}" for i in range(burst)])
            wait(
                "every burst TrainJob with a Job and a status",
                lambda: len(jobs.names()) >= burst and len({n for n in tjs.names()}) >= burst,
                900,
            )
            t_op = max(max(jobs.names().values()), max(tjs.names().values())) - t0
            jobs.stop()
            tjs.stop()
            log(f"  {t_op:.1f}s")
            log(f"burst: bare client again, {burst} TrainJobs")
            bare2 = bare_burst(kube, NS_BARE[1], burst)
            log(f"  {bare2:.1f}s")
            bare = (bare1 + bare2) / 2
            rows.append(
                (
                    f"burst: {burst} TrainJobs -> children + status",
                    f"operator {t_op:.1f}s, bare client {bare1:.1f}s / {bare2:.1f}s",
                    f"{t_op / bare:.2f}x (goal <= 1.5x)",
                )
            )

        if "latency" in stages:
            # On a settled cluster: the burst's pods started and their status written, so the
            # figures are the steady rate's, not the burst's tail.
            if "burst" in stages:
                tail = Seen(kube, API_VERSION, "TrainJob", NS_OP[0], "", with_phase)
                wait("the burst Running", lambda: len(tail.names("Running")) >= burst, 900)
                tail.stop()
                time.sleep(30)
            log(f"latency: {steady} TrainJobs at {rate:.0f}/s")
            ns = NS_OP[1]
            jobs = Seen(
                kube,
                "batch/v1",
                "Job",
                ns,
                "app.kubernetes.io/managed-by=internlm-operator",
                job_state,
            )
            pods = Seen(
                kube, "v1", "Pod", ns, "app.kubernetes.io/managed-by=internlm-operator", pod_state
            )
            tjs = Seen(kube, API_VERSION, "TrainJob", ns, "", with_phase)
            names = [f"tj-{i}" for i in range(steady)]
            created = create_many(kube, ns, names, rate)
            wait("every steady TrainJob's Job", lambda: len(jobs.names()) >= steady, 120)
            j = jobs.names()
            to_job = [j[n] - created[n] for n in names]
            wait("every steady TrainJob Running", lambda: len(tjs.names("Running")) >= steady, 300)
            t0 = time.monotonic()
            for i, name in enumerate(names):
                time.sleep(max(0.0, t0 + i / rate - time.monotonic()))
                pod = kube.list("v1", "Pod", ns, {"internlm.io/resource": name})[0]
                kube.merge_patch(
                    "v1",
                    "Pod",
                    ns,
                    pod["metadata"]["name"],
                    {
                        "metadata": {
                            "annotations": {
                                "e2e.internlm.io/exit-code": "0",
                                "e2e.internlm.io/message": json.dumps({"ok": True}),
                            }
                        }
                    },
                )
            wait(
                "every steady TrainJob Succeeded",
                lambda: len(tjs.names("Succeeded")) >= steady,
                300,
            )
            # The Job controller's Complete, for the split below (it may lag far behind).
            try:
                wait(
                    "every steady Job Complete", lambda: len(jobs.names("Complete")) >= steady, 180
                )
            except SystemExit as e:
                log(f"  {e}")
            exited, done = pods.names("Succeeded"), tjs.names("Succeeded")
            complete = jobs.names("Complete")
            to_status = [done[n] - exited[n] for n in names if n in exited]
            to_complete = [complete[n] - exited[n] for n in names if n in exited and n in complete]
            after_job = [done[n] - complete[n] for n in names if n in complete]
            for s in (jobs, pods, tjs):
                s.stop()
            rows.append(
                (
                    f"latency: apply -> Job ({steady} at {rate:.0f}/s)",
                    f"p50 {pct(to_job, 50):.2f}s, p99 {pct(to_job, 99):.2f}s",
                    "goal p99 < 1s",
                )
            )
            rows.append(
                (
                    "latency: pod exit -> status phase",
                    f"p50 {pct(to_status, 50):.2f}s, p99 {pct(to_status, 99):.2f}s",
                    "goal p99 < 1s",
                )
            )
            rows.append(
                (
                    "  of which: pod exit -> Job Complete",
                    f"p50 {pct(to_complete, 50):.2f}s, p99 {pct(to_complete, 99):.2f}s",
                    "the Job controller (kube-controller-manager)",
                )
            )
            rows.append(
                (
                    "  and: Job Complete -> status phase",
                    f"p50 {pct(after_job, 50):.2f}s, p99 {pct(after_job, 99):.2f}s",
                    "the operator",
                )
            )

        if "idle" not in stages:
            raise Done
        ns = NS_OP[2]
        tjs = Seen(kube, API_VERSION, "TrainJob", ns, "", with_phase)
        idle: dict[int, tuple[float, float, float]] = {}
        have = 0
        for n in (idle_a, idle_b):
            log(f"steady state: {n} idle (Running) TrainJobs")
            create_many(kube, ns, [f"idle-{i}" for i in range(have, n)])
            have = n
            wait(f"{n} idle TrainJobs Running", lambda n=n: len(tjs.names("Running")) >= n, 1200)
            time.sleep(20)  # let the last passes and the resync after them settle
            idle[n] = per_minute(op, window)
            r, w, rw = idle[n]
            log(f"  {r:.0f} requests/min ({w:.0f} writes), {rw:.0f} watch (re)starts/min")
        (ra, wa, rwa), (rb, wb, rwb) = idle[idle_a], idle[idle_b]
        ratio = rb / ra if ra else (1.0 if rb == 0 else float("inf"))
        rows.append(
            (
                f"steady state: requests/min at {idle_a} / {idle_b} idle",
                f"{ra:.0f} / {rb:.0f} (writes {wa:.0f} / {wb:.0f})",
                f"{ratio:.2f}x (goal within 20%, 0 writes)",
            )
        )
        rows.append(
            (
                "  and watch (re)starts/min in those minutes",
                f"{rwa:.0f} / {rwb:.0f}",
                "one per child kind and namespace every 5-10 min, at any scale",
            )
        )
        if "memory" not in stages:
            raise Done
        resources = (burst if "burst" in stages else 0) + (steady if "latency" in stages else 0)
        resources += idle_b
        rss_b = op.rss_mb()
        log(f"memory: {resources} resources: {rss_b:.0f} MB; adding up to {total}")
        create_many(kube, ns, [f"idle-{i}" for i in range(have, have + total - resources)])
        wait(
            f"{total} resources with children",
            lambda: len(tjs.names("Running")) >= idle_b + total - resources,
            1800,
        )
        time.sleep(20)
        rss = op.rss_mb()
        tjs.stop()
        rows.append(
            (
                f"memory: operator RSS at {resources} / {total} resources",
                f"{rss_b:.0f} MB / {rss:.0f} MB",
                "goal < 250 MB at 5,000",
            )
        )
    except Done:
        pass
    finally:
        if op is not None:
            op.stop()
        if not a.keep:
            cluster_down()
    print()
    w = max(len(r[0]) for r in rows)
    for r in rows:
        print(f"{r[0]:<{w}}  {r[1]:<52}  {r[2]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
