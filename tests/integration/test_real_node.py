"""The real node: a kubelet on this machine joins a cluster of its own (real-node mode, its own
state directory and ports, beside the session's simulated cluster) and runs real containers
from locally built images. Pods talk to each other, to Services and to the API server, and to
nothing off this machine; ``down`` leaves the host as it found it.

Needs root and the real node's packages (``.ci/run`` installs them); skipped otherwise.
"""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import realnode

from tests.conftest import REPO, Cluster, wait_until
from tests.integration.realnode_fixture import RealCluster, real_node_cluster

pytestmark = pytest.mark.cluster

PORT_BASE = 17400
# A fixed state directory: a run that was killed is cleaned up by the next one.
STATE = REPO / "e2e" / ".cluster-realnode-test"
GPU = "nvidia.com/gpu"
TEST_IMAGE = "localhost/internlm/realnode-test:py3"
# The shared Debian minbase image plus python3, built in a chroot once and cached.
TEST_ARCHIVE = realnode.IMAGES / "realnode-test-py3-v1.tar"
PY3 = (
    "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "
    "--no-install-recommends python3 >/dev/null && rm -rf /var/lib/apt/lists/* "
    "/var/cache/apt/archives/*.deb"
)
NODE_PROCS = realnode.OUR_EXES | {"pause"}


# ---------------------------------------------------------------------------- host state


def host_snapshot(state: Path) -> dict[str, Any]:
    """What a real node changes on the host, in a comparable form."""

    def out(*argv: str) -> str:
        return subprocess.run(argv, capture_output=True, text=True, check=False).stdout

    def iptables(binary: str) -> list[str]:
        # iptables-nft cannot delete a table once made: a built-in chain with policy ACCEPT and
        # no rules is the same as no table at all.
        builtin = ("PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING")
        return sorted(
            f"{table} {ln.split(' [')[0]}"
            for table, lines in realnode.iptables_rules(binary).items()
            for ln in lines
            if not (ln.startswith(":") and ln[1:].split()[:2] in ([b, "ACCEPT"] for b in builtin))
        )

    procs = []
    for pid in realnode.all_pids():
        try:
            exe = os.path.basename(os.readlink(f"/proc/{pid}/exe"))
        except OSError:
            continue
        cmd = realnode.cmdline(pid)
        if exe in NODE_PROCS or str(state) in cmd:
            procs.append(f"{pid} {cmd}")
    cgroups = sorted(
        str(p) for r in realnode.cgroup_roots() for p in r.rglob("*") if p.is_dir() and len(
            p.relative_to(r).parts) <= 2
    )  # fmt: skip
    mount_points = sorted(
        m for m in realnode.mounts() if str(state) in m or m.startswith(realnode.MOUNT_PREFIXES)
    )
    return {
        "ip addr": sorted(out("ip", "-br", "addr").splitlines()),
        "ip link": sorted(ln.split()[0] for ln in out("ip", "-br", "link").splitlines()),
        "ip route": sorted(out("ip", "route").splitlines()),
        "iptables": iptables("iptables"),
        "ip6tables": iptables("ip6tables"),
        "mounts": mount_points,
        "cgroups": cgroups,
        "processes": sorted(procs),
        # /etc/cni is left out: buildah makes it (image builds may run alongside), the node
        # never touches it.
        "paths": [p for p in realnode.HOST_PATHS if os.path.lexists(p)],
        "sysctl": realnode.sysctl_snapshot(),
    }


# ---------------------------------------------------------------------------- the cluster


@pytest.fixture(scope="module")
def real() -> Iterator[tuple[RealCluster, dict]]:
    with real_node_cluster("test_real_node", STATE, PORT_BASE, up=False) as c:
        realnode.IMAGES.mkdir(parents=True, exist_ok=True)
        base = realnode.ensure_base_image()
        realnode.derive_image(base, TEST_IMAGE, TEST_ARCHIVE, PY3, ["/bin/bash"])
        before = host_snapshot(c.state)
        c.launcher("localcluster.py", "up")
        c.import_image(TEST_ARCHIVE)
        yield c, before


@pytest.fixture
def ns(real: tuple[RealCluster, dict]) -> Iterator[str]:
    c = real[0]
    name = f"rn-{uuid.uuid4().hex[:6]}"
    c.kubectl("create", "namespace", name)
    wait_until(
        "the default ServiceAccount",
        lambda: c.kubectl("get", "sa", "default", "-n", name, check=False).returncode == 0,
        timeout=60,
    )
    yield name
    c.kubectl("delete", "namespace", name, "--wait=false", check=False)


def py_pod(name: str, script: str, **spec: Any) -> dict[str, Any]:
    container = {
        "name": "main",
        "image": TEST_IMAGE,
        "imagePullPolicy": "Never",
        "command": ["python3", "-u", "-c", textwrap.dedent(script)],
        "resources": {"limits": {"cpu": "200m", "memory": "100Mi"}},
    }
    container.update(spec.pop("container", {}))
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": spec.pop("labels", {"app": name})},
        "spec": {"restartPolicy": "Never", "containers": [container], **spec},
    }


def finished(c: Cluster, ns: str, name: str, timeout: float = 120) -> dict[str, Any]:
    """The pod once Succeeded or Failed; its status."""

    def done() -> dict[str, Any] | None:
        st = c.get("pod", name, "-n", ns).get("status", {})
        return st if st.get("phase") in ("Succeeded", "Failed") else None

    result: dict[str, Any] = wait_until(
        f"pod {name} finished",
        done,
        timeout=timeout,
        explain=lambda: c.kubectl("describe", "pod", name, "-n", ns, check=False).stdout[-3000:],
    )
    return result


def message(st: dict[str, Any]) -> str:
    return str(st["containerStatuses"][0]["state"]["terminated"].get("message", ""))


# ---------------------------------------------------------------------------- tests


def test_pod_runs_on_the_real_node_and_reports(real: tuple[RealCluster, dict], ns: str) -> None:
    c = real[0]
    pod = py_pod(
        "hello",
        """
        open("/dev/termination-log", "w").write("done-42")
        print(42)
        """,
        container={"resources": {"limits": {"cpu": "200m", "memory": "100Mi", GPU: "1"}}},
    )
    c.apply(pod, ns)
    st = finished(c, ns, "hello")
    assert st["phase"] == "Succeeded", st
    assert message(st) == "done-42"
    got = c.get("pod", "hello", "-n", ns)
    assert got["spec"]["nodeName"] == "real-0"  # the simulated nodes are tainted
    assert st["podIP"].startswith("10.88.")
    assert c.kubectl("logs", "hello", "-n", ns).stdout.strip() == "42"


PEER = """
import json, os, socket, threading, time, urllib.request
from http.server import BaseHTTPRequestHandler, HTTPServer
me = int(os.environ["JOB_COMPLETION_INDEX"])
peer = 1 - me
class H(BaseHTTPRequestHandler):
    def do_GET(self):
        body = f"hello from {me}".encode()
        self.send_response(200); self.end_headers(); self.wfile.write(body)
    def log_message(self, *a): pass
srv = HTTPServer(("0.0.0.0", 8080), H)
threading.Thread(target=srv.serve_forever, daemon=True).start()
host = f"pair-{peer}.peers"
deadline = time.time() + 90
while True:
    try:
        ip = socket.gethostbyname(host)
        got = urllib.request.urlopen(f"http://{host}:8080/", timeout=3).read().decode()
        break
    except Exception as e:
        if time.time() > deadline:
            raise
        time.sleep(0.5)
open("/dev/termination-log", "w").write(json.dumps({"peer_ip": ip, "got": got}))
time.sleep(5)  # let the peer finish its request too
"""


def test_indexed_job_pods_find_each_other_by_dns(real: tuple[RealCluster, dict], ns: str) -> None:
    c = real[0]
    c.apply(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "peers"},
            "spec": {
                "clusterIP": "None",
                "publishNotReadyAddresses": True,
                "selector": {"job-name": "pair"},
                "ports": [{"name": "http", "port": 8080}],
            },
        },
        ns,
    )
    template = py_pod("x", PEER)
    template["spec"]["subdomain"] = "peers"
    template["metadata"] = {"labels": {"app": "pair"}}
    del template["apiVersion"], template["kind"]
    c.apply(
        {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": "pair"},
            "spec": {
                "completions": 2,
                "parallelism": 2,
                "completionMode": "Indexed",
                "backoffLimit": 0,
                "template": template,
            },
        },
        ns,
    )
    c.kubectl(
        "wait", "-n", ns, "--for=condition=Complete", "job/pair", "--timeout=150s", timeout=160
    )
    pods = c.get("pods", "-n", ns, "-l", "job-name=pair")["items"]
    assert len(pods) == 2
    by_index = {
        p["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"]: p for p in pods
    }
    for me, peer in (("0", "1"), ("1", "0")):
        got = json.loads(message(by_index[me]["status"]))
        assert got["got"] == f"hello from {peer}"
        assert got["peer_ip"] == by_index[peer]["status"]["podIP"]


SERVER = """
from http.server import BaseHTTPRequestHandler, HTTPServer
class H(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.end_headers(); self.wfile.write(b"web ok")
    def log_message(self, *a): pass
HTTPServer(("0.0.0.0", 8080), H).serve_forever()
"""

CLIENT = """
import json, ssl, time, urllib.request
out = {}
deadline = time.time() + 60
while True:
    try:
        out["svc"] = urllib.request.urlopen("http://web:80/", timeout=3).read().decode()
        out["clusterip"] = urllib.request.urlopen("http://%s:80/", timeout=3).read().decode()
        break
    except Exception:
        if time.time() > deadline:
            raise
        time.sleep(0.5)
sa = "/var/run/secrets/kubernetes.io/serviceaccount"
ctx = ssl.create_default_context(cafile=f"{sa}/ca.crt")
req = urllib.request.Request(
    "https://kubernetes.default.svc/version",
    headers={"Authorization": "Bearer " + open(f"{sa}/token").read()},
)
out["api"] = json.load(urllib.request.urlopen(req, context=ctx, timeout=10))["gitVersion"]
open("/dev/termination-log", "w").write(json.dumps(out))
"""


def test_pod_reaches_cluster_ip_services_and_the_api_server(
    real: tuple[RealCluster, dict], ns: str
) -> None:
    c = real[0]
    c.apply(py_pod("web", SERVER), ns)
    c.apply(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web"},
            "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]},
        },
        ns,
    )
    ip = c.get("service", "web", "-n", ns)["spec"]["clusterIP"]
    assert ip.startswith("10.96.")
    c.apply(py_pod("client", CLIENT % ip), ns)
    st = finished(c, ns, "client")
    assert st["phase"] == "Succeeded", c.kubectl("logs", "client", "-n", ns, check=False).stdout
    got = json.loads(message(st))
    assert got == {"svc": "web ok", "clusterip": "web ok", "api": "v1.36.2"}


EGRESS = """
import json, socket
out = {}
for name, addr in (("testnet", ("203.0.113.1", 80)), ("gateway", (%r, 80))):
    s = socket.socket()
    s.settimeout(4)
    try:
        s.connect(addr)
        out[name] = "connected"
    except OSError as e:
        out[name] = type(e).__name__
    finally:
        s.close()
for name in ("example.com", "deb.debian.org"):
    try:
        out[name] = socket.gethostbyname(name)
    except OSError as e:
        out[name] = type(e).__name__
open("/dev/termination-log", "w").write(json.dumps(out))
"""


def default_gateway() -> str:
    """The host's default gateway: an address off this machine that surely answers."""
    for line in Path("/proc/net/route").read_text().splitlines()[1:]:
        f = line.split()
        if f[1] == "00000000" and f[2] != "00000000":
            return ".".join(str(int(f[2][i : i + 2], 16)) for i in (6, 4, 2, 0))
    return "192.0.2.1"


def test_pods_reach_nothing_off_this_machine(real: tuple[RealCluster, dict], ns: str) -> None:
    c = real[0]
    c.apply(py_pod("egress", EGRESS % default_gateway()), ns)
    st = finished(c, ns, "egress")
    assert st["phase"] == "Succeeded", st
    got = json.loads(message(st))
    # Forwarded pod traffic to outside the pod network is dropped (no reply at all), and
    # CoreDNS has no upstream: every name outside cluster.local is NXDOMAIN.
    assert got["testnet"] == "TimeoutError", got
    assert got["gateway"] == "TimeoutError", got
    assert got["example.com"] == "gaierror", got
    assert got["deb.debian.org"] == "gaierror", got


def test_zz_down_leaves_the_host_as_found(real: tuple[RealCluster, dict]) -> None:
    c, before = real
    c.launcher("localcluster.py", "status")
    c.launcher("localcluster.py", "down")
    after = host_snapshot(c.state)
    assert not c.state.exists()
    for key in before:
        assert after[key] == before[key], key
