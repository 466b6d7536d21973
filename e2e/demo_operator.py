"""The real operator, run here as a local process with the chart Deployment's arguments and a
token of its ServiceAccount (exactly the chart's RBAC)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from demo_base import HERE, OPERATOR_BIN, STATE, DemoError, Kube, note, say, state_dir
from demo_setup import Options

sys.path.insert(0, str(HERE / "cluster"))

import localcluster


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
