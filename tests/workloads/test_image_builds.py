"""The images really build here, from their own Dockerfiles, without a Docker engine or a
registry (images/build.py: buildah, chroot isolation, vfs, a debootstrapped Debian base), and
really work: each built image's entry point and main libraries run in its own rootfs as its own
user, and it holds exactly its lock file's pins.

Cold, this builds the images (minutes; torch images download torch once into the host's uv
cache). Warm, the archives are reused and only the checks run again (``--verify``).
Skipped where buildah & co. are missing or the tests do not run as root.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from .conftest import REPO

pytestmark = [
    pytest.mark.workload,
    pytest.mark.skipif(
        os.geteuid() != 0
        or any(shutil.which(t) is None for t in ("buildah", "umoci", "skopeo", "debootstrap")),
        reason="needs root, buildah, umoci, skopeo and debootstrap (apt)",
    ),
]

# small ones first, then one torch image
CHECKED = ["operator", "agent", "pretrain"]
BUILD = [sys.executable, str(REPO / "images" / "build.py")]


def lock_pins(image: str) -> set[str]:
    pins = set()
    for line in (REPO / "images" / image / "requirements.lock").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, version = line.split("==")
            pins.add(f"{canonical(name)}=={version}")
    return pins


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@pytest.fixture(scope="module")
def build(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    summary = tmp_path_factory.mktemp("images") / "summary.json"
    res = subprocess.run(
        [*BUILD, "--verify", "--json", str(summary), *CHECKED],
        capture_output=True,
        text=True,
        check=False,
        timeout=3300,
    )
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-4000:]
    print(res.stdout[-3000:])
    data: dict[str, Any] = json.loads(summary.read_text())
    data["by_name"] = {i["name"]: i for i in data["images"]}
    return data


def checks(info: dict[str, Any]) -> list[dict[str, Any]]:
    """The checks images/build.py ran in this image during the fixture's run."""
    result: list[dict[str, Any]] = info["verified"]["checks"]
    return result


@pytest.mark.timeout(3600)
def test_images_build_and_archive(build: dict[str, Any]) -> None:
    for name in CHECKED:
        info = build["by_name"][name]
        assert Path(info["archive"]).is_file(), info
        assert info["ref"] == f"localhost/internlm-operator/{name}:cpu"
        # the checks ran in this run, built or cached
        assert "verify_s" in info and info["verified"]["image"] == info["ref"], info


@pytest.mark.timeout(600)
def test_warm_rebuild_is_a_no_op(build: dict[str, Any], tmp_path: Path) -> None:
    summary = tmp_path / "again.json"
    subprocess.run([*BUILD, "--json", str(summary), *CHECKED], check=True, capture_output=True)
    again = json.loads(summary.read_text())
    assert all(i["cached"] for i in again["images"]), again
    assert again["steps_s"] == {}, "base images rebuilt"
    assert again["total_s"] < 60, again


def test_operator_image_runs_its_entry_point(build: dict[str, Any]) -> None:
    help_, imports, _ = checks(build["by_name"]["operator"])
    assert help_["user"] == "65532:65532" and help_["cmd"] == ["internlm-operator", "--help"]
    assert help_["rc"] == 0 and "usage: internlm-operator" in help_["stdout"]
    assert "internlm_operator 0.1.0" in imports["stdout"] and "kopf 1.45.2" in imports["stdout"]


@pytest.mark.parametrize(
    ("image", "libraries"),
    [
        ("agent", ["lagent 0.2.4", "agentlego.tools 0.2.0"]),
        ("pretrain", ["torch 2.12.1", "deepspeed 0.19.8", "transformers 5.24.0"]),
    ],
)
def test_workload_image_runs_its_entry_point(
    build: dict[str, Any], image: str, libraries: list[str]
) -> None:
    help_, imports, _ = checks(build["by_name"][image])
    assert help_["user"] == "65532:65532", "runs as the image's own user"
    assert help_["cmd"] == ["python", "-m", "internlm_workloads", "--help"]
    assert help_["rc"] == 0 and "stages: pretrain, finetune, eval, serve, agent" in help_["stdout"]
    for lib in libraries:
        assert lib in imports["stdout"], imports


@pytest.mark.parametrize("image", CHECKED)
def test_image_holds_exactly_its_lock(build: dict[str, Any], image: str) -> None:
    *_, freeze = checks(build["by_name"][image])
    installed = {
        canonical(d.split("==")[0]) + "==" + d.split("==")[1] for d in json.loads(freeze["stdout"])
    }
    missing = lock_pins(image) - installed
    assert not missing, f"lock pins not in the image: {sorted(missing)}"
    own = "internlm-operator" if image == "operator" else "internlm-workloads"
    extra = {d for d in installed - lock_pins(image) if not d.startswith(own + "==")}
    # a venv made by `python -m venv` carries pip (and setuptools on 3.11) as well
    assert {d.split("==")[0] for d in extra} <= {"pip", "setuptools"}, sorted(extra)
