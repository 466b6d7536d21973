"""Models, datasets and outputs from real places, through the operator's own rendered pods on
the real node ``real-0`` (the pretrain CPU image, built by images/build.py): issue #12's last
item.

Started here, bound to the node's own address 10.87.255.1 (``localcluster.REAL_NODE_IP``, a
/32 on ``lo`` that the pods reach through their bridge gateway, as they reach the API server):

- a Hugging Face compatible hub (tests/workloads/helpers/hub_server.py) serving a model repo
  ``test-org/tiny-llama`` (a random tiny Llama and its tokenizer, made at test time by a pod of
  the image; tag ``v1``, and a later ``main``) and a dataset repo ``test-org/tiny-corpus``
  (``data/train.jsonl``), reached through ``spec.env`` ``HF_ENDPOINT``;
- moto's S3 server (tests/workloads/helpers/s3_server.py) with a bucket ``runs``, reached
  through ``spec.objectStore`` (endpoint, key pair from a Secret).

The operator (in-process) runs with the shared hub cache on (a no-provisioner
ReadWriteMany class; the test binds a hostPath PV to each namespace's cache PVC).

The chain: TrainJob ``a`` (2 nodes) continues the hub model at ``v1`` on the hub dataset and
writes its output to ``s3://runs/chain/a``; TrainJob ``b`` continues ``a``'s model
(``fromResource``: ``s3://runs/chain/a/hf``, fetched by its init container) on the same hub
dataset (reused from the cache) and writes to ``s3://runs/chain/b``. Checked: status.inputs
(repo, revision, commit, bytes, files, cached), one fetch Job per repo revision, one download
of each file by the hub, the objects in the bucket. Then the failures, each with its reason:
``RevisionNotFound`` and ``RepoNotFound`` (the cache's fetch Job), ``BucketNotFound`` (an
``s3://`` input's init container) and ``UploadFailed`` (a stage that trained, then could not
upload to a missing bucket).

Needs root, the real node's packages and buildah (skipped otherwise, like test_real_trainjob).
"""

from __future__ import annotations

import os
import shutil
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import localcluster
import pytest

from tests.conftest import REPO, wait_until
from tests.integration.conftest import Batch, OperatorHandle, running_operator
from tests.integration.realnode_fixture import (
    RealCluster,
    image_archive,
    missing_prerequisites,
    real_node_cluster,
)
from tests.integration.test_real_trainjob import (
    MAKE_ASSETS,
    UID,
    explain,
    host_volumes,
    real_operator_config,
    run_pod,
    trainjob,
)
from tests.workloads.helpers.hub_server import Hub
from tests.workloads.helpers.s3_server import S3Client, moto_server

pytestmark = pytest.mark.cluster

PORT_BASE = 27400
STATE = REPO / "e2e" / ".cluster-realnode-sources"
NS_PREFIX = "rsrc-"
HOST = localcluster.REAL_NODE_IP  # the node's address: pods reach it, nothing else does
CLASS = "rsrc-hub-rwx"
BUCKET = "runs"
MODEL_REPO = "test-org/tiny-llama"
DATA_REPO = "test-org/tiny-corpus"
ENTRY = "internlm.io/hub-cache-entry"
T0 = time.monotonic()


def say(msg: str) -> None:
    sys.stderr.write(f"[test_real_sources {time.monotonic() - T0:6.0f}s] {msg}\n")


# ---------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def pretrain_archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    why = missing_prerequisites()
    if why:
        pytest.skip(why)
    for tool in ("buildah", "umoci", "skopeo", "uv"):
        if not shutil.which(tool):
            pytest.skip(f"{tool} is needed (the pretrain image, moto's venv; .ci/run has them)")
    return image_archive("pretrain", tmp_path_factory.mktemp("build"))


@pytest.fixture(scope="module")
def real(pretrain_archive: Path) -> Iterator[RealCluster]:
    with real_node_cluster("test_real_sources", STATE, PORT_BASE) as c:
        t0 = time.monotonic()
        c.import_image(pretrain_archive)
        say(f"image imported in {time.monotonic() - t0:.0f}s")
        for f in sorted((REPO / "crds").glob("*.yaml")):
            c.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(f))
        c.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd", "--all")
        c.apply(
            {
                "apiVersion": "storage.k8s.io/v1",
                "kind": "StorageClass",
                "metadata": {"name": CLASS},
                "provisioner": "kubernetes.io/no-provisioner",
                "volumeBindingMode": "Immediate",
            }
        )
        yield c


@pytest.fixture(scope="module")
def s3(real: RealCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """moto's S3 server on the node's address (after the cluster put it on lo), bucket runs."""
    with moto_server(HOST, tmp_path_factory.mktemp("s3")) as env:
        S3Client(env).create_bucket(Bucket=BUCKET)
        yield env


@pytest.fixture(scope="module")
def operator(real: RealCluster) -> Iterator[OperatorHandle]:
    config = real_operator_config(
        real,
        namespaces=(f"{NS_PREFIX}*",),
        hub_cache_storage_class=CLASS,
        hub_cache_size="2Gi",
    )
    with running_operator(config) as handle:
        yield handle


def make_ns(c: RealCluster, name: str) -> None:
    c.kubectl("create", "namespace", name)
    wait_until(
        "the default ServiceAccount",
        lambda: c.kubectl("get", "sa", "default", "-n", name, check=False).returncode == 0,
        timeout=60,
    )


@pytest.fixture(scope="module")
def hub(real: RealCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The hub on the node's address, with the model repo (made by a pod of the image: a
    random tiny Llama and a BPE tokenizer trained here) and the dataset repo."""
    ns = f"{NS_PREFIX}assets"
    make_ns(real, ns)
    root = tmp_path_factory.mktemp("real-sources")
    host_volumes(real, ns, root, "corpus")
    t0 = time.monotonic()
    script = MAKE_ASSETS + (
        "\n(root / 'text').mkdir(exist_ok=True)\n"
        "(root / 'text' / 'train.jsonl').write_text("
        "''.join(json.dumps({'text': d}) + '\\n' for d in docs))\n"
    )
    made = run_pod(real, ns, "make-assets", script, {"corpus": False})
    say(f"tiny model and corpus made in {time.monotonic() - t0:.0f}s: {made}")
    real.kubectl("delete", "namespace", ns, "--wait=false", check=False)
    model_dir, text = root / "corpus" / "tiny-llama", root / "corpus" / "text" / "train.jsonl"
    v1 = {p.name: p.read_bytes() for p in sorted(model_dir.iterdir()) if p.is_file()}
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= set(v1), sorted(v1)
    h = Hub(tmp_path_factory.mktemp("hub"))
    commits = {
        "model@v1": h.add("model", MODEL_REPO, v1, revision="v1"),
        # main moved on after v1: a pod that fetched main instead would get the README too
        "model@main": h.add(
            "model", MODEL_REPO, {**v1, "README.md": b"# tiny-llama, later\n"}, revision="main"
        ),
        "data@main": h.add(
            "dataset",
            DATA_REPO,
            {"data/train.jsonl": text.read_bytes(), "README.md": b"# tiny corpus\n"},
        ),
    }
    h.start(HOST)
    say(f"hub on {h.url}: {commits}")
    yield {
        "hub": h,
        "commits": commits,
        "sizes": {
            "model@v1": (sum(len(b) for b in v1.values()), len(v1)),
            "data@main": (text.stat().st_size + len(b"# tiny corpus\n"), 2),
        },
        "params": made["params"],
    }
    h.stop()


@pytest.fixture
def ns(real: RealCluster, tmp_path: Path) -> Iterator[str]:
    """A namespace with the S3 key pair in a Secret and a PV waiting for its cache PVC."""
    name = f"{NS_PREFIX}{uuid.uuid4().hex[:6]}"
    make_ns(real, name)
    cache = tmp_path / "hub-cache"
    cache.mkdir()
    os.chown(cache, UID, UID)
    for p in (cache, *cache.parents):
        if p == Path("/"):
            break
        p.chmod(p.stat().st_mode | 0o711)
    pv = f"{name}-hub-cache"
    real.apply(
        {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {"name": pv},
            "spec": {
                "capacity": {"storage": "2Gi"},
                "accessModes": ["ReadWriteMany"],
                "persistentVolumeReclaimPolicy": "Retain",
                "storageClassName": CLASS,
                "hostPath": {"path": str(cache), "type": "Directory"},
                "claimRef": {"namespace": name, "name": "internlm-hub-cache"},
            },
        }
    )
    yield name
    real.kubectl("delete", "namespace", name, "--wait=false", check=False)
    real.kubectl("delete", "pv", pv, "--wait=false", check=False)


# ---------------------------------------------------------------------------- helpers


def s3_secret(c: RealCluster, ns: str, s3: dict[str, str]) -> None:
    c.apply(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "s3"},
            "stringData": {"id": s3["AWS_ACCESS_KEY_ID"], "secret": s3["AWS_SECRET_ACCESS_KEY"]},
        },
        ns,
    )


def job(
    name: str,
    hub_url: str,
    s3: dict[str, str],
    *,
    model: dict[str, Any],
    output: str,
    nodes: int = 1,
    steps: int = 4,
    data_repo: str = DATA_REPO,
) -> dict[str, Any]:
    """A tiny TrainJob whose inputs and output are anywhere but a volume."""
    doc = trainjob(name, "unused", max_steps=steps, interval=steps)
    spec = doc["spec"]
    spec["model"] = {"source": model}
    spec["data"] = {"huggingFace": {"repo": data_repo, "revision": "main"}, "format": "jsonl"}
    spec["output"] = {"uri": output}
    spec["nodes"] = nodes
    spec["runPolicy"] = {"backoffLimit": 0}
    spec["env"] = [{"name": "HF_ENDPOINT", "value": hub_url}]
    spec["objectStore"] = {
        "endpoint": s3["AWS_ENDPOINT_URL_S3"],
        "region": s3["AWS_DEFAULT_REGION"],
        "accessKeyId": {"name": "s3", "key": "id"},
        "secretAccessKey": {"name": "s3", "key": "secret"},
    }
    return doc


def hf_model(revision: str, repo: str = MODEL_REPO) -> dict[str, Any]:
    return {"huggingFace": {"repo": repo, "revision": revision}}


def finished(b: Batch, timeout: float) -> dict[str, Any]:
    st: dict[str, Any] = wait_until(
        f"{b.kind} {b.name} finished",
        lambda: (s := b.status()).get("phase") in ("Succeeded", "Failed") and s,
        timeout=timeout,
        interval=1,
        explain=lambda: explain(b),
    )
    return st


def rows(st: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["name"]: r for r in st.get("inputs") or []}


def fetch_jobs(c: RealCluster, ns: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = c.get("jobs", "-n", ns, "-l", ENTRY)["items"]
    return items


def no_secret_in(c: RealCluster, ns: str, secret: str) -> None:
    """The secret key is in no status, event or pod log of the namespace."""
    text = c.kubectl("get", "trainjobs,events", "-n", ns, "-o", "json").stdout
    for p in c.get("pods", "-n", ns)["items"]:
        for ctr in [*(p["spec"].get("initContainers") or []), *p["spec"]["containers"]]:
            text += c.kubectl(
                "logs", p["metadata"]["name"], "-n", ns, "-c", ctr["name"], check=False
            ).stdout
    assert secret not in text


# ---------------------------------------------------------------------------- tests


@pytest.mark.timeout(2400)
def test_hub_model_and_dataset_fetched_once_output_through_the_bucket_feeds_the_next_stage(
    real: RealCluster,
    operator: OperatorHandle,
    hub: dict[str, Any],
    s3: dict[str, str],
    ns: str,
) -> None:
    c, h = real, hub["hub"]
    store = S3Client(s3)
    s3_secret(c, ns, s3)
    commits, sizes = hub["commits"], hub["sizes"]

    # -- a: 2 nodes; the model at v1 and the dataset from the hub, through the cache
    t0 = time.monotonic()
    c.apply(job("a", h.url, s3, model=hf_model("v1"), output="s3://runs/chain/a", nodes=2), ns)
    a = Batch(c, ns, "TrainJob", "a")
    waiting = wait_until(
        "a waits for its inputs (FetchingInputs)",
        lambda: (r := a.condition("Ready")) and r.get("reason") == "FetchingInputs" and r,
        timeout=60,
        interval=0.5,
        explain=lambda: explain(a),
    )
    assert MODEL_REPO in waiting["message"] and DATA_REPO in waiting["message"], waiting
    st = finished(a, 1200)
    took_a = time.monotonic() - t0
    if st["phase"] != "Succeeded":
        pytest.fail(f"TrainJob a failed: {explain(a)}")
    got = rows(st)
    assert got["model"]["source"] == f"hf://{MODEL_REPO}@v1", got
    assert got["model"]["revision"] == "v1" and got["model"]["commit"] == commits["model@v1"]
    assert (got["model"]["bytes"], got["model"]["files"]) == sizes["model@v1"], got
    assert got["data"]["source"] == f"hf://{DATA_REPO}@main", got
    assert got["data"]["commit"] == commits["data@main"], got
    assert (got["data"]["bytes"], got["data"]["files"]) == sizes["data@main"], got
    assert got["model"]["cached"] is False and got["data"]["cached"] is False, got
    assert st["outputs"]["model"] == "s3://runs/chain/a/hf", st
    assert st["progress"]["step"] == 4, st
    pods = a.pods(active_only=False)
    assert len(pods) == 2 and {p["spec"]["nodeName"] for p in pods} == {"real-0"}
    for p in pods:  # both pods mounted the cache; neither fetched on its own
        assert not p["spec"].get("initContainers"), p["spec"].get("initContainers")
    jobs = fetch_jobs(c, ns)
    assert len(jobs) == 2, [j["metadata"]["name"] for j in jobs]
    assert all(j["status"].get("succeeded") == 1 for j in jobs), [j["status"] for j in jobs]
    objects = store.keys(BUCKET, "chain/a/")
    for f in ("hf/config.json", "hf/model.safetensors", "hf/tokenizer.json", "metrics.jsonl"):
        assert f"chain/a/{f}" in objects, sorted(objects)
    # the whole ZeRO-2 checkpoint: each pod's optimizer shard (pod 1's from its own emptyDir)
    ckpt = "chain/a/checkpoints/step-4/"
    assert {f"{ckpt}COMPLETE", f"{ckpt}mp_rank_00_model_states.pt"} <= set(objects), objects
    for r in (0, 1):
        assert f"{ckpt}zero_pp_rank_{r}_mp_rank_00_optim_states.pt" in objects, sorted(objects)
    say(f"a Succeeded {took_a:.0f}s after apply; s3://runs/chain/a: {sorted(objects)}")

    # -- b: a's model from the bucket (its init container), the same dataset from the cache
    t0 = time.monotonic()
    model_b = {"fromResource": {"kind": "TrainJob", "name": "a"}}
    c.apply(job("b", h.url, s3, model=model_b, output="s3://runs/chain/b"), ns)
    b = Batch(c, ns, "TrainJob", "b")
    st = finished(b, 900)
    took_b = time.monotonic() - t0
    if st["phase"] != "Succeeded":
        pytest.fail(f"TrainJob b failed: {explain(b)}")
    got = rows(st)
    hf_a = {k: v for k, v in objects.items() if k.startswith("chain/a/hf/")}
    assert got["model"]["source"] == "s3://runs/chain/a/hf", got
    assert (got["model"]["bytes"], got["model"]["files"]) == (sum(hf_a.values()), len(hf_a))
    assert got["data"]["commit"] == commits["data@main"] and got["data"]["cached"] is True, got
    assert len(fetch_jobs(c, ns)) == 2  # nothing fetched from the hub again
    (pod,) = b.pods(active_only=False)
    assert [x["name"] for x in pod["spec"]["initContainers"]] == ["fetch-model"], pod["spec"]
    objects_b = store.keys(BUCKET, "chain/b/")
    assert "chain/b/hf/model.safetensors" in objects_b, sorted(objects_b)
    assert st["outputs"]["model"] == "s3://runs/chain/b/hf", st

    # -- the hub saw one repo lookup per revision and one download of each file, for 3 pods
    # (huggingface_hub 2.x in the stage also asks GET /api/agent-harnesses: not a repo)
    api = Counter(
        r[1]
        for r in h.requests
        if r[0] == "GET" and r[1].startswith(("/api/models/", "/api/datasets/"))
    )
    assert api[f"/api/models/{MODEL_REPO}/revision/v1"] == 1, api
    assert api[f"/api/datasets/{DATA_REPO}/revision/main"] == 1, api
    assert set(api.values()) == {1}, api  # every lookup once: one fetch per repo revision
    prefix = {"model": "", "dataset": "/datasets"}
    for key, repo_type, repo in (
        ("model@v1", "model", MODEL_REPO),
        ("data@main", "dataset", DATA_REPO),
    ):
        files = h.repos[(repo_type, repo)].commits[commits[key]]
        for name in files:
            path = f"{prefix[repo_type]}/{repo}/resolve/{commits[key]}/{name}"
            gets = [r for r in h.requests if r[0] == "GET" and r[1] == path]
            assert len(gets) == 1, (path, len(gets))
    assert not [r for r in h.requests if "README.md" in r[1] and MODEL_REPO in r[1]]
    no_secret_in(c, ns, s3["AWS_SECRET_ACCESS_KEY"])
    say(
        f"b Succeeded {took_b:.0f}s after apply; hub requests {len(h.requests)} "
        f"({sorted(Counter(r[1] for r in h.requests if not r[1].startswith('/api/')).items())}, "
        f"{sorted(Counter(r[1] for r in h.requests if r[1].startswith('/api/')).items())}); "
        f"{len(objects_b)} objects under s3://runs/chain/b"
    )


@pytest.mark.timeout(1500)
def test_each_failure_is_named_in_status(
    real: RealCluster,
    operator: OperatorHandle,
    hub: dict[str, Any],
    s3: dict[str, str],
    ns: str,
) -> None:
    c, h = real, hub["hub"]
    s3_secret(c, ns, s3)
    t0 = time.monotonic()
    docs = {
        # the hub cache's fetch Jobs fail: a tag that does not exist, a repo that does not
        "norev": job("norev", h.url, s3, model=hf_model("v9"), output="s3://runs/fail/norev"),
        "norepo": job(
            "norepo", h.url, s3, model=hf_model("v1"), output="s3://runs/fail/norepo",
            data_repo="test-org/no-such-corpus",
        ),
        # an s3:// input: its init container finds no bucket
        "nobucket": job(
            "nobucket", h.url, s3, model={"uri": "s3://no-such-bucket/tiny"},
            output="s3://runs/fail/nobucket",
        ),
        # trains (2 steps), then cannot upload: the bucket does not exist
        "noupload": job(
            "noupload", h.url, s3, model=hf_model("v1"), output="s3://no-such-bucket/out",
            steps=2,
        ),
    }  # fmt: skip
    for d in docs.values():
        c.apply(d, ns)
    want = {
        "norev": ("RevisionNotFound", ["v9", MODEL_REPO, h.url]),
        "norepo": ("RepoNotFound", ["test-org/no-such-corpus", "does not exist"]),
        "nobucket": ("BucketNotFound", ["no-such-bucket"]),
        "noupload": ("UploadFailed", ["no-such-bucket"]),
    }
    seen = {}
    for name, (reason, words) in want.items():
        b = Batch(c, ns, "TrainJob", name)
        st = finished(b, 900)
        failed = b.condition("Failed") or {}
        assert st["phase"] == "Failed" and failed.get("reason") == reason, explain(b)
        for w in words:
            assert w in failed["message"], (name, failed)
        seen[name] = f"{time.monotonic() - t0:.0f}s {reason}: {failed['message'][:160]}"
    st = Batch(c, ns, "TrainJob", "noupload").status()
    assert st["progress"]["step"] == 2, st  # it trained: the upload is what failed
    for k in ("norev", "norepo"):  # the Jobs that failed are the cache's, named in the message
        assert "hub-fetch-" in (Batch(c, ns, "TrainJob", k).condition("Failed") or {})["message"]
    no_secret_in(c, ns, s3["AWS_SECRET_ACCESS_KEY"])
    for name, line in seen.items():
        say(f"{name}: {line}")
