"""`make demo` end to end, on the session's cluster: the chart installed, the operator running
locally with the chart's ServiceAccount token (so the chart's RBAC is sufficient for the whole
pipeline), samples/pipeline.yaml driven to every resource Complete / Ready."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO, Cluster

from .conftest import Helm


def test_demo_runs_the_pipeline_with_the_charts_permissions(
    cluster: Cluster, khelm: Helm, crds: list[str], session_token: str, tmp_path: Path
) -> None:
    # Outside the in-process test operator's `it-<token>-*` glob: only the chart's operator
    # may reconcile the demo.
    ns = f"demo-{session_token}"
    names = [
        f"--release=demo-{session_token}",
        f"--operator-namespace={ns}-op",
        f"--namespace={ns}",
    ]
    env = {**os.environ, "INTERNLM_DEMO_STATE": str(tmp_path / "demo")}
    cmd = [sys.executable, str(REPO / "e2e" / "demo.py")]
    try:
        res = subprocess.run(
            [*cmd, "up", *names, "--no-setup", "--namespaced", "--timeout=180", "--run-seconds=2"],
            capture_output=True,
            text=True,
            env=env,
            timeout=270,
            check=False,
        )
        out = res.stdout + res.stderr
        assert res.returncode == 0, out[-6000:]
        assert "every resource is Complete or Ready" in out, out[-3000:]
        assert "Agent endpoint: http" in out, out[-3000:]
        assert f"system:serviceaccount:{ns}-op:demo-{session_token}-internlm-operator" in out
        final = out[out.rindex("KIND") :]
        for kind in ("TrainJob", "FineTune", "EvalRun", "ModelServe", "Agent"):
            assert kind in final
    finally:
        subprocess.run(
            [*cmd, "down", *names, "--keep-cluster"],
            capture_output=True,
            text=True,
            env=env,
            timeout=180,
            check=False,
        )
