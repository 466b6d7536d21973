"""A real-node cluster of a test module's own: its state directory and port base, the real
node ``real-0`` beside the simulated ones, and an exclusive hold on the host while it runs.

Only one real node can exist per host (the ``lo`` address and the CNI bridge), so every test
module that brings one up does it through :func:`real_node_cluster`, which first takes a
host-wide lock (``<cache>/realnode.lock``): modules of one session, and sessions side by side
(another engineer's ``make test``), wait for each other instead of colliding. A real node that
runs without the lock (one started by hand) is waited for, then the module is skipped with
a message saying which node is in the way. The cluster is always taken down at the end.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import localcluster
import pytest
import realnode

from tests.conftest import REPO, Cluster

LOCK = localcluster.CACHE / "realnode.lock"
# How long a module waits for another real node (another module or session) to go away.
WAIT_S = float(os.environ.get("INTERNLM_REAL_NODE_WAIT", "1500"))


def missing_prerequisites() -> str:
    """Why no real node can run here ('' when one can)."""
    if sys.platform != "linux" or os.geteuid() != 0:
        return "the real node needs root on Linux"
    missing = [n for n, p in realnode.binaries().items() if not os.access(p, os.X_OK)]
    missing += [t for t in ("debootstrap", "conntrack", "ip", "openssl") if not shutil.which(t)]
    if missing:
        return f"missing for the real node: {', '.join(missing)} (.ci/run installs them)"
    return ""


def other_real_node() -> bool:
    return localcluster.lo_has(localcluster.REAL_NODE_IP) or realnode.link_exists(realnode.BRIDGE)


def cluster_env(state: Path, port_base: int) -> dict[str, str]:
    return {
        "INTERNLM_CLUSTER_STATE": str(state),
        "INTERNLM_CLUSTER_PORT_BASE": str(port_base),
        "INTERNLM_REAL_NODE": "1",
    }


def down(env: dict[str, str]) -> None:
    subprocess.run(
        [sys.executable, str(REPO / "e2e" / "cluster" / "localcluster.py"), "down"],
        env={**os.environ, **env},
        timeout=300,
        check=False,
    )


@contextlib.contextmanager
def exclusive(what: str, timeout: float = WAIT_S) -> Iterator[None]:
    """Hold the host's real-node lock (waiting for whoever holds it)."""
    LOCK.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + timeout
    with LOCK.open("a+") as f:
        said = False
        while True:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    pytest.fail(f"{what}: another real-node cluster held {LOCK} for {timeout}s")
                if not said:
                    sys.stderr.write(f"[{what}] waiting for another real-node cluster ({LOCK})\n")
                    said = True
                time.sleep(2)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def wait_for_no_other_node(what: str, timeout: float = WAIT_S) -> None:
    """A real node that runs outside the lock (started by hand) is waited for, then skipped."""
    deadline = time.monotonic() + timeout
    while other_real_node():
        if time.monotonic() > deadline:
            pytest.skip(
                f"{what}: a real node runs on this host outside the test lock "
                f"({localcluster.REAL_NODE_IP} on lo or bridge {realnode.BRIDGE}); only "
                "one can: stop it with its own `localcluster.py down`"
            )
        time.sleep(2)


class RealCluster(Cluster):
    state: Path
    env: dict[str, str]

    def launcher(self, script: str, *args: str, timeout: float = 300) -> str:
        res = subprocess.run(
            [sys.executable, str(REPO / "e2e" / "cluster" / script), *args],
            env={**os.environ, **self.env},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if res.returncode != 0:
            raise AssertionError(f"{script} {' '.join(args)} failed:\n{res.stderr}{res.stdout}")
        sys.stderr.write(res.stderr)
        return res.stdout

    def import_image(self, archive: Path | str, timeout: float = 900) -> None:
        self.launcher("realnode.py", "import", str(archive), timeout=timeout)

    def remove_image(self, ref: str, timeout: float = 600) -> None:
        self.launcher("realnode.py", "rmi", ref, timeout=timeout)


def make_cluster(state: Path, port_base: int) -> RealCluster:
    c = RealCluster(kubeconfig=state / "kubeconfig", kubectl_bin=localcluster.binaries()["kubectl"])
    c.state = state
    c.env = cluster_env(state, port_base)
    return c


@contextlib.contextmanager
def real_node_cluster(
    what: str, state: Path, port_base: int, up: bool = True
) -> Iterator[RealCluster]:
    """The module's own real-node cluster, exclusively; taken down at the end, always. With
    ``up=False`` the caller brings it up (e.g. after recording the host's state)."""
    why = missing_prerequisites()
    if why:
        pytest.skip(why)
    c = make_cluster(state, port_base)
    with exclusive(what):
        if state.exists():
            down(c.env)  # what a killed run left
        wait_for_no_other_node(what)
        try:
            if up:
                c.launcher("localcluster.py", "up")
            yield c
        finally:
            down(c.env)  # always, even when a test failed: the host must be left as found


IMAGES_OUT = (
    Path(os.environ.get("INTERNLM_CACHE", Path.home() / ".cache" / "internlm-operator"))
    / "images"
    / "out"
)


def cached_archive(name: str) -> Path | None:
    """The newest complete archive images/build.py left for ``name`` (its verify report next
    to it marks it complete), whatever sources it was built from."""
    done = [
        p
        for p in IMAGES_OUT.glob(f"{name}-cpu-*.oci.tar")
        if p.with_suffix("").with_suffix(".verify.json").exists()
    ]
    return max(done, key=lambda p: p.stat().st_mtime) if done else None


def image_archive(name: str, tmp: Path) -> Path:
    """The CPU image ``name`` as an OCI archive, built by images/build.py from the current
    sources (a no-op when its inputs are cached; minutes cold). With INTERNLM_REAL_IMAGES=cached
    (or a comma-separated list of names) the newest archive already built is used instead:
    every workload image hashes images/workloads, so any edit there would rebuild them all."""
    wanted = os.environ.get("INTERNLM_REAL_IMAGES", "")
    if wanted == "cached" or name in wanted.split(","):
        got = cached_archive(name)
        if got is None:
            pytest.fail(f"INTERNLM_REAL_IMAGES={wanted} but no {name} archive in {IMAGES_OUT}")
        return got
    summary = tmp / f"{name}.json"
    t0 = time.monotonic()
    res = subprocess.run(
        [sys.executable, str(REPO / "images" / "build.py"), "--json", str(summary), name],
        capture_output=True,
        text=True,
        timeout=3600,
        check=False,
    )
    assert res.returncode == 0, f"images/build.py {name} failed:\n{res.stderr[-4000:]}"
    sys.stderr.write(f"[realnode] {name} image in {time.monotonic() - t0:.0f}s\n")
    return Path(json.loads(summary.read_text())["images"][0]["archive"])
