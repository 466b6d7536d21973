"""Setting up ``make demo``: the Python environment and binaries, the local cluster, the chart
and the pipeline's storage, and the guard that keeps the demo on this machine."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from demo_base import (
    CHART,
    CRD_NAMES,
    HERE,
    OPERATOR_BIN,
    PIPELINE_CLAIMS,
    REPO,
    DemoError,
    Kube,
    helm_binary,
    note,
    say,
    state_dir,
)

sys.path.insert(0, str(HERE / "cluster"))
sys.path.insert(0, str(HERE / "netguard"))

import internlm_netguard
import localcluster


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
