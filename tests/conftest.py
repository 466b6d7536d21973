"""Shared fixtures: the local Kubernetes control plane and a fresh namespace per test.

The ``cluster`` fixture reuses a running local cluster (``make cluster-up``) or starts one for
the session and stops it at the end (set ``INTERNLM_KEEP_CLUSTER=1`` to keep it). Tests that
use it are marked ``cluster`` automatically.
"""

from __future__ import annotations

import itertools
import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "e2e" / "cluster"))
sys.path.insert(0, str(REPO / "e2e" / "netguard"))

import internlm_netguard  # noqa: E402
import localcluster  # noqa: E402

CLUSTER_FIXTURES = {"cluster", "namespace", "crds", "k8s", "operator"}


def pytest_configure(config: pytest.Config) -> None:
    """Nothing the suite starts may talk to an address off this machine: the guard refuses it
    in this process and, through the environment, in every Python process started from here
    (the operator, the workload stages, helpers). Refusals are logged to one file per session,
    and a non-empty file fails the session even when a caller swallowed the error."""
    if os.environ.get("INTERNLM_NETGUARD_LOG") and internlm_netguard.installed():
        return
    # One log per session: sessions side by side in one checkout never mix their findings.
    log = Path(config.rootpath) / ".pytest-netguard" / f"{os.getpid()}.log"
    log.parent.mkdir(exist_ok=True)
    log.unlink(missing_ok=True)
    os.environ.update(internlm_netguard.child_env(str(log)))
    internlm_netguard.install()
    config.stash[_NETGUARD_LOG] = log


_NETGUARD_LOG = pytest.StashKey[Path]()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    log = session.config.stash.get(_NETGUARD_LOG, None)
    if log is None:
        return
    refused = internlm_netguard.read_log(str(log))
    if refused:
        lines = [f"{len(refused)} attempt(s) to reach an address off this machine ({log}):"]
        for r in refused[:20]:
            lines.append(f"  pid {r['pid']} {' '.join(r['argv'])}: {r['event']} {r['target']}")
            lines.extend("    " + ln.rstrip() for ln in r["stack"][-4:])
        sys.stderr.write("\n".join(lines) + "\n")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if CLUSTER_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.cluster)


def run_tool(
    name: str,
    command: list[str],
    args: tuple[str, ...],
    *,
    input: str | None = None,
    env: dict[str, str] | None = None,
    check: bool = True,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """Run ``command + args`` capturing text output; with ``check``, a non-zero exit fails the
    test with the output (``name args`` says which command)."""
    res = subprocess.run(
        [*command, *args],
        input=input,
        text=True,
        capture_output=True,
        timeout=timeout,
        env=env,
        check=False,
    )
    if check and res.returncode != 0:
        raise AssertionError(
            f"{name} {' '.join(args)} failed ({res.returncode}):\n{res.stderr}{res.stdout}"
        )
    return res


@dataclass
class Cluster:
    kubeconfig: Path
    kubectl_bin: Path
    _clients: list[Any] = field(default_factory=list)

    def kubectl(
        self,
        *args: str,
        input: str | None = None,
        check: bool = True,
        timeout: float = 120,
    ) -> subprocess.CompletedProcess[str]:
        return run_tool(
            "kubectl",
            [str(self.kubectl_bin), "--kubeconfig", str(self.kubeconfig)],
            args,
            input=input,
            check=check,
            timeout=timeout,
        )

    def get(self, *args: str) -> dict[str, Any]:
        """``kubectl get ... -o json`` parsed."""
        out: dict[str, Any] = json.loads(self.kubectl("get", *args, "-o", "json").stdout)
        return out

    def merge_patch(
        self,
        kind: str,
        name: str,
        namespace: str,
        patch: dict[str, Any],
        *,
        subresource: str | None = None,
        check: bool = True,
    ) -> subprocess.CompletedProcess[str]:
        """``kubectl patch --type=merge`` of an object (or of its ``subresource``)."""
        sub = [f"--subresource={subresource}"] if subresource else []
        return self.kubectl(
            "patch",
            kind,
            name,
            "-n",
            namespace,
            *sub,
            "--type=merge",
            "-p",
            json.dumps(patch),
            check=check,
        )

    def apply(self, manifest: dict[str, Any] | str, namespace: str | None = None) -> None:
        text = manifest if isinstance(manifest, str) else json.dumps(manifest)
        ns = ["-n", namespace] if namespace else []
        self.kubectl("apply", "--server-side", "--force-conflicts", *ns, "-f", "-", input=text)

    def api_client(self) -> Any:
        from kubernetes import config

        client = config.new_client_from_config(config_file=str(self.kubeconfig))
        self._clients.append(client)
        return client


def wait_until(
    what: str,
    check: Callable[[], Any],
    timeout: float = 90,
    interval: float = 0.25,
    explain: Callable[[], Any] | None = None,
) -> Any:
    """Poll ``check`` until it returns something truthy; fail with ``what`` on timeout, plus
    whatever ``explain`` returns then (the state a reader needs to see why)."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    detail = ""
    if explain is not None:
        try:
            detail = f"\n{explain()!r}"
        except Exception as e:  # the explanation must never hide the timeout
            detail = f"\n(explain failed: {e})"
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r}){detail}")


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    started_here = not localcluster.healthy()
    if started_here and localcluster.main(["up"]) != 0:
        pytest.fail("the local cluster did not start (see the [localcluster] lines above)")
    c = Cluster(
        kubeconfig=localcluster.STATE / "kubeconfig",
        kubectl_bin=localcluster.binaries()["kubectl"],
    )
    yield c
    for client in c._clients:
        client.close()
    if started_here and not os.environ.get("INTERNLM_KEEP_CLUSTER"):
        localcluster.main(["down"])


@pytest.fixture(scope="session")
def session_token() -> str:
    """Namespaces of this pytest session are ``it-<token>-<n>``, so an operator under test can
    watch exactly them and sessions running side by side never touch each other's objects."""
    return secrets.token_hex(3)


_counter = itertools.count()


@pytest.fixture
def namespace(cluster: Cluster, session_token: str) -> Iterator[str]:
    name = f"it-{session_token}-{next(_counter)}"
    cluster.kubectl("create", "namespace", name)
    wait_until(
        f"ServiceAccount default in {name}",
        lambda: (
            cluster.kubectl("get", "serviceaccount", "default", "-n", name, check=False).returncode
            == 0
        ),
        timeout=60,
    )
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture(scope="session")
def crds(cluster: Cluster) -> list[str]:
    """Installs the generated CRDs from crds/ and waits until they are Established."""
    files = sorted((REPO / "crds").glob("*.yaml"))
    if not files:
        pytest.fail("crds/ is empty: run `make crds`")
    names = []
    for f in files:
        cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(f))
        import yaml

        for doc in yaml.safe_load_all(f.read_text()):
            if doc and doc.get("kind") == "CustomResourceDefinition":
                names.append(doc["metadata"]["name"])
    cluster.kubectl(
        "wait", "--for=condition=Established", "--timeout=60s", *[f"crd/{n}" for n in names]
    )
    return names
