#!/usr/bin/env python3
"""The newcomer's path, in one command: ``make demo``.

    e2e/demo.py up     install what is missing, start the local cluster, helm install the chart,
                       run the operator with the chart's ServiceAccount permissions, apply
                       samples/pipeline.yaml and drive it to the end with a live table
    e2e/demo.py up --real
                       the same with the chain really running on the cluster's real node
                       (e2e/demo_real.py: CPU images, a tiny model, real loss, scores and
                       answers); what ``make demo`` runs (``make demo SIM=1``: plain ``up``)
    e2e/demo.py down   remove what ``up`` created (and the cluster, if ``up`` started it)

What is real and what is simulated: the Kubernetes control plane (etcd, kube-apiserver,
controller-manager, scheduler) and the operator are real; the GPU nodes are simulated by kwok,
so pods are scheduled and reported Running but no container runs. The demo therefore plays
the workloads: when a training, fine-tuning or evaluation pod has been Running for a few
seconds it annotates it with an exit code and a result message (docs/workload-contract.md),
which kwok turns into a terminated container — exactly what the operator reads from a real one.

The chart's operator Deployment is scheduled on a simulated node too, so the real operator runs
here as a local process, configured with the Deployment's own arguments and environment and
authenticated with a token of the chart's ServiceAccount: it has exactly the chart's RBAC.

``up`` alone is the simulated run (``make demo SIM=1``); ``--real`` (plain ``make demo``) runs
e2e/realchain.py's TrainJob -> FineTune -> EvalRun -> ModelServe -> Agent for real instead
(e2e/demo_real.py says how).

Standard library only (it bootstraps the virtualenv it then uses for the operator).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE / "cluster"))

sys.path.insert(0, str(HERE / "netguard"))

import demo_real  # noqa: E402
import internlm_netguard  # noqa: E402
import localcluster  # noqa: E402

CHART = REPO / "helm" / "internlm-operator"
PIPELINE = REPO / "samples" / "pipeline.yaml"
STATE = Path(os.environ.get("INTERNLM_DEMO_STATE", REPO / "e2e" / ".demo"))
VENV_PY = REPO / ".venv" / "bin" / "python"
OPERATOR_BIN = REPO / ".venv" / "bin" / "internlm-operator"

KINDS = ("TrainJob", "FineTune", "EvalRun", "ModelServe", "Agent")
PLURALS = {
    "TrainJob": "trainjobs",
    "FineTune": "finetunes",
    "EvalRun": "evalruns",
    "ModelServe": "modelserves",
    "Agent": "agents",
}
BATCH = {"TrainJob", "FineTune", "EvalRun"}
CRD_NAMES = [f"{p}.internlm.io" for p in PLURALS.values()]
# Claims samples/pipeline.yaml reads from and writes to.
PIPELINE_CLAIMS = ("pretrain-corpus", "sft-data", "model-store")

# Pods annotated by the demo to end (kwok's pod-exit stage, e2e/cluster/stages.yaml).
EXIT_CODE = "e2e.internlm.io/exit-code"
EXIT_MESSAGE = "e2e.internlm.io/message"


def say(msg: str) -> None:
    print(f"\033[1m==>\033[0m {msg}" if sys.stdout.isatty() else f"==> {msg}", flush=True)


def note(msg: str) -> None:
    print(f"    {msg}", flush=True)


def state_dir() -> Path:
    STATE.mkdir(parents=True, exist_ok=True)
    (STATE / ".gitignore").write_text("*\n")
    return STATE


class DemoError(RuntimeError):
    """Something the user can act on; printed without a traceback."""


# ------------------------------------------------------------------------------- binaries


def helm_binary() -> Path:
    """Where ``build-binaries.sh`` (``make binaries``) puts helm."""
    v = localcluster.versions()["HELM_VERSION"]
    return localcluster.CACHE / "bin" / f"helm-{v}" / "helm"


def kubectl_binary() -> Path:
    return localcluster.binaries()["kubectl"]


def require_helm() -> Path:
    helm = helm_binary()
    if not os.access(helm, os.X_OK):
        raise DemoError(
            f"helm not found at {helm}\n"
            "build it with `make binaries` (or `bash e2e/cluster/build-binaries.sh helm`, ~2 min)"
        )
    return helm


# ------------------------------------------------------------------------------- commands


def run(
    argv: list[str | Path],
    *,
    input: str | None = None,
    check: bool = True,
    env: dict[str, str] | None = None,
    timeout: float = 300,
) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(
        [str(a) for a in argv],
        input=input,
        text=True,
        capture_output=True,
        env=env,
        timeout=timeout,
        check=False,
    )
    if check and res.returncode != 0:
        cmd = " ".join(str(a) for a in argv[:6])
        raise DemoError(f"`{cmd} ...` failed ({res.returncode}):\n{res.stderr}{res.stdout}")
    return res


@dataclass
class Kube:
    kubeconfig: Path

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        return run(
            [kubectl_binary(), "--kubeconfig", self.kubeconfig, *args],
            input=input,
            check=check,
            timeout=timeout,
        )

    def json(self, *args: str) -> Any:
        return json.loads(self.kubectl("get", *args, "-o", "json").stdout)

    def apply(self, obj: dict[str, Any] | list[dict[str, Any]]) -> None:
        items = obj if isinstance(obj, list) else [obj]
        doc = {"apiVersion": "v1", "kind": "List", "items": items}
        self.kubectl(
            "apply",
            "--server-side",
            "--force-conflicts",
            "--field-manager=demo",
            "-f",
            "-",
            input=json.dumps(doc),
        )

    def helm(
        self, *args: str, check: bool = True, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        return run(
            [require_helm(), "--kubeconfig", self.kubeconfig, *args], check=check, timeout=timeout
        )


# ------------------------------------------------------------------------------- setup steps


@dataclass
class Options:
    release: str = "internlm-operator"
    operator_namespace: str = "internlm-system"
    namespace: str = "internlm-demo"
    namespaced: bool = False
    timeout: float = 600
    run_seconds: float = 3.0
    resync_seconds: float = 3.0
    setup: bool = True
    extra_set: list[str] = field(default_factory=list)
    real: bool = False


def ensure_installed(opts: Options) -> None:
    if not (REPO / ".venv" / ".installed").exists() or not OPERATOR_BIN.exists():
        say("Installing the Python environment into .venv (make venv, about a minute)")
        t0 = time.monotonic()
        subprocess.run(["make", "-C", str(REPO), "venv"], check=True)
        note(f"done in {time.monotonic() - t0:.0f}s")
    else:
        note("Python environment .venv: present")
    missing = [n for n, p in localcluster.binaries().items() if not os.access(p, os.X_OK)]
    if not os.access(helm_binary(), os.X_OK):
        missing.append("helm")
    if missing:
        say(
            "Building the local control plane and helm from pinned sources (make binaries): "
            + ", ".join(missing)
        )
        note(
            "the first, cold build compiles Kubernetes, CoreDNS and Kueue: about 35 minutes "
            f"on 2 cores (cached in {localcluster.CACHE}/bin; later runs skip this)"
        )
        t0 = time.monotonic()
        subprocess.run(["make", "-C", str(REPO), "binaries"], check=True)
        note(f"done in {(time.monotonic() - t0) / 60:.1f} min")
    else:
        note(
            f"cluster binaries and helm: cached in {localcluster.CACHE}/bin "
            "(built once; the cold build takes about 35 minutes on 2 cores)"
        )


def cluster_up() -> Kube:
    if localcluster.healthy():
        say("Local cluster: already running, reusing it")
    else:
        say(
            "Starting the local cluster: etcd, kube-apiserver, controller-manager, scheduler, "
            "and kwok simulating 4 GPU nodes x 8 nvidia.com/gpu (~15 s)"
        )
        if localcluster.main(["up"]) != 0:
            raise DemoError("the local cluster did not start (see the [localcluster] lines)")
        state_dir().joinpath("started-cluster").write_text("1\n")
    return Kube(localcluster.STATE / "kubeconfig")


def ensure_namespace(kube: Kube, name: str) -> None:
    kube.apply(
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": name, "labels": {"app.kubernetes.io/part-of": "internlm-demo"}},
        }
    )


def crd_owner(kube: Kube) -> tuple[str, str] | None:
    """(release, namespace) owning the CRDs per Helm's annotations; None when unowned/absent."""
    res = kube.kubectl("get", "crd", CRD_NAMES[0], "-o", "json", check=False)
    if res.returncode != 0:
        return None
    ann = json.loads(res.stdout)["metadata"].get("annotations") or {}
    if "meta.helm.sh/release-name" in ann:
        return ann["meta.helm.sh/release-name"], ann.get("meta.helm.sh/release-namespace", "")
    return None


def crds_exist(kube: Kube) -> bool:
    return kube.kubectl("get", "crd", CRD_NAMES[0], check=False).returncode == 0


def release_exists(kube: Kube, release: str, namespace: str) -> bool:
    res = kube.helm("status", release, "-n", namespace, check=False)
    return res.returncode == 0


def adopt_crds(kube: Kube, release: str, namespace: str) -> None:
    """Let ``release`` take over CRDs that exist without a (live) owner release, e.g. applied
    with ``kubectl apply -f crds/``: Helm adopts objects carrying its ownership metadata."""
    present = [n for n in CRD_NAMES if kube.kubectl("get", "crd", n, check=False).returncode == 0]
    if not present:
        return
    kube.kubectl(
        "annotate",
        "--overwrite",
        *[f"crd/{n}" for n in present],
        f"meta.helm.sh/release-name={release}",
        f"meta.helm.sh/release-namespace={namespace}",
    )
    kube.kubectl(
        "label", "--overwrite", *[f"crd/{n}" for n in present], "app.kubernetes.io/managed-by=Helm"
    )


def helm_install(kube: Kube, opts: Options) -> None:
    ensure_namespace(kube, opts.operator_namespace)
    ensure_namespace(kube, opts.namespace)
    sets = list(opts.extra_set)
    owner = crd_owner(kube)
    if owner and owner != (opts.release, opts.operator_namespace) and release_exists(kube, *owner):
        note(
            f"the CRDs belong to release {owner[0]} in {owner[1]}; this release leaves them "
            "alone (crds.enabled=false)"
        )
        sets.append("crds.enabled=false")
    elif crds_exist(kube) and owner != (opts.release, opts.operator_namespace):
        note("CRDs already exist without a live owner release: this release adopts them")
        adopt_crds(kube, opts.release, opts.operator_namespace)
    if opts.namespaced:
        sets.append(f"watchNamespaces={{{opts.namespace}}}")
    # The chain advances on the operator's resync; a short period keeps the demo brisk.
    sets.append(f"operator.resyncSeconds={opts.resync_seconds:g}")
    scope = (
        f"only namespace {opts.namespace} (a Role there)"
        if opts.namespaced
        else "all namespaces (a ClusterRole)"
    )
    say(
        f"helm install {opts.release} {CHART.relative_to(REPO)} -n {opts.operator_namespace}: "
        f"CRDs, ServiceAccount, RBAC for {scope}, operator Deployment"
    )
    args = [
        "upgrade",
        "--install",
        opts.release,
        str(CHART),
        "-n",
        opts.operator_namespace,
        "--wait",
        "--timeout",
        "3m",
    ]
    for s in sets:
        args += ["--set", s]
    t0 = time.monotonic()
    kube.helm(*args)
    note(f"installed in {time.monotonic() - t0:.0f}s; CRDs:")
    kube.kubectl(
        "wait", "--for=condition=Established", "--timeout=60s", *[f"crd/{n}" for n in CRD_NAMES]
    )
    for n in CRD_NAMES:
        note(f"  {n}")


def chart_deployment(kube: Kube, opts: Options) -> dict[str, Any]:
    deps = kube.json(
        "deployments",
        "-n",
        opts.operator_namespace,
        "-l",
        f"app.kubernetes.io/instance={opts.release},app.kubernetes.io/component=operator",
    )["items"]
    if not deps:
        raise DemoError(f"the chart's Deployment is missing in {opts.operator_namespace}")
    dep: dict[str, Any] = deps[0]
    return dep


def service_account_kubeconfig(kube: Kube, opts: Options, dep: dict[str, Any]) -> tuple[Path, str]:
    sa = dep["spec"]["template"]["spec"]["serviceAccountName"]
    token = kube.kubectl(
        "create", "token", sa, "-n", opts.operator_namespace, "--duration=12h"
    ).stdout.strip()
    # the API server binds the real node's address (not loopback) in real-node mode
    server = f"https://{localcluster.api_host()}:{localcluster.PORTS.apiserver}"
    ca = localcluster.STATE / "pki" / "ca.crt"
    path = state_dir() / f"kubeconfig-{opts.release}"
    path.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {
                        "name": "local",
                        "cluster": {"server": server, "certificate-authority": str(ca)},
                    }
                ],
                "users": [{"name": sa, "user": {"token": token}}],
                "contexts": [{"name": sa, "context": {"cluster": "local", "user": sa}}],
                "current-context": sa,
            },
            indent=2,
        )
    )
    path.chmod(0o600)
    return path, f"system:serviceaccount:{opts.operator_namespace}:{sa}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def operator_command(dep: dict[str, Any]) -> tuple[list[str], dict[str, str]]:
    """The chart Deployment's container args and plain env, with local ports swapped in."""
    c = dep["spec"]["template"]["spec"]["containers"][0]
    args = []
    for a in c.get("args", []):
        if a.startswith("--metrics-port="):
            a = f"--metrics-port={free_port()}"
        elif a.startswith("--health-port="):
            a = f"--health-port={free_port()}"
        args.append(a)
    env = {e["name"]: e["value"] for e in c.get("env", []) if "value" in e}
    env["POD_NAMESPACE"] = dep["metadata"]["namespace"]
    return args, env


@dataclass
class LocalOperator:
    proc: subprocess.Popen[bytes]
    log: Path
    health_port: int | None

    def alive(self) -> bool:
        return self.proc.poll() is None

    def tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)


def start_operator(kube: Kube, opts: Options) -> LocalOperator:
    dep = chart_deployment(kube, opts)
    kubeconfig, identity = service_account_kubeconfig(kube, opts, dep)
    args, env_extra = operator_command(dep)
    if not OPERATOR_BIN.exists():
        raise DemoError(f"{OPERATOR_BIN} is missing: run `make venv`")
    env = {**os.environ, **env_extra, "KUBECONFIG": str(kubeconfig)}
    env.pop("KUBERNETES_SERVICE_HOST", None)
    say(
        f"Running the operator locally as {identity} (a ServiceAccount token: exactly the "
        "chart's RBAC), with the chart Deployment's arguments:"
    )
    note("internlm-operator " + " ".join(args))
    note(
        f"(the chart's own pod runs on a simulated node, where no container really runs; "
        f"log: {STATE / ('operator-' + opts.release + '.log')})"
    )
    log = STATE / f"operator-{opts.release}.log"
    logf = open(log, "wb")  # noqa: SIM115 - handed to the child
    proc = subprocess.Popen(
        [str(OPERATOR_BIN), *args],
        stdout=logf,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env=env,
        cwd=STATE,
        start_new_session=True,
    )
    (STATE / f"operator-{opts.release}.pid").write_text(str(proc.pid))
    health = next((int(a.split("=", 1)[1]) for a in args if a.startswith("--health-port=")), None)
    op = LocalOperator(proc, log, health)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if not op.alive():
            raise DemoError(f"the operator exited ({proc.returncode}):\n{op.tail()}")
        if health is None or _http_ok(f"http://127.0.0.1:{health}/readyz"):
            note("operator ready")
            if opts.namespaced:
                note(
                    "(namespaced: kopf first retries listing namespaces, which this mode does "
                    "not grant, for about a minute before it settles on the given one)"
                )
            return op
        time.sleep(0.5)
    op.stop()
    raise DemoError(f"the operator did not become ready in 60s:\n{op.tail()}")


def _http_ok(url: str) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=1) as r:
            return bool(r.status == 200)
    except OSError:
        return False


def pipeline_storage(kube: Kube, opts: Options) -> None:
    """PersistentVolumes bound to the claims the pipeline names (no provisioner runs here;
    a pod with an unbound claim would never be scheduled)."""
    say(
        "Creating the pipeline's storage: PersistentVolumeClaims "
        + ", ".join(PIPELINE_CLAIMS)
        + f" in {opts.namespace}, each bound to a local volume"
    )
    objs: list[dict[str, Any]] = []
    for claim in PIPELINE_CLAIMS:
        pv = f"demo-{opts.namespace}-{claim}"[:253]
        objs.append(
            {
                "apiVersion": "v1",
                "kind": "PersistentVolume",
                "metadata": {
                    "name": pv,
                    "labels": {
                        "app.kubernetes.io/part-of": "internlm-demo",
                        "internlm.io/demo-namespace": opts.namespace,
                    },
                },
                "spec": {
                    "capacity": {"storage": "1Ti"},
                    "accessModes": ["ReadWriteMany"],
                    "persistentVolumeReclaimPolicy": "Retain",
                    "storageClassName": "",
                    "hostPath": {"path": f"/tmp/internlm-demo/{claim}"},
                    "claimRef": {"namespace": opts.namespace, "name": claim},
                },
            }
        )
        objs.append(
            {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "metadata": {"name": claim, "namespace": opts.namespace},
                "spec": {
                    "accessModes": ["ReadWriteMany"],
                    "storageClassName": "",
                    "volumeName": pv,
                    "resources": {"requests": {"storage": "1Ti"}},
                },
            }
        )
    kube.apply(objs)


# ------------------------------------------------------------------------------- playing workloads


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


# ------------------------------------------------------------------------------- the table


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


# ------------------------------------------------------------------------------- up / down


def guard_network() -> Path:
    """From here on nothing the demo runs may reach an address off this machine (installers
    above reach the package registries; nothing after them needs to): the guard refuses it in
    this process and in the operator it starts, and logs each refusal."""
    log = state_dir() / "netguard.log"
    log.unlink(missing_ok=True)
    os.environ.update(internlm_netguard.child_env(str(log)))
    internlm_netguard.install()
    return log


def check_network(log: Path) -> None:
    refused = internlm_netguard.read_log(str(log))
    if refused:
        lines = [f"{r['argv'][0]}: {r['event']} {r['target']}" for r in refused[:10]]
        raise DemoError(
            f"{len(refused)} attempt(s) to reach an address off this machine ({log}):\n  "
            + "\n  ".join(lines)
        )


def up(opts: Options) -> int:
    t0 = time.monotonic()
    if opts.setup:
        say("Checking what is installed")
        ensure_installed(opts)
    if opts.real:
        try:  # before the guard: a cold build installs from the package registries
            built = demo_real.build_images(say, note)
        except RuntimeError as e:
            raise DemoError(str(e)) from e
    guard = guard_network()
    archives: dict[str, Path] = {}
    if opts.real:
        try:
            archives = built
            demo_real.cluster_up(say, note, state_dir())
            demo_real.import_images({n: archives[n] for n in demo_real.realchain.IMAGES}, say, note)
        except RuntimeError as e:
            raise DemoError(str(e)) from e
        kube = Kube(localcluster.STATE / "kubeconfig")
        opts.extra_set = [*demo_real.helm_sets(), *opts.extra_set]
    else:
        kube = cluster_up()
    helm_install(kube, opts)
    if opts.real:
        try:
            demo_real.storage(kube, opts.namespace, state_dir(), say, note)
        except RuntimeError as e:
            raise DemoError(str(e)) from e
    else:
        pipeline_storage(kube, opts)
    op = start_operator(kube, opts)
    try:
        objs = drive(kube, opts, op, archives)
        answers = real_answers(kube, opts) if opts.real else []
    except BaseException:
        note("operator log (last lines):\n" + op.tail(40))
        raise
    finally:
        op.stop()
        check_network(guard)
    if opts.real:
        return real_summary(kube, opts, objs, answers, time.monotonic() - t0)
    agent = next(o for o in objs if o["kind"] == "Agent")
    endpoint = (agent.get("status") or {}).get("endpoint") or "(none reported)"
    lineage = " -> ".join(
        f"{e.get('kind')}/{e.get('name')}" for e in (agent.get("status") or {}).get("lineage") or []
    )
    say(f"Done in {time.monotonic() - t0:.0f}s: every resource is Complete or Ready.")
    note("network guard: no connection attempt off this machine (demo and operator)")
    print(f"Agent endpoint: {endpoint}")
    if lineage:
        print(f"Agent lineage:  {lineage} -> Agent/{agent['metadata']['name']}")
    note(
        f"explore: {kubectl_binary()} --kubeconfig {kube.kubeconfig} get internlm -n "
        f"{opts.namespace}"
    )
    note("remove everything: make demo-down")
    return 0


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


def stop_local_operator(release: str) -> None:
    pid_file = STATE / f"operator-{release}.pid"
    try:
        pid = int(pid_file.read_text())
    except (OSError, ValueError):
        return
    if localcluster.alive(pid):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGTERM)
    pid_file.unlink(missing_ok=True)


def down(opts: Options, keep_cluster: bool = False) -> int:
    stop_local_operator(opts.release)
    started_here = (STATE / "started-cluster").exists()
    if not localcluster.healthy():
        say("The local cluster is not running: nothing to uninstall")
    else:
        kube = Kube(localcluster.STATE / "kubeconfig")
        say(f"Deleting the pipeline in {opts.namespace}")
        kube.kubectl(
            "delete",
            ",".join(PLURALS.values()),
            "--all",
            "-n",
            opts.namespace,
            "--ignore-not-found",
            "--wait=false",
            check=False,
        )
        if os.access(helm_binary(), os.X_OK):
            say(f"helm uninstall {opts.release} -n {opts.operator_namespace}")
            kube.helm(
                "uninstall", opts.release, "-n", opts.operator_namespace, "--wait", check=False
            )
        say(
            f"Deleting namespaces {opts.namespace}, {opts.operator_namespace} and the demo's "
            "PersistentVolumes"
        )
        kube.kubectl(
            "delete",
            "namespace",
            opts.namespace,
            opts.operator_namespace,
            "--ignore-not-found",
            "--wait=false",
            check=False,
        )
        kube.kubectl(
            "delete",
            "pv",
            "-l",
            f"internlm.io/demo-namespace={opts.namespace}",
            "--ignore-not-found",
            "--wait=false",
            check=False,
        )
        if started_here and not keep_cluster:
            say("Stopping the local cluster the demo started (make cluster-down)")
            localcluster.main(["down"])
    if not keep_cluster:
        shutil.rmtree(STATE, ignore_errors=True)
    say("Demo removed")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("command", choices=["up", "down"])
    ap.add_argument("--release", default="internlm-operator")
    ap.add_argument("--operator-namespace", default="internlm-system")
    ap.add_argument("--namespace", default="internlm-demo", help="where the pipeline runs")
    ap.add_argument(
        "--namespaced",
        action="store_true",
        help="install with watchNamespaces={NAMESPACE} (a Role there, nothing else) instead "
        "of the chart's default, all namespaces",
    )
    ap.add_argument(
        "--resync-seconds", type=float, default=3.0, help="operator.resyncSeconds for the demo"
    )
    ap.add_argument(
        "--real",
        action="store_true",
        help="run the chain for real on the local cluster's real node (needs root; "
        "e2e/demo_real.py)",
    )
    ap.add_argument(
        "--timeout",
        type=float,
        default=None,
        help="seconds for the pipeline (default 600, real 2400)",
    )
    ap.add_argument(
        "--run-seconds",
        type=float,
        default=3.0,
        help="how long a simulated training/eval pod runs before it exits",
    )
    ap.add_argument("--no-setup", action="store_true", help="do not run make venv / make binaries")
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        dest="extra_set",
        help="extra helm --set value (repeatable)",
    )
    ap.add_argument(
        "--keep-cluster", action="store_true", help="down: leave the local cluster running"
    )
    a = ap.parse_args(argv)
    opts = Options(
        release=a.release,
        operator_namespace=a.operator_namespace,
        namespace=a.namespace,
        namespaced=a.namespaced,
        resync_seconds=a.resync_seconds,
        timeout=a.timeout if a.timeout is not None else (2400 if a.real else 600),
        run_seconds=a.run_seconds,
        setup=not a.no_setup,
        extra_set=a.extra_set,
        real=a.real,
    )
    try:
        if a.command == "up":
            return up(opts)
        return down(opts, keep_cluster=a.keep_cluster)
    except DemoError as e:
        print(f"demo: error: {e}", file=sys.stderr)
        return 1
    except subprocess.CalledProcessError as e:
        print(f"demo: error: {' '.join(map(str, e.cmd))} failed ({e.returncode})", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ndemo: interrupted; `make demo-down` removes what was created", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
