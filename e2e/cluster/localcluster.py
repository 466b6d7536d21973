#!/usr/bin/env python3
"""A real, local Kubernetes control plane with simulated GPU nodes, for tests and the demo.

etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok (playing the kubelet of
the simulated nodes) run as local processes bound to 127.0.0.1. Binaries come from the cache
that ``build-binaries.sh`` fills; state (certificates, etcd data, logs, pids, kubeconfig) lives
in ``e2e/.cluster/``.

    localcluster.py up       start (a running healthy cluster is reused; a stale one is cleaned)
    localcluster.py up --real-node   the same, plus one real kubelet node (realnode.py)
    localcluster.py up --kueue       the same, plus real Kueue run out of cluster (localkueue.py)
    localcluster.py down     stop every process it started (real node, Kueue too), remove the state
    localcluster.py status   say what runs
    localcluster.py restart-apiserver   kill the API server and start it again in place

Real-node mode (``--real-node`` or ``INTERNLM_REAL_NODE=1``, needs root): the API server binds
and advertises REAL_NODE_IP (a /32 on ``lo``) so pods reach it through the ``kubernetes``
Service, the simulated nodes carry the taint ``internlm.io/simulated=true:NoSchedule`` (pods
land on the real node unless they tolerate it), and ``realnode.py`` brings up ``real-0``.

Standard library only, so ``down`` works even without the project's virtualenv.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
STATE = Path(os.environ.get("INTERNLM_CLUSTER_STATE", REPO / "e2e" / ".cluster"))
CACHE = Path(os.environ.get("INTERNLM_CACHE", Path.home() / ".cache" / "internlm-operator"))
PORT_BASE = int(os.environ.get("INTERNLM_CLUSTER_PORT_BASE", "16400"))

# Order matters: each component needs the ones before it.
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")

# Real-node mode: the API server's address (on lo), also the real node's IP.
REAL_NODE_IP = "10.87.255.1"
REAL_NODE_ENV = os.environ.get("INTERNLM_REAL_NODE", "") not in ("", "0")
SIMULATED_TAINT = {"key": "internlm.io/simulated", "value": "true", "effect": "NoSchedule"}
# One simulated GPU node in real-node mode (the real node is where pods run; fewer kwok nodes
# leave the 2 cores to it); four otherwise.
GPU_NODES = int(os.environ.get("INTERNLM_CLUSTER_GPU_NODES", "1" if REAL_NODE_ENV else "4"))
# Simulated pods get addresses inside 127.0.0.0/8: every one is local on Linux (a test can bind
# it, and an operator dialling it never leaves the machine). Service ClusterIPs stay in
# SERVICE_CIDR; only a kube-proxy on this machine (the real node) ever makes them answer.
SIM_POD_CIDR = "127.64.0.0/16"
SERVICE_CIDR = "10.96.0.0/16"
GPUS_PER_NODE = 8


def real_node_mode() -> bool:
    """Whether this state directory's cluster runs in real-node mode (recorded by ``up``)."""
    return (STATE / "real-node-mode").exists()


def api_host() -> str:
    return REAL_NODE_IP if real_node_mode() else "127.0.0.1"


def lo_has(ip: str) -> bool:
    res = subprocess.run(
        ["ip", "-o", "addr", "show", "dev", "lo"], capture_output=True, text=True, check=False
    )
    return f" {ip}/" in res.stdout


def log(msg: str) -> None:
    print(f"[localcluster] {msg}", file=sys.stderr, flush=True)


class ClusterError(RuntimeError):
    """A problem the user can act on; printed without a traceback."""


@dataclass(frozen=True)
class Ports:
    etcd_client: int
    etcd_peer: int
    apiserver: int
    controller_manager: int
    scheduler: int
    kwok: int

    @classmethod
    def from_base(cls, base: int) -> Ports:
        return cls(base, base + 1, base + 43, base + 57, base + 59, base + 80)

    def named(self) -> dict[str, int]:
        return {
            "etcd (client)": self.etcd_client,
            "etcd (peer)": self.etcd_peer,
            "kube-apiserver": self.apiserver,
            "kube-controller-manager": self.controller_manager,
            "kube-scheduler": self.scheduler,
            "kwok": self.kwok,
        }


PORTS = Ports.from_base(PORT_BASE)


def versions() -> dict[str, str]:
    out: dict[str, str] = {}
    for line in (HERE / "versions.env").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            out[key] = value
    return out


def binaries() -> dict[str, Path]:
    v = versions()
    k8s = CACHE / "bin" / f"kubernetes-{v['KUBERNETES_VERSION']}"
    return {
        "etcd": CACHE / "bin" / f"etcd-{v['ETCD_VERSION']}" / "etcd",
        "kube-apiserver": k8s / "kube-apiserver",
        "kube-controller-manager": k8s / "kube-controller-manager",
        "kube-scheduler": k8s / "kube-scheduler",
        "kubectl": k8s / "kubectl",
        "kwok": CACHE / "bin" / f"kwok-{v['KWOK_VERSION']}" / "kwok",
    }


def check_binaries() -> dict[str, Path]:
    bins = binaries()
    missing = [f"{name} ({path})" for name, path in bins.items() if not os.access(path, os.X_OK)]
    if missing:
        raise ClusterError(
            "missing cluster binaries: " + ", ".join(missing) + "\n"
            "build them with `bash e2e/cluster/build-binaries.sh` (or `make binaries`): "
            "~12 min cold on 2 cores, a no-op once cached"
        )
    return bins


# ---------------------------------------------------------------------------- processes


def pid_file(name: str) -> Path:
    return STATE / "pids" / f"{name}.pid"


def read_pid(name: str) -> int | None:
    try:
        return int(pid_file(name).read_text().strip())
    except (OSError, ValueError):
        return None


def alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie still answers kill(0); treat it as gone.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def ours(pid: int) -> bool:
    """Only kill a pid if it still runs one of our binaries (pids get reused)."""
    try:
        exe = os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return False
    return str(CACHE) in exe


def start(name: str, argv: list[str]) -> int:
    (STATE / "logs").mkdir(parents=True, exist_ok=True)
    (STATE / "pids").mkdir(parents=True, exist_ok=True)
    logf = open(STATE / "logs" / f"{name}.log", "ab")  # noqa: SIM115 - handed to the child
    proc = subprocess.Popen(
        argv,
        stdout=logf,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        cwd=STATE,
        start_new_session=True,  # survive the launcher; stopped only by `down`
    )
    pid_file(name).write_text(str(proc.pid))
    return proc.pid


def stop_all() -> list[str]:
    stopped = []
    for name in reversed(COMPONENTS):
        pid = read_pid(name)
        if alive(pid) and pid is not None and ours(pid):
            # kube-apiserver lingers > 10 s after SIGTERM; nothing here needs a graceful stop.
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            except PermissionError:
                os.kill(pid, signal.SIGKILL)
            stopped.append(name)
    deadline = time.monotonic() + 10
    for name in COMPONENTS:
        pid = read_pid(name)
        while alive(pid) and pid is not None and ours(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
    return stopped


def tail(name: str, lines: int = 15) -> str:
    try:
        text = (STATE / "logs" / f"{name}.log").read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(text[-lines:])


# ---------------------------------------------------------------------------- certificates


def openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=STATE / "pki")


def make_pki(extra_san: str = "") -> None:
    pki = STATE / "pki"
    pki.mkdir(parents=True, exist_ok=True)
    if not shutil.which("openssl"):
        raise ClusterError("openssl is required to make the cluster's certificates")
    openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "3650",
        "-subj",
        "/CN=internlm-local-ca",
    )
    (pki / "server.ext").write_text(
        "subjectAltName=IP:127.0.0.1,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,"
        "DNS:kubernetes.default,DNS:kubernetes.default.svc,"
        f"DNS:kubernetes.default.svc.cluster.local{extra_san}\n"
        "extendedKeyUsage=serverAuth\n"
    )
    (pki / "client.ext").write_text("extendedKeyUsage=clientAuth\n")

    def cert(name: str, subj: str, ext: str) -> None:
        openssl(
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            f"{name}.key",
            "-out",
            f"{name}.csr",
            "-subj",
            subj,
        )
        openssl(
            "x509",
            "-req",
            "-in",
            f"{name}.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            f"{name}.crt",
            "-days",
            "3650",
            "-extfile",
            ext,
        )

    cert("apiserver", "/CN=kube-apiserver", "server.ext")
    # One admin identity (system:masters) for the control-plane components and the tests;
    # the operator under test impersonates its ServiceAccount to prove its RBAC.
    cert("admin", "/O=system:masters/CN=internlm-admin", "client.ext")
    openssl("genrsa", "-out", "sa.key", "2048")
    openssl("rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub")


def write_kubeconfig(path: Path) -> None:
    pki = STATE / "pki"
    path.write_text(
        f"""apiVersion: v1
kind: Config
clusters:
- name: internlm-local
  cluster:
    server: https://{api_host()}:{PORTS.apiserver}
    certificate-authority: {pki / "ca.crt"}
users:
- name: internlm-admin
  user:
    client-certificate: {pki / "admin.crt"}
    client-key: {pki / "admin.key"}
contexts:
- name: internlm-local
  context:
    cluster: internlm-local
    user: internlm-admin
current-context: internlm-local
"""
    )


# ---------------------------------------------------------------------------- health


def api_get(path: str, timeout: float = 2.0) -> tuple[int, str]:
    pki = STATE / "pki"
    ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    ctx.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
    url = f"https://{api_host()}:{PORTS.apiserver}{path}"
    try:
        with urllib.request.urlopen(url, context=ctx, timeout=timeout) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")
    except (OSError, ssl.SSLError) as e:
        return 0, str(e)


def wait_for(what: str, check, timeout: float, component: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pid = read_pid(component)
        if not alive(pid):
            raise ClusterError(f"{component} exited while waiting for {what}:\n{tail(component)}")
        if check():
            return
        time.sleep(0.1)
    raise ClusterError(f"timed out after {timeout:.0f}s waiting for {what}:\n{tail(component)}")


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex((host, port)) == 0


def healthy() -> bool:
    if not all(alive(read_pid(c)) for c in COMPONENTS):
        return False
    code, _ = api_get("/readyz", timeout=2)
    return code == 200


# ---------------------------------------------------------------------------- nodes


def gpu_labels(i: int) -> dict[str, str]:
    """The labels of GPU node ``i`` (simulated, or the real node, which advertises the same)."""
    return {
        "nvidia.com/gpu.present": "true",
        "nvidia.com/gpu.product": "NVIDIA-H200",
        "nvidia.com/gpu.count": str(GPUS_PER_NODE),
        "nvidia.com/gpu.memory": "143771",
        "node.kubernetes.io/instance-type": "p5en.48xlarge",
        "topology.kubernetes.io/zone": f"local-{'ab'[i % 2]}",
    }


def node_manifests(taint: bool = False) -> list[dict]:
    nodes = []
    for i in range(GPU_NODES):
        nodes.append(
            node(
                f"gpu-node-{i}",
                gpu_labels(i),
                {
                    "cpu": "192",
                    "memory": "2048Gi",
                    "ephemeral-storage": "30Ti",
                    "pods": "110",
                    "nvidia.com/gpu": str(GPUS_PER_NODE),
                },
            )
        )
    nodes.append(
        node(
            "cpu-node-0",
            {
                "node.kubernetes.io/instance-type": "m7i.8xlarge",
                "topology.kubernetes.io/zone": "local-a",
            },
            {"cpu": "32", "memory": "128Gi", "ephemeral-storage": "1Ti", "pods": "110"},
        )
    )
    if taint:
        for n in nodes:
            n["spec"]["taints"] = [SIMULATED_TAINT]
    return nodes


def node(name: str, labels: dict[str, str], capacity: dict[str, str]) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {
                "type": "kwok",
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                **labels,
            },
            "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
        },
        "spec": {},
        "status": {"capacity": capacity, "allocatable": capacity},
    }


def kubectl(*args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(binaries()["kubectl"]), "--kubeconfig", str(STATE / "kubeconfig"), *args],
        input=input,
        text=True,
        capture_output=True,
        check=False,
    )


def nodes_ready() -> bool:
    res = kubectl("get", "nodes", "-o", "json")
    if res.returncode != 0:
        return False
    items = json.loads(res.stdout)["items"]
    ready = [
        n
        for n in items
        if any(
            c["type"] == "Ready" and c["status"] == "True"
            for c in n.get("status", {}).get("conditions", [])
        )
    ]
    return len([n for n in ready if n["metadata"].get("labels", {}).get("type") == "kwok"]) >= (
        GPU_NODES + 1
    )


# ---------------------------------------------------------------------------- commands


def apiserver_argv(bins: dict[str, Path], real_node: bool) -> list[str]:
    """The kube-apiserver's command line (``up`` and ``restart_apiserver`` start the same)."""
    pki = STATE / "pki"
    return [
        str(bins["kube-apiserver"]),
        f"--etcd-servers=http://127.0.0.1:{PORTS.etcd_client}",
        f"--bind-address={api_host()}",
        f"--advertise-address={api_host()}",
        f"--secure-port={PORTS.apiserver}",
        f"--tls-cert-file={pki / 'apiserver.crt'}",
        f"--tls-private-key-file={pki / 'apiserver.key'}",
        f"--client-ca-file={pki / 'ca.crt'}",
        "--authorization-mode=RBAC",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
        f"--service-account-key-file={pki / 'sa.pub'}",
        f"--service-account-signing-key-file={pki / 'sa.key'}",
        "--allow-privileged=true",
        *(
            [
                # logs/exec/port-forward reach the real kubelet at its node IP, as
                # the admin identity (the kubelet trusts the cluster CA).
                "--kubelet-preferred-address-types=InternalIP,Hostname",
                f"--kubelet-client-certificate={pki / 'admin.crt'}",
                f"--kubelet-client-key={pki / 'admin.key'}",
            ]
            if real_node
            else []
        ),
        "--profiling=false",
        "--v=1",
    ]


def up(real_node: bool = False) -> None:
    t0 = time.monotonic()
    if healthy():
        if real_node and not real_node_mode():
            raise ClusterError(
                f"a cluster without a real node runs from {STATE}; stop it (`down`) first, "
                "or use another INTERNLM_CLUSTER_STATE and INTERNLM_CLUSTER_PORT_BASE"
            )
        if real_node_mode():
            import realnode

            realnode.up()
        log(f"already running; kubeconfig: {STATE / 'kubeconfig'}")
        return
    if any(read_pid(c) for c in COMPONENTS) or STATE.exists():
        tear_down_kueue()
        tear_down_real_node()
        stopped = stop_all()
        log("cleaning up a stale cluster" + (f" (stopped {', '.join(stopped)})" if stopped else ""))
        release_real_node_ip()
        shutil.rmtree(STATE, ignore_errors=True)
    bins = check_binaries()
    if real_node:
        import realnode

        realnode.check_prerequisites()
        if lo_has(REAL_NODE_IP):
            raise ClusterError(
                f"{REAL_NODE_IP} is already on lo: another real-node cluster runs on this host "
                "(only one can); stop it with its own `localcluster.py down`"
            )
    busy = [f"{what} :{port}" for what, port in PORTS.named().items() if port_open(port)]
    if busy:
        raise ClusterError(
            "ports already in use on 127.0.0.1: " + ", ".join(busy) + "\n"
            "stop whatever holds them, or pick other ports with INTERNLM_CLUSTER_PORT_BASE=<n>"
        )
    STATE.mkdir(parents=True, exist_ok=True)
    (STATE / ".gitignore").write_text("*\n")
    if real_node and "INTERNLM_CLUSTER_GPU_NODES" not in os.environ:
        global GPU_NODES
        GPU_NODES = 1
    if real_node:
        subprocess.run(
            ["ip", "addr", "add", f"{REAL_NODE_IP}/32", "dev", "lo"],
            check=True,
            capture_output=True,
        )
        (STATE / "real-node-mode").write_text(REAL_NODE_IP + "\n")
    make_pki(f",IP:{REAL_NODE_IP}" if real_node else "")
    kubeconfig = STATE / "kubeconfig"
    write_kubeconfig(kubeconfig)
    pki = STATE / "pki"
    try:
        start(
            "etcd",
            [
                str(bins["etcd"]),
                "--name=local",
                f"--data-dir={STATE / 'etcd'}",
                f"--listen-client-urls=http://127.0.0.1:{PORTS.etcd_client}",
                f"--advertise-client-urls=http://127.0.0.1:{PORTS.etcd_client}",
                f"--listen-peer-urls=http://127.0.0.1:{PORTS.etcd_peer}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{PORTS.etcd_peer}",
                f"--initial-cluster=local=http://127.0.0.1:{PORTS.etcd_peer}",
                "--quota-backend-bytes=4294967296",
                "--unsafe-no-fsync",
                "--log-level=warn",
            ],
        )
        wait_for("etcd", lambda: port_open(PORTS.etcd_client), 20, "etcd")
        start("kube-apiserver", apiserver_argv(bins, real_node))
        wait_for(
            "kube-apiserver /readyz", lambda: api_get("/readyz")[0] == 200, 90, "kube-apiserver"
        )
        start(
            "kube-controller-manager",
            [
                str(bins["kube-controller-manager"]),
                f"--kubeconfig={kubeconfig}",
                f"--authentication-kubeconfig={kubeconfig}",
                f"--authorization-kubeconfig={kubeconfig}",
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                f"--secure-port={PORTS.controller_manager}",
                f"--service-account-private-key-file={pki / 'sa.key'}",
                f"--root-ca-file={pki / 'ca.crt'}",
                f"--cluster-signing-cert-file={pki / 'ca.crt'}",
                f"--cluster-signing-key-file={pki / 'ca.key'}",
                "--controllers=*,-nodeipam,-cloud-node-lifecycle,-service-lb-controller",
                # Simulated node loss should be noticed in seconds, not the default ~50 s.
                "--node-monitor-period=2s",
                "--node-monitor-grace-period=16s",
                "--terminated-pod-gc-threshold=1000",
                "--profiling=false",
                "--v=1",
            ],
        )
        start(
            "kube-scheduler",
            [
                str(bins["kube-scheduler"]),
                f"--kubeconfig={kubeconfig}",
                f"--authentication-kubeconfig={kubeconfig}",
                f"--authorization-kubeconfig={kubeconfig}",
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                f"--secure-port={PORTS.scheduler}",
                "--profiling=false",
                "--v=1",
            ],
        )
        start(
            "kwok",
            [
                str(bins["kwok"]),
                f"--kubeconfig={kubeconfig}",
                f"--config={HERE / 'stages.yaml'}",
                "--manage-all-nodes=false",
                "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
                f"--server-address=127.0.0.1:{PORTS.kwok}",
                f"--cidr={SIM_POD_CIDR}",
                "--node-ip=127.0.0.1",
            ],
        )
        res = kubectl(
            "apply",
            "-f",
            "-",
            input=json.dumps(
                {"apiVersion": "v1", "kind": "List", "items": node_manifests(taint=real_node)}
            ),
        )
        if res.returncode != 0:
            raise ClusterError(f"creating the simulated nodes failed: {res.stderr}")
        wait_for("simulated nodes Ready", nodes_ready, 60, "kwok")
        # Namespaced objects need their ServiceAccount before pods can be created.
        wait_for(
            "the default ServiceAccount",
            lambda: kubectl("get", "serviceaccount", "default", "-n", "default").returncode == 0,
            60,
            "kube-controller-manager",
        )
        for c in COMPONENTS:
            if not alive(read_pid(c)):
                raise ClusterError(f"{c} exited during start-up:\n{tail(c)}")
        if real_node:
            log(f"control plane up in {time.monotonic() - t0:.1f}s; starting the real node")
            import realnode

            realnode.up()
    except BaseException:
        tear_down_real_node()
        stop_all()
        release_real_node_ip()
        raise
    log(
        f"cluster up in {time.monotonic() - t0:.1f}s: {GPU_NODES} GPU nodes x "
        f"{GPUS_PER_NODE} nvidia.com/gpu + 1 CPU node"
        + (" (simulated, tainted) + real node real-0" if real_node else "")
    )
    log(f"export KUBECONFIG={kubeconfig}")


def tear_down_real_node() -> list[str]:
    """Stop this cluster's real node, if it has one, undoing all it changed on the host."""
    if not (STATE / "realnode").exists():
        return []
    import realnode

    return [f"real node ({', '.join(realnode.down()) or 'no process'})"]


def release_real_node_ip() -> None:
    if real_node_mode() and lo_has(REAL_NODE_IP):
        subprocess.run(
            ["ip", "addr", "del", f"{REAL_NODE_IP}/32", "dev", "lo"],
            check=False,
            capture_output=True,
        )


def tear_down_kueue() -> list[str]:
    """Stop this cluster's Kueue, if it has one, removing all it made (localkueue.py)."""
    if not (STATE / "kueue").exists() and not read_pid("kueue"):
        return []
    import localkueue

    localkueue.down()
    return ["kueue"]


def down() -> None:
    stopped = tear_down_kueue()
    stopped += tear_down_real_node()
    stopped += stop_all()
    release_real_node_ip()
    shutil.rmtree(STATE, ignore_errors=True)
    log("stopped " + (", ".join(stopped) if stopped else "nothing (no cluster was running)"))


def restart_apiserver(timeout: float = 90) -> float:
    """Kill the running cluster's kube-apiserver (SIGKILL, as a crash would) and start it again
    in place: the same flags, ports, certificates and etcd, so every object, token and client
    configuration stays valid; the other components keep running and reconnect. Returns the
    seconds from the kill to ``/readyz`` answering 200 again."""
    if not healthy():
        raise ClusterError(f"no healthy cluster runs from {STATE}; start one with `up` first")
    bins = check_binaries()
    t0 = time.monotonic()
    pid = read_pid("kube-apiserver")
    if pid is not None and alive(pid) and ours(pid):
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        except PermissionError:
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and (alive(pid) or port_open(PORTS.apiserver, api_host())):
        time.sleep(0.05)
    start("kube-apiserver", apiserver_argv(bins, real_node_mode()))
    wait_for(
        "kube-apiserver /readyz", lambda: api_get("/readyz")[0] == 200, timeout, "kube-apiserver"
    )
    took = time.monotonic() - t0
    log(f"kube-apiserver restarted in {took:.1f}s")
    return took


def status() -> int:
    for c in COMPONENTS:
        pid = read_pid(c)
        print(f"{c:24} {'running pid ' + str(pid) if alive(pid) else 'not running'}")
    ok = healthy()
    print(f"{'api /readyz':24} {'ok' if ok else 'not ready'}")
    if ok:
        print(f"kubeconfig               {STATE / 'kubeconfig'}")
    if real_node_mode() or (STATE / "realnode").exists():
        import realnode

        print(f"{'mode':24} real node (API server on {REAL_NODE_IP}:{PORTS.apiserver})")
        ok = realnode.status() == 0 and ok
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["up", "down", "status", "restart-apiserver"])
    parser.add_argument(
        "--real-node",
        action="store_true",
        default=REAL_NODE_ENV,
        help="also run one real kubelet node, real-0 (default: INTERNLM_REAL_NODE=1); needs root",
    )
    parser.add_argument(
        "--kueue",
        action="store_true",
        help="also run real Kueue against it (localkueue.py; build-binaries.sh kueue builds it)",
    )
    args = parser.parse_args(argv)
    try:
        if args.command == "up":
            up(real_node=args.real_node)
            if args.kueue:
                import localkueue

                localkueue.up()
        elif args.command == "down":
            down()
        elif args.command == "restart-apiserver":
            restart_apiserver()
        else:
            return status()
    except ClusterError as e:
        log(f"error: {e}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
