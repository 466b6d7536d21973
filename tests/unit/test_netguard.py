"""The network guard (e2e/netguard): its policy as a table, and proof that it trips in a real
child process. The child runs in its own empty network namespace, so even a broken guard could
not send anything off the machine."""

from __future__ import annotations

import ipaddress
import shutil
import subprocess
import sys
from pathlib import Path

import internlm_netguard as ng
import pytest

FIB_TRIE = """Main:
  +-- 0.0.0.0/0 3 0 5
     |-- 0.0.0.0
        /0 universe UNICAST
     +-- 192.0.2.0/24 2 0 2
        |-- 192.0.2.0
           /24 link UNICAST
        |-- 192.0.2.2
           /32 host LOCAL
     |-- 10.87.255.1
        /32 host LOCAL
"""

ROUTES = """Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0
eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0
cni-local0\t0000580A\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0
"""


def test_local_addresses_from_the_fib() -> None:
    local = ng.local_addresses(FIB_TRIE)
    assert ipaddress.ip_address("192.0.2.2") in local
    assert ipaddress.ip_address("10.87.255.1") in local
    assert ipaddress.ip_address("192.0.2.0") not in local


@pytest.mark.parametrize(
    ("addr", "iface"),
    [("10.88.0.7", "cni-local0"), ("192.0.2.9", "eth0"), ("203.0.113.1", "eth0")],
)
def test_route_interface_is_the_longest_prefix(addr: str, iface: str) -> None:
    assert ng.route_interface(ipaddress.IPv4Address(addr), ROUTES) == iface


@pytest.mark.parametrize(
    ("host", "allowed"),
    [
        ("127.0.0.1", True),
        ("127.64.3.9", True),  # a simulated pod
        ("::1", True),
        ("localhost", True),
        (None, True),
        ("", True),
        ("0.0.0.0", True),
        ("10.254.1.1", False),
        ("203.0.113.1", False),
        ("2001:db8::1", False),
        ("example.com", False),
        ("my-svc.default.svc.cluster.local", False),
    ],
)
def test_host_policy(host: str | None, allowed: bool) -> None:
    assert ng.Policy().host_allowed(host) is allowed


def test_extra_networks_and_unix_sockets() -> None:
    policy = ng.Policy([ipaddress.ip_network("10.254.0.0/16")])
    assert policy.host_allowed("10.254.1.1")
    assert policy.address_allowed("/run/containerd/containerd.sock")
    assert policy.address_allowed(("203.0.113.1", 80)) is False


CHILD = """
import socket, sys, urllib.request
import internlm_netguard
assert internlm_netguard.installed(), "sitecustomize did not install the guard"
refused = 0
for attempt in (
    lambda: socket.socket().connect(("203.0.113.1", 80)),
    lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b"x", ("198.51.100.5", 53)),
    lambda: socket.getaddrinfo("example.com", 443),
    lambda: urllib.request.urlopen("http://203.0.113.1:9400/progress", timeout=0.5),
):
    try:
        attempt()
    except internlm_netguard.OffMachineConnection:
        refused += 1
    except OSError as e:
        # urllib wraps the refusal in URLError; anything else means it reached the kernel
        if isinstance(getattr(e, "reason", None), internlm_netguard.OffMachineConnection):
            refused += 1
        else:
            print("NOT REFUSED", type(e).__name__, e)
with socket.socket() as s:
    s.bind(("127.0.0.1", 0))  # loopback still works
print("refused", refused)
"""


@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs util-linux unshare")
def test_guard_trips_in_a_child_process(tmp_path: Path) -> None:
    log = tmp_path / "netguard.log"
    env = ng.child_env(str(log))
    res = subprocess.run(
        ["unshare", "--net", sys.executable, "-c", CHILD],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0, res.stderr
    assert "refused 4" in res.stdout, res.stdout + res.stderr
    assert "NOT REFUSED" not in res.stdout
    entries = ng.read_log(str(log))
    assert [e["event"] for e in entries] == [
        "socket.connect",
        "socket.sendto",
        "socket.getaddrinfo",
        "socket.getaddrinfo",
    ]
    assert "203.0.113.1" in entries[0]["target"]
    assert "internlm-netguard: refused" in res.stderr


def test_this_test_process_is_guarded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The refusal goes to a log of this test's own, not the session's (which must stay empty).
    monkeypatch.setenv(ng.ENV_LOG, str(tmp_path / "log"))
    assert ng.installed()
    import socket

    with pytest.raises(ng.OffMachineConnection):
        socket.getaddrinfo("example.com", 80)
    assert len(ng.read_log(str(tmp_path / "log"))) == 1
