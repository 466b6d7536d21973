#!/usr/bin/env python3
"""One real node, ``real-0``, beside the simulated ones: a kubelet that runs real containers.

containerd (Debian's, with its own config, socket and root under the cluster's state
directory), the kubelet and kube-proxy (built by ``build-binaries.sh``), CoreDNS with no
upstream, and a CNI bridge ``cni-local0`` (10.88.0.0/16). The node's IP is 10.87.255.1/32 on
``lo``; the control plane must run in real-node mode (``localcluster.py up --real-node`` or
``INTERNLM_REAL_NODE=1``), which binds the API server there and brings this node up itself.

    realnode.py up              start the node (the control plane must be up, in real-node mode)
    realnode.py down            stop it and undo everything it changed on the host
    realnode.py status          say what runs
    realnode.py import <tar>    import an image archive (docker-archive or oci-archive)
    realnode.py rmi <ref>       remove an imported image (frees its snapshots)
    realnode.py base-image      build (or reuse) the cached Debian minbase image archive

Nothing leaves the machine: pods have no masquerading and forwarded pod traffic to anything
outside 10.88.0.0/16 is dropped, CoreDNS answers NXDOMAIN for every name outside cluster.local,
and images are imported, never pulled (the pod sandbox is ``pause.c``). Needs root.
Standard library only, like localcluster.py.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import localcluster as lc

NODE_NAME = "real-0"
NODE_IP = lc.REAL_NODE_IP
POD_CIDR = "10.88.0.0/16"
BRIDGE = "cni-local0"
GATEWAY = "10.88.0.1"  # the bridge's address: CoreDNS listens here
NODE_DIR = lc.STATE / "realnode"
GUARD_COMMENT = "internlm-realnode: keep pod traffic on this machine"

IMAGES = lc.CACHE / "images"
# Shared with the image builds (images/**): a docker-archive of `debootstrap --variant=minbase
# bookworm`, tagged BASE_REF, command /bin/bash.
BASE_ARCHIVE = IMAGES / "debian-bookworm-minbase.tar"
BASE_REF = "localhost/debian:bookworm-minbase"
PAUSE_REF = "localhost/internlm/pause:local"

KUBELET_PORT = lc.PORT_BASE + 50
KUBELET_HEALTHZ_PORT = lc.PORT_BASE + 48
PROXY_METRICS_PORT = lc.PORT_BASE + 49
PROXY_HEALTHZ_PORT = lc.PORT_BASE + 56

COMPONENTS = ("containerd", "kubelet", "kube-proxy", "coredns")
# Paths the tools hard-code outside the state directory; removed by `down` unless they existed
# before `up`. (/etc/cni is buildah's, not the node's: images are made here without buildah.)
HOST_PATHS = (
    "/var/lib/kubelet",
    "/var/log/containers",
    "/var/log/pods",
    "/var/lib/cni",
    "/run/containerd",
    "/run/netns",
    "/var/lib/containerd",
    "/opt/containerd",
)
MOUNT_PREFIXES = ("/run/netns", "/run/containerd", "/var/lib/kubelet")
OUR_EXES = {"containerd", "containerd-shim-runc-v2", "kubelet", "kube-proxy", "coredns", "runc"}
SYSCTL_DIRS = ("kernel", "vm", "net/core", "net/ipv4", "net/ipv6", "net/bridge", "net/netfilter")
SYSCTL_VOLATILE = ("kernel/random/", "kernel/ns_last_pid", "kernel/hostname", "kernel/domainname")


def log(msg: str) -> None:
    print(f"[realnode] {msg}", file=sys.stderr, flush=True)


class NodeError(lc.ClusterError):
    pass


def run(*argv: str, check: bool = True, timeout: float = 60, **kw) -> subprocess.CompletedProcess:  # type: ignore[no-untyped-def]
    res = subprocess.run(
        list(argv), capture_output=True, text=True, timeout=timeout, check=False, **kw
    )
    if check and res.returncode != 0:
        raise NodeError(f"{' '.join(argv)} failed ({res.returncode}): {res.stderr}{res.stdout}")
    return res


def binaries() -> dict[str, Path]:
    v = lc.versions()
    k8s = lc.CACHE / "bin" / f"kubernetes-{v['KUBERNETES_VERSION']}"
    return {
        "kubelet": k8s / "kubelet",
        "kube-proxy": k8s / "kube-proxy",
        "coredns": lc.CACHE / "bin" / f"coredns-{v['COREDNS_VERSION']}" / "coredns",
        "containerd": Path(shutil.which("containerd") or "/usr/bin/containerd"),
        "ctr": Path(shutil.which("ctr") or "/usr/bin/ctr"),
        "runc": Path(shutil.which("runc") or "/usr/sbin/runc"),
        "cni bridge": Path("/usr/lib/cni/bridge"),
        "iptables": Path(shutil.which("iptables") or "/usr/sbin/iptables"),
        "umoci": Path(shutil.which("umoci") or "/usr/bin/umoci"),
        "skopeo": Path(shutil.which("skopeo") or "/usr/bin/skopeo"),
        "gcc": Path(shutil.which("gcc") or "/usr/bin/gcc"),
    }


def check_prerequisites() -> dict[str, Path]:
    if os.geteuid() != 0:
        raise NodeError("the real node needs root (containerd, mounts, iptables)")
    bins = binaries()
    missing = [f"{n} ({p})" for n, p in bins.items() if not os.access(p, os.X_OK)]
    if missing:
        raise NodeError(
            "missing for the real node: " + ", ".join(missing) + "\n"
            "kubelet/kube-proxy/coredns: `bash e2e/cluster/build-binaries.sh all`; the rest: "
            "apt-get install containerd runc containernetworking-plugins iptables conntrack "
            "umoci skopeo gcc"
        )
    return bins


# ---------------------------------------------------------------------------- processes


def pid_file(name: str) -> Path:
    return NODE_DIR / "pids" / f"{name}.pid"


def read_pid(name: str) -> int | None:
    try:
        return int(pid_file(name).read_text().strip())
    except (OSError, ValueError):
        return None


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def ours(pid: int | None) -> bool:
    """A process of this node: one of the node's binaries, started with our state directory."""
    if not pid or not lc.alive(pid):
        return False
    try:
        exe = os.path.basename(os.readlink(f"/proc/{pid}/exe"))
    except OSError:
        return False
    return exe.removesuffix(" (deleted)") in OUR_EXES and str(NODE_DIR) in cmdline(pid)


def start(name: str, argv: list[str]) -> int:
    (NODE_DIR / "logs").mkdir(parents=True, exist_ok=True)
    (NODE_DIR / "pids").mkdir(parents=True, exist_ok=True)
    logf = open(NODE_DIR / "logs" / f"{name}.log", "ab")  # noqa: SIM115 - handed to the child
    proc = subprocess.Popen(
        argv,
        stdout=logf,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        cwd=NODE_DIR,
        start_new_session=True,
    )
    pid_file(name).write_text(str(proc.pid))
    return proc.pid


def tail(name: str, lines: int = 15) -> str:
    try:
        text = (NODE_DIR / "logs" / f"{name}.log").read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(text[-lines:])


def wait_for(what: str, check, timeout: float, component: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not lc.alive(read_pid(component)):
            raise NodeError(f"{component} exited while waiting for {what}:\n{tail(component)}")
        if check():
            return
        time.sleep(0.1)
    raise NodeError(f"timed out after {timeout:.0f}s waiting for {what}:\n{tail(component)}")


def kill_and_wait(pids: list[int], sig: int = signal.SIGTERM, timeout: float = 10) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(lc.alive(p) for p in pids):
        time.sleep(0.05)
    left = [p for p in pids if lc.alive(p)]
    if left and sig != signal.SIGKILL:
        kill_and_wait(left, signal.SIGKILL, timeout)


def stop(name: str, timeout: float = 10) -> bool:
    pid = read_pid(name)
    if not ours(pid):
        return False
    assert pid is not None
    kill_and_wait([pid], signal.SIGTERM, timeout)
    return True


def all_pids() -> Iterator[int]:
    for d in os.listdir("/proc"):
        if d.isdigit():
            yield int(d)


def stray_processes() -> list[int]:
    """Every process this node left: its binaries (by state directory) and whatever runs in the
    kubepods cgroups (the containers and their sandboxes)."""
    me = os.getpid()
    pids = {p for p in all_pids() if p != me and ours(p)}
    for cg in cgroup_dirs():
        with contextlib.suppress(OSError):
            pids.update(int(x) for x in (cg / "cgroup.procs").read_text().split())
    pids.discard(me)
    return sorted(p for p in pids if lc.alive(p))


# ---------------------------------------------------------------------------- host state


def cgroup_roots() -> list[Path]:
    root = Path("/sys/fs/cgroup")
    if (root / "cgroup.controllers").exists():  # cgroup v2 only
        return [root]
    return [p for p in sorted(root.iterdir()) if p.is_dir() and not p.is_symlink()]


def cgroup_dirs() -> list[Path]:
    """The node's cgroups, deepest first."""
    out: list[Path] = []
    for r in cgroup_roots():
        for name in ("kubepods", "kubepods.slice"):
            top = r / name
            if top.is_dir():
                for dirpath, _dirs, _files in os.walk(top, topdown=False):
                    out.append(Path(dirpath))
    return out


def mounts() -> list[str]:
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4]
        points.append(re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), point))
    return points


def our_mounts() -> list[str]:
    prefixes = (str(NODE_DIR), *MOUNT_PREFIXES)
    hits = [m for m in mounts() if any(m == p or m.startswith(p + "/") for p in prefixes)]
    return sorted(hits, key=lambda m: (-m.count("/"), m))


def sysctl_snapshot() -> dict[str, str]:
    """Writable sysctls the node's tools may change (kubelet, kube-proxy, the CNI bridge)."""
    out: dict[str, str] = {}
    base = Path("/proc/sys")
    for d in SYSCTL_DIRS:
        for dirpath, _dirs, files in os.walk(base / d):
            rel_dir = os.path.relpath(dirpath, base)
            for f in files:
                rel = f"{rel_dir}/{f}"
                if rel.startswith(SYSCTL_VOLATILE) or ("/conf/" in rel and BRIDGE in rel):
                    continue
                if "/conf/veth" in rel or "/neigh/veth" in rel or f"/neigh/{BRIDGE}" in rel:
                    continue
                p = Path(dirpath) / f
                try:
                    if not p.stat().st_mode & 0o200:
                        continue
                    out[rel] = p.read_text().strip()
                except OSError:
                    continue
    return out


def restore_sysctls(before: dict[str, str]) -> list[str]:
    restored = []
    # ip_forward first: writing it resets every interface's forwarding flag.
    keys = sorted(before, key=lambda k: (k != "net/ipv4/ip_forward", k))
    for key in keys:
        p = Path("/proc/sys") / key
        try:
            if p.read_text().strip() == before[key]:
                continue
            p.write_text(before[key] + "\n")
            restored.append(key)
        except OSError:
            continue
    return restored


def iptables_rules(binary: str) -> dict[str, list[str]]:
    """``<binary>-save`` by table: the lines (chain declarations and rules)."""
    res = run(f"{binary}-save", check=False)
    tables: dict[str, list[str]] = {}
    current = ""
    for line in res.stdout.splitlines():
        if line.startswith("*"):
            current = line[1:]
            tables[current] = []
        elif line.startswith((":", "-A")) and current:
            tables[current].append(line)
    return tables


def ours_chain(chain: str) -> bool:
    return chain.startswith(("KUBE-", "CNI-"))


def clean_iptables() -> None:
    for binary in ("iptables", "ip6tables"):
        if not shutil.which(binary):
            continue
        for table, lines in iptables_rules(binary).items():
            chains = [ln[1:].split()[0] for ln in lines if ln.startswith(":")]
            for ln in lines:
                if not ln.startswith("-A"):
                    continue
                args = shlex.split(ln)
                chain = args[1]
                if ours_chain(chain):
                    continue
                target = args[args.index("-j") + 1] if "-j" in args else ""
                if ours_chain(target) or GUARD_COMMENT in args:
                    run(binary, "-w", "-t", table, "-D", *args[1:], check=False)
            for chain in chains:
                if ours_chain(chain):
                    run(binary, "-w", "-t", table, "-F", chain, check=False)
            for chain in chains:
                if ours_chain(chain):
                    run(binary, "-w", "-t", table, "-X", chain, check=False)


def link_exists(name: str) -> bool:
    return Path(f"/sys/class/net/{name}").exists()


# ---------------------------------------------------------------------------- images


def mirror() -> str:
    """Debian's mirror as this machine's apt knows it (never hard-coded)."""
    src = Path("/etc/apt/sources.list.d/debian.sources")
    if src.exists():
        for line in src.read_text().splitlines():
            if line.startswith("URIs:"):
                return line.split()[1]
    legacy = Path("/etc/apt/sources.list")
    if legacy.exists():
        for line in legacy.read_text().splitlines():
            parts = line.split()
            if len(parts) >= 3 and parts[0] == "deb":
                return next(p for p in parts[1:] if "://" in p)
    raise NodeError("no Debian mirror found in /etc/apt/sources.list.d/debian.sources")


def make_image(rootfs: Path, ref: str, out: Path, cmd: list[str]) -> None:
    """A one-layer image archive (docker-archive) of ``rootfs``, built with umoci + skopeo."""
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".mkimage-") as w:
        oci = f"{w}/oci"
        run("umoci", "init", "--layout", oci)
        run("umoci", "new", "--image", f"{oci}:img")
        run("tar", "-C", str(rootfs), "--numeric-owner", "-cf", f"{w}/layer.tar", ".", timeout=600)
        run("umoci", "raw", "add-layer", "--image", f"{oci}:img", f"{w}/layer.tar", timeout=600)
        cfg = ["--config.env", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]
        for c in cmd:
            cfg += ["--config.cmd", c]
        run(
            "umoci",
            "config",
            "--image",
            f"{oci}:img",
            *cfg,
            "--os",
            "linux",
            "--architecture",
            "amd64",
        )
        tmp = out.with_name(out.name + ".tmp")
        tmp.unlink(missing_ok=True)
        run(
            "skopeo", "--insecure-policy", "copy", "-q",
            f"oci:{oci}:img", f"docker-archive:{tmp}:{ref}", timeout=600,
        )  # fmt: skip
        tmp.rename(out)


class _Lock:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.f = open(path, "w")  # noqa: SIM115

    def __enter__(self) -> _Lock:
        fcntl.flock(self.f, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc: object) -> None:
        fcntl.flock(self.f, fcntl.LOCK_UN)
        self.f.close()


def ensure_base_image() -> Path:
    """The Debian bookworm minbase image archive, built once (~90 s) and cached."""
    with _Lock(IMAGES / ".debian-bookworm-minbase.lock"):
        if BASE_ARCHIVE.exists():
            return BASE_ARCHIVE
        if not shutil.which("debootstrap"):
            raise NodeError("debootstrap is required (apt-get install debootstrap)")
        t0 = time.monotonic()
        log("debootstrap --variant=minbase bookworm (~90 s, cached afterwards)")
        with tempfile.TemporaryDirectory(dir=IMAGES, prefix=".rootfs-") as tmp:
            rootfs = Path(tmp) / "rootfs"
            run("debootstrap", "--variant=minbase", "bookworm", str(rootfs), mirror(), timeout=1200)
            for d in ("var/cache/apt/archives", "var/lib/apt/lists"):
                for p in (rootfs / d).glob("*"):
                    if p.is_file():
                        p.unlink()
            (rootfs / "etc/resolv.conf").unlink(missing_ok=True)
            make_image(rootfs, BASE_REF, BASE_ARCHIVE, ["/bin/bash"])
        (IMAGES / "debian-bookworm-minbase.txt").write_text(
            f"{BASE_ARCHIVE.name}: docker-archive, tag {BASE_REF}, one layer, cmd /bin/bash.\n"
            "debootstrap --variant=minbase bookworm (apt lists and .debs removed), built by\n"
            "e2e/cluster/realnode.py (ensure_base_image); delete it to rebuild.\n"
        )
        log(f"base image {BASE_ARCHIVE} built in {time.monotonic() - t0:.0f}s")
        return BASE_ARCHIVE


def extract_archive(archive: Path, dest: Path) -> None:
    """Unpack a one-or-more-layer docker-archive into a root filesystem."""
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=".unpack-") as w:
        run("tar", "-C", w, "-xf", str(archive), timeout=600)
        manifest = json.loads((Path(w) / "manifest.json").read_text())
        dest.mkdir(parents=True, exist_ok=True)
        for layer in manifest[0]["Layers"]:
            run("tar", "-C", str(dest), "--numeric-owner", "-xpf", f"{w}/{layer}", timeout=600)


def derive_image(base: Path, ref: str, out: Path, script: str, cmd: list[str]) -> Path:
    """``out``: the image ``base`` plus ``script`` run in a chroot of it (with /proc and the
    host's resolv.conf, so apt can reach the mirror), cached: a present ``out`` is reused."""
    with _Lock(out.with_name(f".{out.name}.lock")):
        if out.exists():
            return out
        with tempfile.TemporaryDirectory(dir=out.parent, prefix=".derive-") as tmp:
            rootfs = Path(tmp) / "rootfs"
            extract_archive(base, rootfs)
            shutil.copy("/etc/resolv.conf", rootfs / "etc/resolv.conf")
            run("mount", "-t", "proc", "proc", str(rootfs / "proc"))
            try:
                run("chroot", str(rootfs), "/bin/sh", "-ec", script, timeout=900)
            finally:
                run("umount", str(rootfs / "proc"), check=False)
            (rootfs / "etc/resolv.conf").unlink(missing_ok=True)
            make_image(rootfs, ref, out, cmd)
        return out


def ensure_pause_image() -> Path:
    src = lc.HERE / "pause.c"
    digest = hashlib.sha256(src.read_bytes()).hexdigest()[:12]
    out = IMAGES / f"pause-{digest}.tar"
    with _Lock(IMAGES / ".pause.lock"):
        if out.exists():
            return out
        with tempfile.TemporaryDirectory(dir=IMAGES, prefix=".pause-") as tmp:
            rootfs = Path(tmp) / "rootfs"
            rootfs.mkdir()
            run("gcc", "-Os", "-static", "-s", "-o", str(rootfs / "pause"), str(src))
            make_image(rootfs, PAUSE_REF, out, ["/pause"])
        return out


def ctr(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    sock = NODE_DIR / "containerd" / "containerd.sock"
    return run("ctr", "-a", str(sock), "-n", "k8s.io", *args, timeout=timeout)


def import_image(path: str | os.PathLike[str]) -> list[str]:
    """Import an image archive (docker-archive or oci-archive) into the node's containerd;
    returns the image names it brought. Pods use them with ``imagePullPolicy: Never``."""
    if not ours(read_pid("containerd")):
        raise NodeError("the real node's containerd is not running (realnode.py up)")
    res = ctr("images", "import", str(path), timeout=600)
    discard_layer_blobs(path)
    return re.findall(r"unpacking (\S+) \(", res.stdout)


def archive_layers(path: str | os.PathLike[str]) -> list[str]:
    """The layer digests of an oci-archive's images ([] for other archive kinds)."""
    try:
        with tarfile.open(path) as tar:
            index = json.load(tar.extractfile("index.json"))  # type: ignore[arg-type]
            layers = []
            for m in index.get("manifests") or []:
                blob = "blobs/" + m["digest"].replace(":", "/", 1)
                manifest = json.load(tar.extractfile(blob))  # type: ignore[arg-type]
                layers += [layer["digest"] for layer in manifest.get("layers") or []]
            return layers
    except (KeyError, tarfile.TarError, ValueError):
        return []


def discard_layer_blobs(path: str | os.PathLike[str]) -> None:
    """Drop the compressed layer blobs once unpacked, as the CRI plugin's
    ``discard_unpacked_layers`` does for pulls: the snapshots are what containers run from, and
    a torch image's blobs are another ~3.5 GB of disk per image on the node."""
    layers = archive_layers(path)
    if layers:
        ctr("content", "rm", *layers, timeout=300)


def remove_image(ref: str) -> None:
    """Remove an image from the node's containerd; its snapshots go with containerd's GC."""
    if not ours(read_pid("containerd")):
        raise NodeError("the real node's containerd is not running (realnode.py up)")
    ctr("images", "rm", "--sync", ref, timeout=600)


# ---------------------------------------------------------------------------- configuration


def write_configs() -> None:
    d = NODE_DIR
    pki = lc.STATE / "pki"
    for sub in ("containerd", "cni/net.d", "kubelet", "pki", "proxy", "dns", "pod-logs"):
        (d / sub).mkdir(parents=True, exist_ok=True)
    (d / "containerd" / "config.toml").write_text(
        f"""version = 2
root = "{d}/containerd/root"
state = "{d}/containerd/state"
oom_score = 0
[grpc]
  address = "{d}/containerd/containerd.sock"
[ttrpc]
  address = "{d}/containerd/containerd.sock.ttrpc"
[debug]
  level = "warn"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_REF}"
  # This VM lets no process lower oom_score_adj; without this every sandbox dies in runc.
  restrict_oom_score_adj = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{d}/cni/net.d"
[plugins."io.containerd.internal.v1.opt"]
  path = "{d}/containerd/opt"
"""
    )
    (d / "cni" / "net.d" / "10-local.conflist").write_text(
        json.dumps(
            {
                "cniVersion": "1.0.0",
                "name": "local",
                "plugins": [
                    {
                        "type": "bridge",
                        "bridge": BRIDGE,
                        "isGateway": True,
                        "ipMasq": False,
                        "hairpinMode": True,
                        "ipam": {
                            "type": "host-local",
                            "ranges": [[{"subnet": POD_CIDR, "gateway": GATEWAY}]],
                            "routes": [{"dst": "0.0.0.0/0"}],
                            "dataDir": f"{d}/cni/ipam",
                        },
                    }
                ],
            },
            indent=1,
        )
    )
    (d / "pki" / "kubelet.ext").write_text(
        f"subjectAltName=IP:{NODE_IP},DNS:{NODE_NAME}\nextendedKeyUsage=clientAuth,serverAuth\n"
    )
    subj = f"/O=system:nodes/CN=system:node:{NODE_NAME}"
    run("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{d}/pki/kubelet.key",
        "-out", f"{d}/pki/kubelet.csr", "-subj", subj)  # fmt: skip
    run("openssl", "x509", "-req", "-in", f"{d}/pki/kubelet.csr", "-CA", f"{pki}/ca.crt",
        "-CAkey", f"{pki}/ca.key", "-CAcreateserial", "-out", f"{d}/pki/kubelet.crt",
        "-days", "3650", "-extfile", f"{d}/pki/kubelet.ext", cwd=d / "pki")  # fmt: skip
    (d / "kubelet" / "kubeconfig").write_text(
        f"""apiVersion: v1
kind: Config
clusters:
- name: internlm-local
  cluster:
    server: https://{NODE_IP}:{lc.PORTS.apiserver}
    certificate-authority: {pki / "ca.crt"}
users:
- name: {NODE_NAME}
  user:
    client-certificate: {d / "pki" / "kubelet.crt"}
    client-key: {d / "pki" / "kubelet.key"}
contexts:
- name: internlm-local
  context: {{cluster: internlm-local, user: {NODE_NAME}}}
current-context: internlm-local
"""
    )
    (d / "kubelet" / "config.yaml").write_text(
        f"""apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
containerRuntimeEndpoint: unix://{d}/containerd/containerd.sock
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
cgroupsPerQOS: true
enforceNodeAllocatable: []
address: {NODE_IP}
port: {KUBELET_PORT}
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: {KUBELET_HEALTHZ_PORT}
tlsCertFile: {d}/pki/kubelet.crt
tlsPrivateKeyFile: {d}/pki/kubelet.key
authentication:
  anonymous: {{enabled: false}}
  webhook: {{enabled: false}}
  x509: {{clientCAFile: {pki}/ca.crt}}
authorization: {{mode: AlwaysAllow}}
clusterDomain: cluster.local
clusterDNS: [{GATEWAY}]
podLogsDir: {d}/pod-logs
resolvConf: /etc/resolv.conf
maxPods: 50
serializeImagePulls: false
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: "100Mi"
  nodefs.available: "1%"
  imagefs.available: "1%"
  nodefs.inodesFree: "1%"
nodeStatusReportFrequency: 10s
nodeStatusUpdateFrequency: 5s
protectKernelDefaults: false
"""
    )
    kubeconfig = lc.STATE / "kubeconfig"
    (d / "proxy" / "config.yaml").write_text(
        f"""apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {{kubeconfig: {kubeconfig}}}
hostnameOverride: {NODE_NAME}
mode: iptables
clusterCIDR: {POD_CIDR}
bindAddress: {NODE_IP}
healthzBindAddress: 127.0.0.1:{PROXY_HEALTHZ_PORT}
metricsBindAddress: 127.0.0.1:{PROXY_METRICS_PORT}
nodePortAddresses: [{NODE_IP}/32]
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
"""
    )
    (d / "dns" / "Corefile").write_text(
        f"""cluster.local:53 in-addr.arpa:53 {{
    bind {GATEWAY}
    kubernetes cluster.local in-addr.arpa {{
        kubeconfig {kubeconfig} internlm-local
        pods insecure
        fallthrough in-addr.arpa
    }}
    cache 5
}}
.:53 {{
    bind {GATEWAY}
    template ANY ANY {{
        rcode NXDOMAIN
    }}
}}
"""
    )


def node_labels() -> dict[str, str]:
    return {"internlm.io/real-node": "true", **lc.gpu_labels(0)}


def node_json() -> dict | None:
    res = lc.kubectl("get", "node", NODE_NAME, "-o", "json")
    return json.loads(res.stdout) if res.returncode == 0 else None


def node_ready() -> bool:
    n = node_json()
    conds = (n or {}).get("status", {}).get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conds)


# ---------------------------------------------------------------------------- commands


def running() -> bool:
    return all(ours(read_pid(c)) for c in COMPONENTS)


def up() -> None:
    t0 = time.monotonic()
    if not lc.real_node_mode():
        raise NodeError(
            "the control plane is not in real-node mode: start it with "
            "`localcluster.py up --real-node` (or INTERNLM_REAL_NODE=1), which starts this node too"
        )
    if not lc.healthy():
        raise NodeError("the control plane is not running (localcluster.py up --real-node)")
    if running() and node_ready():
        log(f"already running: node {NODE_NAME}")
        return
    bins = check_prerequisites()
    if NODE_DIR.exists():
        log("cleaning up a stale real node")
        down()
    if link_exists(BRIDGE):
        raise NodeError(
            f"bridge {BRIDGE} exists but belongs to no real node of this cluster: another real "
            "node runs on this host (only one can); stop it with its own `localcluster.py down`"
        )
    NODE_DIR.mkdir(parents=True)
    # What `down` restores: sysctls and which hard-coded host paths existed.
    (NODE_DIR / "host-before.json").write_text(
        json.dumps(
            {
                "sysctl": sysctl_snapshot(),
                "paths": [p for p in HOST_PATHS if os.path.lexists(p)],
                "cgroups": [str(p) for r in cgroup_roots() for p in r.iterdir() if p.is_dir()],
            }
        )
    )
    try:
        pause = ensure_pause_image()
        write_configs()
        t_cfg = time.monotonic()
        # Pod traffic stays here: forwarded packets from the pod network to anywhere else drop.
        run("iptables", "-w", "-I", "FORWARD", "1", "-s", POD_CIDR, "!", "-d", POD_CIDR,
            "-m", "comment", "--comment", GUARD_COMMENT, "-j", "DROP")  # fmt: skip
        # The bridge exists before any pod, so CoreDNS can bind its address right away.
        run("ip", "link", "add", BRIDGE, "type", "bridge")
        run("ip", "addr", "add", f"{GATEWAY}/16", "dev", BRIDGE)
        run("ip", "link", "set", BRIDGE, "up")
        sock = NODE_DIR / "containerd" / "containerd.sock"
        start(
            "containerd",
            [str(bins["containerd"]), "--config", str(NODE_DIR / "containerd" / "config.toml")],
        )

        def containerd_ready() -> bool:
            if not sock.exists():
                return False
            return run("ctr", "-a", str(sock), "version", check=False, timeout=5).returncode == 0

        wait_for("containerd", containerd_ready, 30, "containerd")
        ctr("images", "import", str(pause))
        t_ctd = time.monotonic()
        lc.kubectl("create", "clusterrolebinding", "internlm-local-nodes",
                   "--clusterrole=system:node", "--group=system:nodes")  # fmt: skip
        labels = ",".join(f"{k}={v}" for k, v in node_labels().items())
        start(
            "kubelet",
            [
                str(bins["kubelet"]),
                f"--config={NODE_DIR / 'kubelet' / 'config.yaml'}",
                f"--kubeconfig={NODE_DIR / 'kubelet' / 'kubeconfig'}",
                f"--hostname-override={NODE_NAME}",
                f"--node-ip={NODE_IP}",
                f"--root-dir={NODE_DIR / 'kubelet' / 'root'}",
                f"--cert-dir={NODE_DIR / 'pki'}",
                f"--node-labels={labels}",
                "--v=1",
            ],
        )
        start(
            "kube-proxy",
            [str(bins["kube-proxy"]), f"--config={NODE_DIR / 'proxy' / 'config.yaml'}", "--v=1"],
        )
        start("coredns", [str(bins["coredns"]), "-conf", str(NODE_DIR / "dns" / "Corefile")])
        wait_for(f"node {NODE_NAME} Ready", node_ready, 90, "kubelet")
        t_ready = time.monotonic()
        gpus = str(lc.GPUS_PER_NODE)
        patch = {
            "status": {
                "capacity": {"nvidia.com/gpu": gpus},
                "allocatable": {"nvidia.com/gpu": gpus},
            }
        }
        res = lc.kubectl(
            "patch",
            "node",
            NODE_NAME,
            "--subresource=status",
            "--type=merge",
            "-p",
            json.dumps(patch),
        )
        if res.returncode != 0:
            raise NodeError(f"advertising nvidia.com/gpu failed: {res.stderr}")
        wait_for("CoreDNS", lambda: "CoreDNS-" in tail("coredns", 50), 30, "coredns")
        for c in COMPONENTS:
            if not ours(read_pid(c)):
                raise NodeError(f"{c} exited during start-up:\n{tail(c)}")
    except BaseException:
        log("start-up failed; tearing the real node down")
        down()
        raise
    log(
        f"node {NODE_NAME} Ready in {time.monotonic() - t0:.1f}s (configs {t_cfg - t0:.1f}s, "
        f"containerd {t_ctd - t_cfg:.1f}s, kubelet to Ready {t_ready - t_ctd:.1f}s); "
        f"pods on {POD_CIDR} via {BRIDGE}, DNS {GATEWAY}, {gpus} nvidia.com/gpu (no devices)"
    )


def drain(api_ok: bool, timeout: float = 10) -> None:
    """Delete the node's pods through the API while the kubelet still runs, so the CNI plugin
    frees their interfaces and addresses."""
    if not api_ok or not ours(read_pid("kubelet")):
        return
    lc.kubectl("cordon", NODE_NAME)
    sel = f"spec.nodeName={NODE_NAME}"
    lc.kubectl(
        "delete", "pods", "-A", f"--field-selector={sel}", "--grace-period=1", "--wait=false"
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        res = lc.kubectl("get", "pods", "-A", f"--field-selector={sel}", "-o", "name")
        if res.returncode != 0 or not res.stdout.strip():
            return
        time.sleep(0.5)
    log(f"pods still on {NODE_NAME} after {timeout:.0f}s; removing them by force")


def down() -> list[str]:
    """Stop the node and undo everything it changed on the host. Safe to run twice."""
    done: list[str] = []
    if not NODE_DIR.exists():
        return done
    t0 = time.monotonic()
    api_ok = lc.healthy()
    try:
        before = json.loads((NODE_DIR / "host-before.json").read_text())
    except (OSError, ValueError):
        before = {"sysctl": {}, "paths": list(HOST_PATHS), "cgroups": []}
    drain(api_ok)
    for name in ("coredns", "kube-proxy"):
        if stop(name):
            done.append(name)
    kp = binaries()["kube-proxy"]
    if os.access(kp, os.X_OK):
        run(str(kp), "--cleanup", check=False, timeout=60)
    if stop("kubelet"):
        done.append("kubelet")
    if api_ok:
        lc.kubectl("delete", "pods", "-A", f"--field-selector=spec.nodeName={NODE_NAME}",
                   "--force", "--grace-period=0")  # fmt: skip
        lc.kubectl("delete", "node", NODE_NAME, "--ignore-not-found", "--wait=false")
        lc.kubectl("delete", "clusterrolebinding", "internlm-local-nodes", "--ignore-not-found")
    # Containers and sandboxes (everything in the kubepods cgroups), shims, containerd.
    if stop("containerd"):
        done.append("containerd")
    for _ in range(3):
        left = stray_processes()
        if not left:
            break
        kill_and_wait(left, signal.SIGKILL, 10)
    for point in our_mounts():
        if run("umount", point, check=False).returncode != 0:
            run("umount", "-l", point, check=False)
    for _ in range(3):
        left_mounts = our_mounts()
        if not left_mounts:
            break
        for point in left_mounts:
            run("umount", "-l", point, check=False)
    if link_exists(BRIDGE):
        for line in run(
            "ip", "-o", "link", "show", "master", BRIDGE, check=False
        ).stdout.splitlines():
            veth = line.split(":")[1].strip().split("@")[0]
            run("ip", "link", "del", veth, check=False)
        run("ip", "link", "del", BRIDGE, check=False)
    clean_iptables()
    restore_sysctls(before.get("sysctl", {}))
    for cg in cgroup_dirs():
        try:
            cg.rmdir()
        except OSError as e:
            log(f"cannot remove cgroup {cg}: {e}")
    pre_cgroups = set(before.get("cgroups", []))
    for r in cgroup_roots():
        for name in ("k8s.io",):
            p = r / name
            if p.is_dir() and str(p) not in pre_cgroups:
                for dirpath, _d, _f in os.walk(p, topdown=False):
                    with contextlib.suppress(OSError):
                        os.rmdir(dirpath)
    keep = set(before.get("paths", []))
    for p in HOST_PATHS:
        if p not in keep and os.path.lexists(p):
            if any(m == p or m.startswith(p + "/") for m in mounts()):
                log(f"not removing {p}: something is still mounted under it")
                continue
            shutil.rmtree(p, ignore_errors=True)
    if our_mounts():
        raise NodeError(f"mounts left under the node's directories: {our_mounts()}")
    shutil.rmtree(NODE_DIR, ignore_errors=True)
    log(
        f"real node down in {time.monotonic() - t0:.1f}s"
        + (f" (stopped {', '.join(done)})" if done else "")
    )
    return done


def status() -> int:
    if not NODE_DIR.exists():
        print(f"{'real node ' + NODE_NAME:24} not running")
        return 1
    for c in COMPONENTS:
        pid = read_pid(c)
        print(f"{c:24} {'running pid ' + str(pid) if ours(pid) else 'not running'}")
    ready = lc.healthy() and node_ready()
    print(f"{'node ' + NODE_NAME:24} {'Ready' if ready else 'not ready'}")
    print(f"{'addresses':24} node {NODE_IP} (lo), pods {POD_CIDR} ({BRIDGE}), DNS {GATEWAY}:53")
    print(f"{'kubelet':24} {NODE_IP}:{KUBELET_PORT}, healthz 127.0.0.1:{KUBELET_HEALTHZ_PORT}")
    return 0 if ready and running() else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["up", "down", "status", "import", "rmi", "base-image"])
    parser.add_argument("archive", nargs="?", help="import: an image archive; rmi: an image")
    args = parser.parse_args(argv)
    try:
        if args.command == "up":
            up()
        elif args.command == "down":
            down()
        elif args.command == "import":
            if not args.archive:
                parser.error("import needs an image archive")
            print("\n".join(import_image(args.archive)))
        elif args.command == "rmi":
            if not args.archive:
                parser.error("rmi needs an image reference")
            remove_image(args.archive)
        elif args.command == "base-image":
            print(ensure_base_image())
        else:
            return status()
    except lc.ClusterError as e:
        log(f"error: {e}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
