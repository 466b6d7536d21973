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
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from demo_base import (
    BATCH,
    CHART,
    CRD_NAMES,
    EXIT_CODE,
    EXIT_MESSAGE,
    HERE,
    KINDS,
    OPERATOR_BIN,
    PIPELINE,
    PIPELINE_CLAIMS,
    PLURALS,
    REPO,
    STATE,
    VENV_PY,
    DemoError,
    Kube,
    helm_binary,
    kubectl_binary,
    note,
    require_helm,
    run,
    say,
    state_dir,
)
from demo_operator import (
    LocalOperator,
    chart_deployment,
    free_port,
    operator_command,
    service_account_kubeconfig,
    start_operator,
    stop_local_operator,
)
from demo_setup import (
    Options,
    adopt_crds,
    check_network,
    cluster_up,
    crd_owner,
    crds_exist,
    ensure_installed,
    ensure_namespace,
    guard_network,
    helm_install,
    pipeline_storage,
    release_exists,
)
from demo_watch import (
    done,
    drive,
    failed,
    progress,
    real_answers,
    real_summary,
    resources,
    score,
    table,
    watch,
)
from demo_workloads import play_workloads, workload_result

sys.path.insert(0, str(HERE / "cluster"))

import demo_real
import localcluster

__all__ = [
    "BATCH",
    "CHART",
    "CRD_NAMES",
    "EXIT_CODE",
    "EXIT_MESSAGE",
    "HERE",
    "KINDS",
    "OPERATOR_BIN",
    "PIPELINE",
    "PIPELINE_CLAIMS",
    "PLURALS",
    "REPO",
    "STATE",
    "VENV_PY",
    "DemoError",
    "Kube",
    "LocalOperator",
    "Options",
    "adopt_crds",
    "chart_deployment",
    "check_network",
    "cluster_up",
    "crd_owner",
    "crds_exist",
    "done",
    "down",
    "drive",
    "ensure_installed",
    "ensure_namespace",
    "failed",
    "free_port",
    "guard_network",
    "helm_binary",
    "helm_install",
    "kubectl_binary",
    "main",
    "note",
    "operator_command",
    "pipeline_storage",
    "play_workloads",
    "progress",
    "real_answers",
    "real_summary",
    "release_exists",
    "require_helm",
    "resources",
    "run",
    "say",
    "score",
    "service_account_kubeconfig",
    "start_operator",
    "state_dir",
    "stop_local_operator",
    "table",
    "up",
    "watch",
    "workload_result",
]


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
