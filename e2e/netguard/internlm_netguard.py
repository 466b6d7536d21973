"""Refuse, loudly, any network traffic that would leave this machine.

Installed as a ``sys.addaudithook`` in every Python process the tests, the demo and the
benchmarks start (``sitecustomize.py`` next to this file imports it when ``INTERNLM_NETGUARD=1``
and this directory is on ``PYTHONPATH``). It watches ``socket.connect``, ``socket.sendto``,
``socket.sendmsg``, ``socket.getaddrinfo`` and ``socket.gethostbyname``:

- allowed: Unix sockets; any address in 127.0.0.0/8 or ::1; an address assigned to this machine
  (read from /proc/net/fib_trie, so one added later, like the real node's 10.87.255.1 on lo,
  counts); an address routed through an interface the project creates (``cni-local*``: the real
  node's pod bridge); networks named in ``INTERNLM_NETGUARD_ALLOW`` (comma-separated CIDRs);
- name lookups: only ``localhost`` and IP literals that pass the rule above. Any other name
  would be sent to the machine's resolver, which is off the machine.

A refused attempt raises :class:`OffMachineConnection` (a ``PermissionError``) in the caller
and is appended as one JSON line to ``INTERNLM_NETGUARD_LOG`` (when set), because callers that
catch ``OSError`` would otherwise hide it; the test session fails when that file is not empty.

Standard library only: it runs inside every workload environment too.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import socket
import sys
import time
import traceback
from collections.abc import Iterable
from typing import Any

ENV_ON = "INTERNLM_NETGUARD"
ENV_LOG = "INTERNLM_NETGUARD_LOG"
ENV_ALLOW = "INTERNLM_NETGUARD_ALLOW"
# Interfaces the project itself creates; traffic routed through them stays on the machine.
PROJECT_IFACE_PREFIXES = ("cni-local",)
ALWAYS = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))
LOCAL_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost"}

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class OffMachineConnection(PermissionError):
    """A connection, datagram or name lookup that would have left this machine."""


def _networks(spec: str) -> list[IPNetwork]:
    out: list[IPNetwork] = []
    for part in spec.split(","):
        part = part.strip()
        if part:
            out.append(ipaddress.ip_network(part, strict=False))
    return out


def local_addresses(fib_trie: str | None = None) -> set[IPAddress]:
    """Addresses assigned to this machine (``/32 host LOCAL`` leaves of the IPv4 FIB), plus the
    IPv6 ones from /proc/net/if_inet6."""
    out: set[IPAddress] = set()
    if fib_trie is None:
        try:
            with open("/proc/net/fib_trie") as f:
                fib_trie = f.read()
        except OSError:
            fib_trie = ""
    last: str | None = None
    for line in fib_trie.splitlines():
        s = line.strip()
        if s.startswith("|-- "):
            last = s[4:]
        elif last and s == "/32 host LOCAL":
            out.add(ipaddress.ip_address(last))
    try:
        with open("/proc/net/if_inet6") as f:
            for line in f:
                h = line.split()[0]
                out.add(ipaddress.ip_address(":".join(h[i : i + 4] for i in range(0, 32, 4))))
    except (OSError, ValueError, IndexError):
        pass
    return out


def route_interface(addr: ipaddress.IPv4Address, routes: str | None = None) -> str | None:
    """The interface of the longest-prefix IPv4 route to ``addr`` in the main table."""
    if routes is None:
        try:
            with open("/proc/net/route") as f:
                routes = f.read()
        except OSError:
            return None
    best: tuple[int, str] | None = None
    target = int(addr)
    for line in routes.splitlines()[1:]:
        cols = line.split()
        if len(cols) < 8:
            continue
        # /proc/net/route prints addresses as little-endian hex.
        dest = int.from_bytes(bytes.fromhex(cols[1]), "little")
        mask = int.from_bytes(bytes.fromhex(cols[7]), "little")
        if target & mask == dest:
            plen = bin(mask).count("1")
            if best is None or plen > best[0]:
                best = (plen, cols[0])
    return best[1] if best else None


class Policy:
    """Which destinations count as 'this machine'. Pure apart from reading /proc lazily."""

    def __init__(self, extra: Iterable[IPNetwork] = ()) -> None:
        self.extra = list(extra)
        self._local: set[IPAddress] = set()
        self._local_read = 0.0

    def _is_local(self, ip: IPAddress) -> bool:
        if ip in self._local:
            return True
        # Re-read at most every 0.5 s: addresses come and go (the real node adds one).
        now = time.monotonic()
        if now - self._local_read > 0.5:
            self._local = local_addresses()
            self._local_read = now
        return ip in self._local

    def ip_allowed(self, ip: IPAddress) -> bool:
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        if any(ip in n for n in ALWAYS) or any(
            ip in n for n in self.extra if n.version == ip.version
        ):
            return True
        if ip.is_unspecified:  # connect() to 0.0.0.0 reaches this machine
            return True
        if self._is_local(ip):
            return True
        if isinstance(ip, ipaddress.IPv4Address):
            iface = route_interface(ip)
            return bool(iface) and iface.startswith(PROJECT_IFACE_PREFIXES)
        return False

    def host_allowed(self, host: Any) -> bool:
        """A host as given to connect()/getaddrinfo(): an IP literal, a name, or nothing."""
        if host is None or host in ("", b""):
            return True
        if isinstance(host, bytes):
            host = host.decode(errors="replace")
        if not isinstance(host, str):
            return True
        name = host.strip("[]").split("%", 1)[0]
        if name.lower() in LOCAL_NAMES or name.lower().endswith(".localhost"):
            return True
        try:
            return self.ip_allowed(ipaddress.ip_address(name))
        except ValueError:
            return False  # a real name: resolving it asks the machine's (remote) resolver

    def address_allowed(self, address: Any) -> bool:
        """A socket address: a tuple (host, port, ...) for INET sockets, else (Unix, netlink,
        ...) always local."""
        inet = (
            isinstance(address, tuple)
            and len(address) >= 2
            and isinstance(address[0], str | bytes)
            and isinstance(address[1], int)
        )
        return self.host_allowed(address[0]) if inet else True


_WATCHED = {"socket.connect", "socket.sendto", "socket.sendmsg"}
_LOOKUPS = {"socket.getaddrinfo", "socket.gethostbyname"}
_installed: Policy | None = None


def _report(event: str, target: Any) -> None:
    msg = f"internlm-netguard: refused {event} to {target!r}: it would leave this machine"
    path = os.environ.get(ENV_LOG)
    if path:
        entry = {
            "pid": os.getpid(),
            "argv": sys.argv[:4],
            "event": event,
            "target": repr(target),
            "stack": traceback.format_stack(limit=12)[:-2],
        }
        try:
            with open(path, "a") as f:
                f.write(json.dumps(entry) + "\n")
        except OSError:
            pass
    with contextlib.suppress(OSError, ValueError):
        sys.stderr.write(msg + "\n")
    raise OffMachineConnection(msg)


def _hook(event: str, args: tuple[Any, ...]) -> None:
    policy = _installed
    if policy is None:
        return
    if event in _WATCHED:
        address = args[1] if len(args) > 1 else None
        if address is not None and not policy.address_allowed(address):
            _report(event, address)
    elif event in _LOOKUPS:
        host = args[0] if args else None
        if not policy.host_allowed(host):
            _report(event, host)


def install(extra: Iterable[IPNetwork] | None = None) -> Policy:
    """Install the guard in this process (idempotent; audit hooks cannot be removed)."""
    global _installed
    if _installed is None:
        nets = list(extra) if extra is not None else _networks(os.environ.get(ENV_ALLOW, ""))
        _installed = Policy(nets)
        sys.addaudithook(_hook)
    return _installed


def installed() -> bool:
    return _installed is not None


def child_env(log_path: str, base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment that makes child Python processes install the guard too."""
    env = dict(os.environ if base is None else base)
    here = os.path.dirname(os.path.abspath(__file__))
    parts = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and p != here]
    env["PYTHONPATH"] = os.pathsep.join([here, *parts])
    env[ENV_ON] = "1"
    env[ENV_LOG] = log_path
    return env


def read_log(path: str) -> list[dict[str, Any]]:
    try:
        with open(path) as f:
            return [json.loads(line) for line in f if line.strip()]
    except FileNotFoundError:
        return []


def _smoke() -> None:  # pragma: no cover - ``python -m internlm_netguard`` for a manual check
    install()
    try:
        socket.getaddrinfo("example.com", 80)
    except OffMachineConnection as e:
        print(f"guard works: {e}")


if __name__ == "__main__":  # pragma: no cover
    _smoke()
