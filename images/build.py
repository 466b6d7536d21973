#!/usr/bin/env python3
"""Build the project's images (CPU variant) with buildah: no Docker engine, no registry.

    images/build.py [--verify] [--keep] [NAME ...]

NAME: operator agent pretrain finetune eval serve (default: all, in that order).

Every image is built from its own images/<name>/Dockerfile, the same file the GPU/production
variant is built from, with build arguments that swap the registry images for local ones:

* ``localhost/debian:bookworm-minbase``: ``debootstrap --variant=minbase bookworm`` from the
  host's Debian mirror (read from /etc/apt/sources.list.d/debian.sources, never hard-coded),
  stored as ``<cache>/debian-bookworm-minbase.tar`` (docker-archive; an existing tar is reused,
  docker- or oci-archive, e.g. one made for the real node).
* ``localhost/internlm-base:bookworm``: the minbase plus Debian's python3.11
  (images/base/Dockerfile).
* ``localhost/uv:0.13.9``: ``/uv`` and ``/uvx`` from the uv 0.13.9 wheel on PyPI, like the
  ghcr.io/astral-sh/uv image.

Then ``localhost/internlm-operator/<name>:cpu`` for each NAME (default: all), written to
``<cache>/out/<name>-cpu-<inputs>.oci.tar``, where <inputs> hashes the Dockerfile, the lock file,
the sources the Dockerfile copies, the bases and the build arguments: a warm run is a no-op.
Each new image is checked in its own rootfs, as its own user (``buildah run``, chroot isolation):
its entry point's ``--help`` and an import of its main libraries (CHECKS below); the result is
kept beside the archive (``.verify.json``). ``--verify`` runs the checks again on cached images.

Builds run with ``--isolation chroot --storage-driver vfs --pull=never`` in buildah's own store
under the cache; the host CA bundle is mounted for uv/pip (TLS may be intercepted), and the
host's uv cache is mounted so the wheels (torch and its CUDA libraries) are downloaded once.
vfs keeps each layer as a full copy, so images bigger than --keep-below (default 1 GiB) are
removed from buildah's store once archived; their archive is what ships.

<cache> is ``$INTERNLM_CACHE/images`` (default ``~/.cache/internlm-operator/images``).
Needs root, buildah, umoci, skopeo, debootstrap (Debian: apt-get install buildah umoci skopeo
debootstrap).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CACHE = Path(os.environ.get("INTERNLM_CACHE", Path.home() / ".cache" / "internlm-operator"))
IMAGES = CACHE / "images"
OUT = IMAGES / "out"
WORK = IMAGES / "work"
MINBASE_TAR = IMAGES / "debian-bookworm-minbase.tar"

MINBASE = "localhost/debian:bookworm-minbase"
BASE = "localhost/internlm-base:bookworm"
UV_VERSION = "0.13.9"
UV = f"localhost/uv:{UV_VERSION}"
TAG = "cpu"
ALL = ["operator", "agent", "pretrain", "finetune", "eval", "serve"]
LABEL = "io.internlm.build-inputs"
# bump when this script changes what it builds
RECIPE = "1"

CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
IN_BUILD_CA = "/run/host-ca.crt"
IN_BUILD_UV_CACHE = "/run/uv-cache"

# What each image copies from the repo (besides its Dockerfile and lock file).
SOURCES = {"operator": ["pyproject.toml", "README.md", "operator/src"]}
WORKLOAD_SOURCES = ["images/workloads"]

# (user, command) run in the image's rootfs: its entry point, then its main libraries.
_WL_HELP = ["python", "-m", "internlm_workloads", "--help"]
_WL_USER = "65532:65532"


def _imports(*mods: str) -> list[str]:
    code = (
        "import importlib, importlib.metadata as md\n"
        f"for m, d in {[m.split(':') for m in mods]!r}:\n"
        "    importlib.import_module(m)\n"
        "    print(m, md.version(d))\n"
    )
    return ["python", "-c", code]


CHECKS: dict[str, list[tuple[str, list[str]]]] = {
    "operator": [
        ("65532:65532", ["internlm-operator", "--help"]),
        ("65532:65532", _imports("internlm_operator:internlm-operator", "kopf:kopf")),
    ],
    "agent": [
        (_WL_USER, _WL_HELP),
        # agentlego.tools imports every tool module: what the agent loads at start-up
        (_WL_USER, _imports("lagent:lagent", "agentlego.tools:agentlego")),
    ],
    "pretrain": [
        (_WL_USER, _WL_HELP),
        (_WL_USER, _imports("torch:torch", "deepspeed:deepspeed", "transformers:transformers")),
    ],
    "finetune": [
        (_WL_USER, _WL_HELP),
        (
            _WL_USER,
            # cv2: what xtuner train's mmengine runner loads (it needs libxcb unless headless)
            _imports(
                "torch:torch",
                "xtuner:xtuner",
                "peft:peft",
                "deepspeed:deepspeed",
                "cv2:opencv-python-headless",
            ),
        ),
    ],
    "eval": [(_WL_USER, _WL_HELP), (_WL_USER, _imports("torch:torch", "opencompass:opencompass"))],
    "serve": [(_WL_USER, _WL_HELP), (_WL_USER, _imports("torch:torch", "lmdeploy:lmdeploy"))],
}
# Every image's distributions, compared with its lock file by tests/workloads/test_image_builds.py.
FREEZE = [
    "python",
    "-c",
    "import importlib.metadata as m, json; print(json.dumps(sorted("
    "f\"{d.metadata['Name']}=={d.version}\" for d in m.distributions())))",
]
# DeepSpeed picks its accelerator at import; there is no GPU in a CPU check.
CHECK_ENV = ["DS_ACCELERATOR=cpu"]


def log(msg: str) -> None:
    print(f"[build] {msg}", flush=True)


def run(cmd: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    kw.setdefault("check", True)
    kw.setdefault("text", True)
    return subprocess.run(cmd, **kw)  # type: ignore[call-overload, no-any-return]


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


@contextlib.contextmanager
def timed(what: str, timings: dict[str, float]) -> Iterator[None]:
    t0 = time.monotonic()
    yield
    timings[what] = time.monotonic() - t0
    log(f"{what}: {timings[what]:.1f}s")


def buildah(*args: str) -> list[str]:
    return [
        "buildah",
        "--root",
        str(IMAGES / "buildah" / "root"),
        "--runroot",
        str(IMAGES / "buildah" / "run"),
        "--storage-driver",
        "vfs",
        *args,
    ]


def image_labels(ref: str) -> dict[str, str] | None:
    res = run(buildah("inspect", "--type", "image", ref), capture_output=True, check=False)
    if res.returncode != 0:
        return None
    return json.loads(res.stdout).get("OCIv1", {}).get("config", {}).get("Labels") or {}


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def hash_paths(paths: list[str], h: hashlib._Hash) -> None:
    """Hash files (sorted, by repo-relative path and content), skipping build litter."""
    for rel in paths:
        root = REPO / rel
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for p in files:
            parts = p.relative_to(REPO).parts
            if any(x == "__pycache__" or x.endswith(".egg-info") or x == "build" for x in parts):
                continue
            if p.suffix == ".pyc":
                continue
            h.update(str(p.relative_to(REPO)).encode() + b"\0" + p.read_bytes() + b"\0")


# --- the Debian minbase ---------------------------------------------------------------------


def archive_transport(path: Path) -> str:
    with tarfile.open(path) as t:
        names = set(t.getnames())
    if "oci-layout" in names or "./oci-layout" in names:
        return "oci-archive"
    if "manifest.json" in names or "./manifest.json" in names:
        return "docker-archive"
    raise SystemExit(f"{path}: neither an oci-archive nor a docker-archive")


def debian_mirror() -> str:
    sources = Path("/etc/apt/sources.list.d/debian.sources")
    if sources.exists():
        for line in sources.read_text().splitlines():
            if line.startswith("URIs:"):
                return line.split()[1]
    for line in Path("/etc/apt/sources.list").read_text().splitlines():
        fields = line.split()
        if fields[:1] == ["deb"] and "bookworm" in fields:
            return next(f for f in fields[1:] if "://" in f)
    raise SystemExit("no Debian mirror found in /etc/apt/sources.list{,.d/debian.sources}")


def make_minbase() -> None:
    """debootstrap minbase -> one-layer image (umoci) -> docker-archive (skopeo)."""
    WORK.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=WORK, prefix="minbase-") as tmp:
        w = Path(tmp)
        rootfs = w / "rootfs"
        run(["debootstrap", "--variant=minbase", "bookworm", str(rootfs), debian_mirror()])
        for d in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for p in (rootfs / d).glob("*"):
                if p.is_file():
                    p.unlink()
        layer = w / "layer.tar"
        run(["tar", "-C", str(rootfs), "--numeric-owner", "-cf", str(layer), "."])
        shutil.rmtree(rootfs)
        oci = f"{w}/oci"
        run(["umoci", "init", "--layout", oci])
        run(["umoci", "new", "--image", f"{oci}:img"])
        run(["umoci", "raw", "add-layer", "--image", f"{oci}:img", str(layer)])
        run(
            [
                "umoci", "config", "--image", f"{oci}:img", "--os", "linux",
                "--architecture", "amd64", "--config.cmd", "/bin/bash", "--config.env",
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            ]
        )  # fmt: skip
        part = MINBASE_TAR.with_suffix(".tar.part")
        part.unlink(missing_ok=True)
        run(["skopeo", "copy", "-q", f"oci:{oci}:img", f"docker-archive:{part}:{MINBASE}"])
        part.rename(MINBASE_TAR)


def ensure_minbase(timings: dict[str, float]) -> str:
    with locked(IMAGES / ".debian-bookworm-minbase.lock"):
        if not MINBASE_TAR.exists():
            with timed("debian minbase (debootstrap)", timings):
                make_minbase()
    digest = sha256_file(MINBASE_TAR)[:16]
    if (image_labels(MINBASE) or {}).get(LABEL) != digest:
        with timed("import minbase", timings):
            transport = archive_transport(MINBASE_TAR)
            res = run(buildah("pull", "-q", f"{transport}:{MINBASE_TAR}"), capture_output=True)
            image_id = res.stdout.split()[-1]
            # label it with the archive's digest, so a new archive is imported again
            ctr = run(buildah("from", "--pull-never", image_id), capture_output=True).stdout
            ctr = ctr.strip()
            run(buildah("config", "--label", f"{LABEL}={digest}", ctr))
            run(buildah("commit", "-q", "--rm", ctr, MINBASE), capture_output=True)
            run(buildah("rmi", image_id), capture_output=True, check=False)
    return digest


# --- uv ----------------------------------------------------------------------------------------


def pip_command() -> list[str]:
    """pip of this interpreter, else the system python3's (a venv made by uv has no pip)."""
    if importlib.util.find_spec("pip") is not None:
        return [sys.executable, "-m", "pip"]
    for python in ("python3", "python3.11"):
        if (
            shutil.which(python)
            and subprocess.run(
                [python, "-m", "pip", "--version"], capture_output=True, check=False
            ).returncode
            == 0
        ):
            return [python, "-m", "pip"]
    sys.exit("images/build.py needs pip (to fetch the uv wheel): apt-get install python3-pip")


def ensure_uv(timings: dict[str, float]) -> str:
    inputs = hashlib.sha256(f"uv {UV_VERSION} {RECIPE}".encode()).hexdigest()[:16]
    if (image_labels(UV) or {}).get(LABEL) == inputs:
        return inputs
    with timed(f"uv image ({UV})", timings), tempfile.TemporaryDirectory(dir=WORK) as tmp:
        w = Path(tmp)
        run(
                [
                    *pip_command(), "download", "-q", "--no-deps",
                    "--only-binary=:all:", "--no-cache-dir", "--dest", str(w),
                    f"uv=={UV_VERSION}",
                ]
            )  # fmt: skip
        (wheel,) = w.glob(f"uv-{UV_VERSION}-*.whl")
        root = w / "root"
        root.mkdir()
        with zipfile.ZipFile(wheel) as z:
            for exe in ("uv", "uvx"):
                data = z.read(f"uv-{UV_VERSION}.data/scripts/{exe}")
                (root / exe).write_bytes(data)
                (root / exe).chmod(0o755)
        out = run([str(root / "uv"), "--version"], capture_output=True).stdout
        assert out.split()[1] == UV_VERSION, out
        ctr = run(buildah("from", "scratch"), capture_output=True).stdout.strip()
        run(buildah("copy", "-q", ctr, str(root / "uv"), str(root / "uvx"), "/"))
        run(buildah("config", "--label", f"{LABEL}={inputs}", ctr))
        run(buildah("commit", "-q", "--rm", ctr, UV), capture_output=True)
    return inputs


# --- images -------------------------------------------------------------------------------------


def ca_args() -> list[str]:
    if not CA_BUNDLE.exists():
        return []
    return [
        "--volume",
        f"{CA_BUNDLE}:{IN_BUILD_CA}:ro",
        "--build-arg",
        f"SSL_CERT_FILE={IN_BUILD_CA}",
        "--build-arg",
        f"PIP_CERT={IN_BUILD_CA}",
    ]


def uv_cache_dir() -> Path:
    res = run(["uv", "cache", "dir"], capture_output=True, check=False)
    if res.returncode == 0 and res.stdout.strip():
        return Path(res.stdout.strip())
    return Path(os.environ.get("UV_CACHE_DIR", Path.home() / ".cache" / "uv"))


def bud(dockerfile: Path, ref: str, inputs: str, args: dict[str, str], extra: list[str]) -> None:
    cmd = buildah(
        "bud", "--isolation", "chroot", "--pull=never", "--layers=false",
        "-f", str(dockerfile), "-t", ref, "--label", f"{LABEL}={inputs}",
    )  # fmt: skip
    for k, v in args.items():
        cmd += ["--build-arg", f"{k}={v}"]
    run([*cmd, *extra, str(REPO)])


def ensure_base(minbase: str, timings: dict[str, float]) -> str:
    h = hashlib.sha256(f"{RECIPE} {minbase}".encode())
    hash_paths(["images/base/Dockerfile"], h)
    inputs = h.hexdigest()[:16]
    if (image_labels(BASE) or {}).get(LABEL) != inputs:
        with timed(f"base image ({BASE})", timings):
            bud(REPO / "images/base/Dockerfile", BASE, inputs, {"BASE_IMAGE": MINBASE}, [])
    return inputs


def build_args(name: str) -> dict[str, str]:
    args = {"BASE_IMAGE": BASE}
    if name != "operator":
        args |= {
            "UV_IMAGE": UV,
            "PYTHON": "/usr/bin/python3.11",
            "UV_NO_CACHE": "0",
            "UV_CACHE_DIR": IN_BUILD_UV_CACHE,
        }
    return args


def image_inputs(name: str, base: str, uv: str) -> str:
    h = hashlib.sha256(f"{RECIPE} {base} {uv} {sorted(build_args(name).items())}".encode())
    hash_paths(
        [
            f"images/{name}/Dockerfile",
            f"images/{name}/requirements.lock",
            *SOURCES.get(name, WORKLOAD_SOURCES),
        ],
        h,
    )
    return h.hexdigest()[:16]


def archive_path(name: str, inputs: str) -> Path:
    return OUT / f"{name}-{TAG}-{inputs}.oci.tar"


def ref_of(name: str) -> str:
    return f"localhost/internlm-operator/{name}:{TAG}"


def verify(name: str, ref: str) -> dict[str, object]:
    """Run CHECKS[name] in a container of the image (chroot isolation), as its own user."""
    ctr = run(buildah("from", "--pull-never", ref), capture_output=True).stdout.strip()
    results: list[dict[str, object]] = []
    try:
        for user, cmd in [*CHECKS[name], (CHECKS[name][0][0], FREEZE)]:
            env: list[str] = []
            for e in CHECK_ENV:
                env += ["--env", e]
            res = run(
                buildah("run", "--isolation", "chroot", "--user", user, *env, ctr, "--", *cmd),
                capture_output=True,
                check=False,
            )
            results.append(
                {
                    "user": user,
                    "cmd": [*cmd[:2], "<freeze>" if cmd is FREEZE else "<imports>"]
                    if cmd[:2] == ["python", "-c"]
                    else cmd,
                    "rc": res.returncode,
                    "stdout": res.stdout if cmd is FREEZE else res.stdout[-2000:],
                    "stderr": res.stderr[-2000:],
                }
            )
            if res.returncode != 0:
                raise SystemExit(
                    f"{name}: check {cmd[:4]} as {user} failed (rc {res.returncode}):\n"
                    f"{res.stdout[-2000:]}\n{res.stderr[-3000:]}"
                )
    finally:
        run(buildah("rm", ctr), capture_output=True, check=False)
    return {"image": ref, "checks": results}


def build_image(name: str, base: str, uv: str, args: argparse.Namespace) -> dict[str, object]:
    ref = ref_of(name)
    inputs = image_inputs(name, base, uv)
    out = archive_path(name, inputs)
    report = out.with_suffix("").with_suffix(".verify.json")
    info: dict[str, object] = {"name": name, "ref": ref, "archive": str(out)}
    t0 = time.monotonic()
    if out.exists() and report.exists():
        info["cached"] = True
        if args.verify:
            if (image_labels(ref) or {}).get(LABEL) != inputs:
                log(f"{name}: loading {out.name} into buildah's store to verify it")
                run(buildah("pull", "-q", f"oci-archive:{out}"), capture_output=True)
            tv = time.monotonic()
            info["verified"] = verify(name, ref)
            report.write_text(json.dumps(info["verified"], indent=1))
            info["verify_s"] = round(time.monotonic() - tv, 1)
            log(f"{name}: verified ({info['verify_s']}s)")
    else:
        info["cached"] = False
        if (image_labels(ref) or {}).get(LABEL) != inputs:
            log(f"{name}: building {ref} (inputs {inputs})")
            tb = time.monotonic()
            extra = ca_args()
            if name != "operator":
                cache = uv_cache_dir()
                cache.mkdir(parents=True, exist_ok=True)
                extra += ["--volume", f"{cache}:{IN_BUILD_UV_CACHE}"]
            bud(REPO / f"images/{name}/Dockerfile", ref, inputs, build_args(name), extra)
            info["build_s"] = round(time.monotonic() - tb, 1)
        tv = time.monotonic()
        result = verify(name, ref)
        info["verify_s"] = round(time.monotonic() - tv, 1)
        tp = time.monotonic()
        OUT.mkdir(parents=True, exist_ok=True)
        # keep the newest earlier archive too: someone may be importing it right now
        earlier = sorted(OUT.glob(f"{name}-{TAG}-*.oci.tar"), key=lambda p: p.stat().st_mtime)
        for stale in earlier[:-1]:
            stale.unlink()
            stale.with_suffix("").with_suffix(".verify.json").unlink(missing_ok=True)
        part = out.with_suffix(".part")
        run(buildah("push", "-q", ref, f"oci-archive:{part}:{ref}"))
        part.rename(out)
        report.write_text(json.dumps(result, indent=1))
        info["verified"] = result
        info["archive_s"] = round(time.monotonic() - tp, 1)
    info["archive_mib"] = round(out.stat().st_size / 2**20)
    big = out.stat().st_size > args.keep_below
    if big and not args.keep and image_labels(ref) is not None:
        run(buildah("rmi", ref), capture_output=True, check=False)
    info["total_s"] = round(time.monotonic() - t0, 1)
    log(
        f"{name}: {'cached' if info['cached'] else 'built'} {out.name} "
        f"({info['archive_mib']} MiB) in {info['total_s']}s"
    )
    return info


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("names", nargs="*", metavar="NAME", help=f"images to build (default: {ALL})")
    p.add_argument("--verify", action="store_true", help="run the checks on cached images too")
    p.add_argument("--keep", action="store_true", help="keep every image in buildah's store")
    p.add_argument("--keep-below", type=int, default=1 << 30, help=argparse.SUPPRESS)
    p.add_argument("--json", type=Path, help="write a summary of the run to this file")
    args = p.parse_args(argv)
    names = args.names or ALL
    unknown = sorted(set(names) - set(ALL))
    if unknown:
        p.error(f"unknown image(s) {unknown}; choose from {ALL}")
    if os.geteuid() != 0:
        p.error("buildah with chroot isolation and vfs needs root here")
    for tool in ("buildah", "umoci", "skopeo", "debootstrap"):
        if shutil.which(tool) is None:
            p.error(f"{tool} not found (apt-get install buildah umoci skopeo debootstrap)")
    t0 = time.monotonic()
    timings: dict[str, float] = {}
    WORK.mkdir(parents=True, exist_ok=True)
    with locked(IMAGES / ".buildah.lock"):
        # leftovers of an interrupted build (full rootfs copies under vfs)
        run(buildah("rm", "--all"), capture_output=True, check=False)
        minbase = ensure_minbase(timings)
        base = ensure_base(minbase, timings)
        uv = ensure_uv(timings)
        infos = [build_image(n, base, uv, args) for n in names]
        run(buildah("rmi", "--prune"), capture_output=True, check=False)
    summary = {"images": infos, "steps_s": timings, "total_s": round(time.monotonic() - t0, 1)}
    if args.json:
        args.json.write_text(json.dumps(summary, indent=1))
    log(f"done in {summary['total_s']}s")
    for i in infos:
        log(f"  {i['ref']}  {i['archive_mib']:>6} MiB  {i['archive']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
