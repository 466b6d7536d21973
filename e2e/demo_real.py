"""`make demo` (``e2e/demo.py up --real``): the chain really runs, on the real node.

What differs from the simulated demo (e2e/demo.py): the local cluster is brought up with its
real node ``real-0`` (a real kubelet and containerd beside the kwok nodes, needs root); the
project's CPU images are built by images/build.py (cached; cold: minutes) and imported into the
node's containerd; the chart points the operator at them (pull policy Never); the pipeline is
e2e/realchain.py's tiny chain on hostPath volumes, with a tiny random model and tokenizer made by
a pod at the start, and nothing is played: every pod runs its tool for real. The batch half
(TrainJob -> FineTune -> EvalRun) shows real loss and scores; then its images leave the node
(each torch image is ~9 GB unpacked) for the serving half's: a ModelServe (`transformers serve`
on CPU, gated on the EvalRun) and a Lagent Agent on it, each asked one question at the end.

The chart's own operator Deployment stays on a simulated node (a nodeSelector and a toleration
of the simulated nodes' taint), the operator runs here as in the simulated demo.

Standard library only, like demo.py.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE / "cluster"))

import localcluster  # noqa: E402
import realchain  # noqa: E402

UID = 65532  # the user every workload pod runs as (builders/security.py WORKLOAD_UID)
VENV_PY = REPO / ".venv" / "bin" / "python"
ALL_IMAGES = (*realchain.IMAGES, *realchain.SERVING_IMAGES)


def image_ref(name: str) -> str:
    return f"localhost/internlm-operator/{name}:cpu"


def helm_sets() -> list[str]:
    """The chart values that point the operator at the imported CPU images and keep the
    chart's own operator pod on a simulated node."""
    sets = [f"workloads.images.{n}={image_ref(n)}" for n in ALL_IMAGES]
    sets += [
        "workloads.image.pullPolicy=Never",
        "nodeSelector.type=kwok",
        "tolerations[0].key=" + localcluster.SIMULATED_TAINT["key"],
        "tolerations[0].operator=Exists",
        "tolerations[0].effect=" + localcluster.SIMULATED_TAINT["effect"],
    ]
    return sets


def cached_archive(name: str) -> Path | None:
    """The newest complete archive images/build.py left for ``name``, whatever sources it was
    built from (its verify report next to it marks it complete)."""
    out = localcluster.CACHE / "images" / "out"
    done = [
        p
        for p in out.glob(f"{name}-cpu-*.oci.tar")
        if p.with_suffix("").with_suffix(".verify.json").exists()
    ]
    return max(done, key=lambda p: p.stat().st_mtime) if done else None


def use_cached_images() -> bool:
    """INTERNLM_REAL_IMAGES=cached: take the newest archive of each image instead of building
    from the current sources (for developers: every workload image hashes images/workloads,
    so an edit there rebuilds them all). An image with no archive yet is built when needed."""
    return os.environ.get("INTERNLM_REAL_IMAGES", "") == "cached"


def build_images(
    say: Any,
    note: Any,
    names: tuple[str, ...] = ALL_IMAGES,
    later: tuple[str, ...] = realchain.SERVING_IMAGES,
) -> dict[str, Path]:
    """images/build.py for the chain's images (both halves): a no-op when cached, minutes
    cold. With INTERNLM_REAL_IMAGES=cached only the images without any archive are built, and
    those in ``later`` not yet (make_room_for_serving builds them when the batch half is done)."""
    got: dict[str, Path] = {}
    if use_cached_images():
        for name in names:
            if (archive := cached_archive(name)) is not None:
                got[name] = archive
        if got:
            note("INTERNLM_REAL_IMAGES=cached: " + ", ".join(p.name for p in got.values()))
        names = tuple(n for n in names if n not in got and n not in later)
        if not names:
            return got
    summary = localcluster.CACHE / "images" / "demo-build.json"
    summary.parent.mkdir(parents=True, exist_ok=True)
    say(
        "Building the CPU images "
        + ", ".join(names)
        + " (images/build.py: cached after the first time; cold about 15 minutes each on 2 "
        "cores)"
    )
    t0 = time.monotonic()
    res = subprocess.run(
        [str(VENV_PY), str(REPO / "images" / "build.py"), "--json", str(summary), *names],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        check=False,
    )
    if res.returncode != 0:
        raise RuntimeError(f"images/build.py failed:\n{res.stderr[-3000:]}")
    built = {i["name"]: Path(i["archive"]) for i in json.loads(summary.read_text())["images"]}
    note(
        f"images ready in {time.monotonic() - t0:.0f}s: "
        + ", ".join(p.name for p in built.values())
    )
    return {**got, **built}


def cluster_up(say: Any, note: Any, state_dir: Path) -> None:
    if localcluster.healthy():
        if not localcluster.real_node_mode():
            raise RuntimeError(
                "a simulated local cluster is running (no real node): `make demo-down` or "
                "`make cluster-down` first, or run the simulated demo (make demo)"
            )
        say("Local cluster with its real node: already running, reusing it")
        return
    say(
        "Starting the local cluster with its real node real-0 (a real kubelet, containerd, "
        "kube-proxy and CoreDNS beside the kwok nodes; ~30 s)"
    )
    if localcluster.main(["up", "--real-node"]) != 0:
        raise RuntimeError("the local cluster did not start (see the [localcluster] lines)")
    state_dir.joinpath("started-cluster").write_text("1\n")


def import_images(archives: dict[str, Path], say: Any, note: Any) -> None:
    say("Importing " + ", ".join(archives) + " into the real node's containerd")
    for name, archive in archives.items():
        marker = localcluster.STATE / f"imported-{archive.name}"
        if marker.exists():
            note(f"{name}: {archive.name} already imported")
            continue
        t0 = time.monotonic()
        res = subprocess.run(
            [sys.executable, str(HERE / "cluster" / "realnode.py"), "import", str(archive)],
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        if res.returncode != 0:
            raise RuntimeError(f"importing {archive.name} failed:\n{res.stderr}{res.stdout}")
        marker.write_text("1\n")
        note(f"{name}: imported in {time.monotonic() - t0:.0f}s")


def remove_images(names: tuple[str, ...], note: Any) -> None:
    """Remove images from the real node (their snapshots: disk) and forget they were there."""
    for name in names:
        res = subprocess.run(
            [sys.executable, str(HERE / "cluster" / "realnode.py"), "rmi", image_ref(name)],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if res.returncode != 0:
            raise RuntimeError(f"removing {image_ref(name)} failed:\n{res.stderr}{res.stdout}")
        for marker in localcluster.STATE.glob(f"imported-{name}-cpu-*"):
            marker.unlink()
        note(f"{name}: removed from real-0")


def make_room_for_serving(archives: dict[str, Path], say: Any, note: Any) -> None:
    """The batch half is done: its images leave the node, the serving half's come in."""
    say(
        "Batch half done: " + ", ".join(realchain.IMAGES) + " leave real-0 (disk), "
        + ", ".join(realchain.SERVING_IMAGES) + " come in"
    )  # fmt: skip
    missing = tuple(n for n in realchain.SERVING_IMAGES if n not in archives)
    if missing:  # INTERNLM_REAL_IMAGES=cached and no archive of them when the demo started
        archives.update(build_images(say, note, missing, later=()))
    remove_images(realchain.IMAGES, note)
    import_images({n: archives[n] for n in realchain.SERVING_IMAGES}, say, note)


def storage(kube: Any, namespace: str, state_dir: Path, say: Any, note: Any) -> None:
    """hostPath volumes ``corpus`` and ``models`` (under the demo's state directory), the repo's
    SFT and eval sets copied in, and the tiny model, tokenizer and corpus made by a pod."""
    root = state_dir / "volumes"
    say(
        f"Creating the chain's storage in {namespace}: PVCs corpus and models on host "
        f"directories under {root}"
    )
    objs: list[dict[str, Any]] = []
    for claim in realchain.CLAIMS:
        d = root / claim
        d.mkdir(parents=True, exist_ok=True)
        os.chown(d, UID, UID)
        for p in (d, *d.parents):  # the kubelet's and the pod's way down to it
            if p == Path("/"):
                break
            p.chmod(p.stat().st_mode | 0o711)
        pv = f"demo-{namespace}-{claim}"
        objs += [
            {
                "apiVersion": "v1",
                "kind": "PersistentVolume",
                "metadata": {
                    "name": pv,
                    "labels": {
                        "app.kubernetes.io/part-of": "internlm-demo",
                        "internlm.io/demo-namespace": namespace,
                    },
                },
                "spec": {
                    "capacity": {"storage": "10Gi"},
                    "accessModes": ["ReadWriteMany"],
                    "persistentVolumeReclaimPolicy": "Retain",
                    "storageClassName": "",
                    "hostPath": {"path": str(d), "type": "Directory"},
                    "claimRef": {"namespace": namespace, "name": claim},
                },
            },
            {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "metadata": {"name": claim, "namespace": namespace},
                "spec": {
                    "accessModes": ["ReadWriteMany"],
                    "storageClassName": "",
                    "volumeName": pv,
                    "resources": {"requests": {"storage": "10Gi"}},
                },
            },
        ]
    for f, rel in realchain.DATA_FILES.items():
        dst = root / "corpus" / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(realchain.DATA / f, dst)
        os.chown(dst.parent, UID, UID)
        os.chown(dst, UID, UID)
    kube.apply(objs)
    if (root / "corpus" / "tokenized" / "shard-00000.npy").exists():
        note("tiny model, tokenizer and corpus: already made")
        return
    say("Making a tiny random Llama, its tokenizer and a tokenised corpus (a pod, ~20 s)")
    t0 = time.monotonic()
    kube.kubectl("delete", "pod", "make-assets", "-n", namespace, "--ignore-not-found")
    pod = realchain.assets_pod(image_ref(realchain.ASSETS_IMAGE))
    pod["metadata"]["namespace"] = namespace
    kube.apply(pod)
    deadline = time.monotonic() + 600
    while True:
        st = kube.json("pod", "make-assets", "-n", namespace).get("status") or {}
        if st.get("phase") in ("Succeeded", "Failed"):
            break
        if time.monotonic() > deadline:
            raise RuntimeError("the assets pod did not finish in 600s")
        time.sleep(1)
    if st["phase"] != "Succeeded":
        logs = kube.kubectl("logs", "make-assets", "-n", namespace, check=False).stdout
        raise RuntimeError(f"making the tiny model failed:\n{logs[-3000:]}")
    made = json.loads(st["containerStatuses"][0]["state"]["terminated"]["message"])
    note(
        f"{made['params']} parameters, vocabulary {made['vocab']}, {made['tokens']} tokens, in "
        f"{time.monotonic() - t0:.0f}s"
    )


def pipeline() -> list[dict[str, Any]]:
    """The batch half the real demo applies first (kinds in order)."""
    return [
        realchain.trainjob(),
        realchain.finetune(),
        realchain.evalrun("gate", realchain.GATE_PASS),
    ]


def serving_pipeline() -> list[dict[str, Any]]:
    """The serving half, applied once the batch half is done: the merged model served once
    EvalRun ``gate`` passed, and an Agent on it."""
    return [realchain.modelserve(gate="gate"), realchain.agent()]


QUESTIONS = (
    ("ModelServe", "serve", realchain.SERVED_NAME, "alice likes"),
    ("Agent", "agent", "agent", "What is 2 + 3?"),
)


def ask(kube: Any, namespace: str, kind: str, name: str, model: str, text: str) -> str:
    """One chat message to a ModelServe or Agent (its pod, from this host: pod addresses are
    routed to the real node's bridge), the answer's text."""
    import urllib.request

    obj = kube.json(kind.lower(), name, "-n", namespace)
    port = int(
        str((obj.get("status") or {}).get("endpoint", ":8000/")).rsplit(":", 1)[1].split("/")[0]
    )
    pods = kube.json("pods", "-n", namespace, "-l", f"app.kubernetes.io/instance={name}")["items"]
    ips = [p["status"].get("podIP") for p in pods if p["status"].get("phase") == "Running"]
    if not ips:
        raise RuntimeError(f"{kind} {name} has no running pod")
    body = json.dumps(
        {"model": model, "messages": [{"role": "user", "content": text}], "max_tokens": 24}
    ).encode()
    req = urllib.request.Request(
        f"http://{ips[0]}:{port}/v1/chat/completions",
        data=body,
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=300) as r:
        reply = json.loads(r.read())
    return str(reply["choices"][0]["message"]["content"])
