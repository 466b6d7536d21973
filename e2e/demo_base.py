"""What every part of ``make demo`` uses: its paths and names, its output and errors, and how
it runs kubectl and helm. Standard library only, like demo.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE / "cluster"))

import localcluster  # noqa: E402

CHART = REPO / "helm" / "internlm-operator"
PIPELINE = REPO / "samples" / "pipeline.yaml"
STATE = Path(os.environ.get("INTERNLM_DEMO_STATE", REPO / "e2e" / ".demo"))
VENV_PY = REPO / ".venv" / "bin" / "python"
OPERATOR_BIN = REPO / ".venv" / "bin" / "internlm-operator"

KINDS = ("TrainJob", "FineTune", "EvalRun", "ModelServe", "Agent")
PLURALS = {
    "TrainJob": "trainjobs",
    "FineTune": "finetunes",
    "EvalRun": "evalruns",
    "ModelServe": "modelserves",
    "Agent": "agents",
}
BATCH = {"TrainJob", "FineTune", "EvalRun"}
CRD_NAMES = [f"{p}.internlm.io" for p in PLURALS.values()]
# Claims samples/pipeline.yaml reads from and writes to.
PIPELINE_CLAIMS = ("pretrain-corpus", "sft-data", "model-store")

# Pods annotated by the demo to end (kwok's pod-exit stage, e2e/cluster/stages.yaml).
EXIT_CODE = "e2e.internlm.io/exit-code"
EXIT_MESSAGE = "e2e.internlm.io/message"


def say(msg: str) -> None:
    print(f"\033[1m==>\033[0m {msg}" if sys.stdout.isatty() else f"==> {msg}", flush=True)


def note(msg: str) -> None:
    print(f"    {msg}", flush=True)


def state_dir() -> Path:
    STATE.mkdir(parents=True, exist_ok=True)
    (STATE / ".gitignore").write_text("*\n")
    return STATE


class DemoError(RuntimeError):
    """Something the user can act on; printed without a traceback."""


# ------------------------------------------------------------------------------- binaries


def helm_binary() -> Path:
    """Where ``build-binaries.sh`` (``make binaries``) puts helm."""
    v = localcluster.versions()["HELM_VERSION"]
    return localcluster.CACHE / "bin" / f"helm-{v}" / "helm"


def kubectl_binary() -> Path:
    return localcluster.binaries()["kubectl"]


def require_helm() -> Path:
    helm = helm_binary()
    if not os.access(helm, os.X_OK):
        raise DemoError(
            f"helm not found at {helm}\n"
            "build it with `make binaries` (or `bash e2e/cluster/build-binaries.sh helm`, ~2 min)"
        )
    return helm


# ------------------------------------------------------------------------------- commands


def run(
    argv: list[str | Path],
    *,
    input: str | None = None,
    check: bool = True,
    env: dict[str, str] | None = None,
    timeout: float = 300,
) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(
        [str(a) for a in argv],
        input=input,
        text=True,
        capture_output=True,
        env=env,
        timeout=timeout,
        check=False,
    )
    if check and res.returncode != 0:
        cmd = " ".join(str(a) for a in argv[:6])
        raise DemoError(f"`{cmd} ...` failed ({res.returncode}):\n{res.stderr}{res.stdout}")
    return res


@dataclass
class Kube:
    kubeconfig: Path

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        return run(
            [kubectl_binary(), "--kubeconfig", self.kubeconfig, *args],
            input=input,
            check=check,
            timeout=timeout,
        )

    def json(self, *args: str) -> Any:
        return json.loads(self.kubectl("get", *args, "-o", "json").stdout)

    def apply(self, obj: dict[str, Any] | list[dict[str, Any]]) -> None:
        items = obj if isinstance(obj, list) else [obj]
        doc = {"apiVersion": "v1", "kind": "List", "items": items}
        self.kubectl(
            "apply",
            "--server-side",
            "--force-conflicts",
            "--field-manager=demo",
            "-f",
            "-",
            input=json.dumps(doc),
        )

    def helm(
        self, *args: str, check: bool = True, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        return run(
            [require_helm(), "--kubeconfig", self.kubeconfig, *args], check=check, timeout=timeout
        )
