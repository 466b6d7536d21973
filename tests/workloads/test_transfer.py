"""Inputs from real places and outputs to them (internlm_workloads/transfer.py), against real
servers started here on 127.0.0.1, with the workload code in the images' own environments:

- a Hugging Face Hub compatible server (helpers/hub_server.py) reached through HF_ENDPOINT:
  huggingface_hub's own snapshot_download (2.4 in the pretrain image, 0.36 in the finetune
  image) pulls model and dataset repos the test commits, at a revision, resumes an
  interrupted download, and each failure gets its own reason;
- moto's S3 server (``moto_server`` from ``moto[server]``, in a venv of its own:
  helpers/s3-server.lock): boto3 fetches objects and prefixes,
  a real pretrain stage uploads its output there, which the next stage's fetch reads back.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import REPO, WORKLOADS_SRC, free_port, image_env, make_stage
from .helpers.hub_server import Hub, wait_stalled
from .helpers.s3_server import S3Client, s3_venv

pytestmark = pytest.mark.workload

TOKEN = "hf_test_secret_token_0123456789"
S3_KEY_ID = "AKIATESTKEYID0000000"
S3_SECRET = "s3-test-secret-abcdefghijklmnopqrstuvwxyz"
NETGUARD = REPO / "e2e" / "netguard"
BIG = 4 * 1024 * 1024


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    h = Hub(tmp_path_factory.mktemp("hub"), token=TOKEN).start()
    yield h
    h.stop()


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """moto's S3 server (``moto_server``) on 127.0.0.1, and the env the workloads get."""
    venv = s3_venv()
    port = free_port()
    log = (tmp_path_factory.mktemp("s3") / "moto.log").open("wb")
    proc = subprocess.Popen(
        [f"{venv}/bin/moto_server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=_env(Path(log.name).parent, {}),
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"moto_server did not start: {Path(log.name).read_text()[-2000:]}")
            time.sleep(0.2)
    env = {
        "AWS_ENDPOINT_URL_S3": f"http://127.0.0.1:{port}",
        "AWS_ACCESS_KEY_ID": S3_KEY_ID,
        "AWS_SECRET_ACCESS_KEY": S3_SECRET,
        "AWS_DEFAULT_REGION": "us-east-1",
        "INTERNLM_S3_ADDRESSING_STYLE": "path",
    }
    yield env
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(30)
    log.close()


def client(env: dict[str, str]) -> Any:
    return S3Client(env, lambda extra: _env(Path("/tmp"), extra))


def _env(workdir: Path, extra: dict[str, str]) -> dict[str, str]:
    e = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PYTHON", "VIRTUAL_ENV", "INTERNLM_", "HF_", "AWS_"))
    }
    for k in ("INTERNLM_NETGUARD", "INTERNLM_NETGUARD_LOG"):  # keep the guard in the child
        if k in os.environ:
            e[k] = os.environ[k]
    e.update(
        PYTHONPATH=os.pathsep.join([str(NETGUARD), str(WORKLOADS_SRC)]),
        PYTHONUNBUFFERED="1",
        INTERNLM_TERMINATION_LOG=str(workdir / "termination-log"),
        INTERNLM_PROGRESS_PORT="0",
        INTERNLM_FETCH_ATTEMPTS="1",
        HF_HOME=str(workdir / "hf-home"),
        HF_HUB_DISABLE_TELEMETRY="1",
    )
    e.update(extra)
    return e


class Fetch:
    """``python -m internlm_workloads fetch`` in an image's environment, as the ModelServe init
    container runs it (batch stages call the same code before they start)."""

    def __init__(
        self, image: str, workdir: Path, inputs: list[dict[str, Any]], env: dict[str, str]
    ) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.workdir = workdir
        self.env = _env(workdir, {"INTERNLM_INPUTS": json.dumps(inputs), **env})
        self.argv = [f"{image_env(image)}/bin/python", "-m", "internlm_workloads", "fetch"]
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, wrap: list[str] | None = None) -> Fetch:
        log = (self.workdir / "fetch.log").open("ab")
        self.proc = subprocess.Popen(
            [*(wrap or []), *self.argv],
            env=self.env,
            cwd=self.workdir,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return self

    def run(self, timeout: float = 180, wrap: list[str] | None = None) -> int:
        self.start(wrap)
        assert self.proc is not None
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            pytest.fail(f"fetch did not finish in {timeout}s:\n{self.log()[-3000:]}")

    def log(self) -> str:
        p = self.workdir / "fetch.log"
        return p.read_text(errors="replace") if p.exists() else ""

    def result(self) -> dict[str, Any]:
        p = self.workdir / "termination-log"
        assert p.exists(), self.log()[-3000:]
        text = p.read_text()
        assert "\n" not in text.strip() and len(text.encode()) <= 4096
        doc: dict[str, Any] = json.loads(text)
        return doc

    def no_secrets(self) -> None:
        seen = self.log() + (self.workdir / "termination-log").read_text()
        for secret in (TOKEN, S3_SECRET):
            assert secret not in seen


def hf_env(hub: Hub, token: str | None = None) -> dict[str, str]:
    env = {"HF_ENDPOINT": hub.url}
    if token:
        env["HF_TOKEN"] = token
    return env


MODEL_FILES_V1 = {
    "config.json": json.dumps({"model_type": "llama", "hidden_size": 8}).encode(),
    "tokenizer.json": b'{"version": "1.0"}',
    "model.safetensors": os.urandom(BIG),
    "README.md": b"# tiny\n",
}
MODEL_FILES_MAIN = {
    **MODEL_FILES_V1,
    "config.json": json.dumps({"model_type": "llama", "hidden_size": 16}).encode(),
}


# -- Hugging Face ---------------------------------------------------------------------------


@pytest.mark.parametrize("image", ["pretrain", "finetune"])  # huggingface_hub 2.4 / 0.36
def test_model_repo_pulled_at_a_revision(hub: Hub, tmp_path: Path, image: str) -> None:
    v1 = hub.add("model", "acme/tiny-model", MODEL_FILES_V1, revision="v1")
    main = hub.add("model", "acme/tiny-model", MODEL_FILES_MAIN, revision="main")
    dest = tmp_path / "inputs" / "model"
    f = Fetch(
        image,
        tmp_path,
        [
            {
                "name": "model",
                "source": "hf://acme/tiny-model@v1",
                "dest": str(dest),
                "repoType": "model",
                "allowPatterns": ["*.json", "*.safetensors"],
            }
        ],
        hf_env(hub),
    )
    assert f.run() == 0, f.log()[-3000:]
    res = f.result()
    assert res["ok"] is True
    [got] = res["fetched"]
    assert got["name"] == "model" and got["source"] == "hf://acme/tiny-model@v1"
    assert got["revision"] == v1 != main
    assert json.loads((dest / "config.json").read_text())["hidden_size"] == 8  # v1, not main
    assert (dest / "model.safetensors").read_bytes() == MODEL_FILES_V1["model.safetensors"]
    assert not (dest / "README.md").exists()  # allowPatterns
    assert got["files"] == 3
    assert got["bytes"] == sum(len(MODEL_FILES_V1[n]) for n in MODEL_FILES_V1 if n != "README.md")
    # the client asked our server, for that commit, the files it resolved
    assert hub.seen("GET", "/api/models/acme/tiny-model/revision/v1")
    assert hub.seen("GET", f"/acme/tiny-model/resolve/{v1}/model.safetensors")


@pytest.mark.parametrize("image", ["pretrain", "finetune"])
def test_dataset_repo_pulled_as_a_dataset(hub: Hub, tmp_path: Path, image: str) -> None:
    rows = "\n".join(
        json.dumps({"instruction": f"q{i}", "input": "", "output": f"a{i}"}) for i in range(50)
    )
    commit = hub.add("dataset", "acme/alpaca-mini", {"data/train.jsonl": rows.encode()})
    # a model repo of the same name must not be what is fetched
    hub.add("model", "acme/alpaca-mini", {"config.json": b"{}"})
    dest = tmp_path / "inputs" / "dataset"
    f = Fetch(
        image,
        tmp_path,
        [
            {
                "name": "dataset",
                "source": "hf://acme/alpaca-mini",
                "dest": str(dest),
                "repoType": "dataset",
            }
        ],
        hf_env(hub),
    )
    assert f.run() == 0, f.log()[-3000:]
    [got] = f.result()["fetched"]
    assert got["revision"] == commit and got["files"] == 1
    assert (dest / "data" / "train.jsonl").read_text() == rows
    assert not (dest / "config.json").exists()
    assert hub.seen("GET", "/api/datasets/acme/alpaca-mini")
    assert hub.seen("GET", f"/datasets/acme/alpaca-mini/resolve/{commit}/data/train.jsonl")


@pytest.mark.parametrize(
    ("source", "repo_type", "token", "failure"),
    [
        ("hf://acme/no-such-model", "model", None, "RepoNotFound"),
        ("hf://acme/tiny-model@no-such-branch", "model", None, "RevisionNotFound"),
        ("hf://acme/private-model", "model", None, "Unauthorized"),  # no token
        ("hf://acme/private-model", "model", "hf_wrong_token", "Unauthorized"),
        ("hf://acme/tiny-model", "dataset", None, "RepoNotFound"),  # it is a model repo
    ],
)
def test_hub_failures_have_their_own_reason(
    hub: Hub, tmp_path: Path, source: str, repo_type: str, token: str | None, failure: str
) -> None:
    hub.add("model", "acme/tiny-model", MODEL_FILES_MAIN)
    hub.add("model", "acme/private-model", {"config.json": b"{}"}, private=True)
    inp = {"name": "model", "source": source, "dest": str(tmp_path / "m"), "repoType": repo_type}
    f = Fetch("pretrain", tmp_path, [inp], hf_env(hub, token))
    assert f.run() == 1, f.log()[-3000:]
    res = f.result()
    assert res["ok"] is False and res["failure"] == failure, res
    assert res["reason"].startswith(f"{failure}: "), res
    assert "acme/" in res["reason"] and hub.url in res["reason"]
    f.no_secrets()


def test_modelscope_missing_repo(hub: Hub, tmp_path: Path) -> None:
    """modelscope's own snapshot_download against a server on loopback (MODELSCOPE_ENDPOINT)
    that has no such repo (answers 404 to its file listing): RepoNotFound. The hub fixture
    serves no ModelScope repo, so only this failure path is exercised end to end."""
    inp = {"name": "model", "source": "ms://acme/no-such-model", "dest": str(tmp_path / "m")}
    f = Fetch("pretrain", tmp_path, [inp], {"MODELSCOPE_ENDPOINT": hub.url, "HOME": str(tmp_path)})
    assert f.run() == 1, f.log()[-3000:]
    res = f.result()
    assert res["failure"] == "RepoNotFound", res
    assert "acme/no-such-model" in res["reason"] and hub.url in res["reason"]
    assert hub.seen("GET", "/api/v1/models/acme/no-such-model/")


def test_private_repo_with_the_token(hub: Hub, tmp_path: Path) -> None:
    commit = hub.add("model", "acme/private-model", {"config.json": b'{"a": 1}'}, private=True)
    dest = tmp_path / "m"
    f = Fetch(
        "pretrain",
        tmp_path,
        [{"name": "model", "source": "hf://acme/private-model", "dest": str(dest)}],
        hf_env(hub, TOKEN),
    )
    assert f.run() == 0, f.log()[-3000:]
    assert f.result()["fetched"][0]["revision"] == commit
    assert json.loads((dest / "config.json").read_text()) == {"a": 1}
    assert hub.seen("GET", "/api/models/acme/private-model")[-1]["authorization"] == (
        f"Bearer {TOKEN}"
    )
    f.no_secrets()


def test_dropped_connection_resumes_with_a_range(hub: Hub, tmp_path: Path) -> None:
    """The connection drops mid-file: huggingface_hub asks for the rest only (Range from what
    it wrote, a multiple of its 10 MiB chunk) and ends with the whole file."""
    size = 12 * 1024 * 1024
    data = os.urandom(size)
    commit = hub.add("model", "acme/drop-model", {"model.safetensors": data})
    hub.stall("model.safetensors", after=11 * 1024 * 1024, hang=False)
    dest = tmp_path / "m"
    inputs = [{"name": "model", "source": "hf://acme/drop-model", "dest": str(dest)}]
    f = Fetch("pretrain", tmp_path / "w", inputs, hf_env(hub))
    assert f.run() == 0, f.log()[-3000:]
    assert (dest / "model.safetensors").read_bytes() == data
    ranges = [
        h.get("range")
        for h in hub.seen("GET", f"/acme/drop-model/resolve/{commit}/model.safetensors")
    ]
    assert ranges == [None, "bytes=10485760-"], ranges
    assert f.result()["fetched"][0]["bytes"] == size


def test_killed_download_keeps_the_files_it_finished(hub: Hub, tmp_path: Path) -> None:
    """The pod is killed mid-download; the next attempt (a container restart on the same
    volume) does not download again the files that were complete."""
    data = os.urandom(BIG)
    hub.add("model", "acme/kill-model", {"config.json": b'{"x": 1}', "model.safetensors": data})
    stall = hub.stall("model.safetensors", after=BIG // 2)
    dest = tmp_path / "m"
    inputs = [{"name": "model", "source": "hf://acme/kill-model", "dest": str(dest)}]
    first = Fetch("pretrain", tmp_path / "1", inputs, hf_env(hub)).start()
    wait_stalled(stall)
    deadline = time.monotonic() + 30
    while not (dest / "config.json").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert first.proc is not None
    os.killpg(first.proc.pid, signal.SIGKILL)
    first.proc.wait(30)
    stall.release.set()
    assert (dest / "config.json").exists() and not (dest / "model.safetensors").exists()
    configs = len(hub.seen("GET", "/acme/kill-model/resolve/"))
    again = Fetch("pretrain", tmp_path / "2", inputs, hf_env(hub))
    assert again.run() == 0, again.log()[-3000:]
    assert (dest / "model.safetensors").read_bytes() == data
    gets = [p for m, p, _ in hub.requests if m == "GET" and "/acme/kill-model/resolve/" in p]
    assert [p.rsplit("/", 1)[1] for p in gets[configs:]] == ["model.safetensors"], gets
    assert again.result()["fetched"][0]["files"] == 2


def test_cache_entry_with_a_complete_marker_is_not_fetched_again(hub: Hub, tmp_path: Path) -> None:
    """The shared hub cache's fetch Job (builders/hubcache.py): the first run writes the
    COMPLETE marker after the files; a second run on the same volume (the Job re-created)
    downloads nothing and reports the first run's result with ``cached: true``."""
    commit = hub.add("model", "acme/cached-model", MODEL_FILES_V1, revision="v1")
    entry = tmp_path / "cache" / "0123456789abcdef"
    inputs = [
        {
            "name": "model",
            "source": "hf://acme/cached-model@v1",
            "dest": str(entry / "data"),
            "repoType": "model",
            "completeMarker": str(entry / "COMPLETE"),
        }
    ]
    first = Fetch("pretrain", tmp_path / "1", inputs, hf_env(hub))
    assert first.run() == 0, first.log()[-3000:]
    [got] = first.result()["fetched"]
    assert got["revision"] == commit and got["cached"] is False
    marker = json.loads((entry / "COMPLETE").read_text())
    assert marker["revision"] == commit and marker["files"] == got["files"]
    assert not (entry / "data" / "COMPLETE").exists()  # the pods see only the repo's files
    before = len(hub.requests)
    again = Fetch("pretrain", tmp_path / "2", inputs, hf_env(hub))
    assert again.run() == 0, again.log()[-3000:]
    assert hub.requests[before:] == []  # not even the revision was asked again
    [twice] = again.result()["fetched"]
    assert twice["cached"] is True
    assert {k: twice[k] for k in ("revision", "bytes", "files")} == {
        k: got[k] for k in ("revision", "bytes", "files")
    }


def test_no_space_left(hub: Hub, tmp_path: Path) -> None:
    """The download does not fit on the volume (a 1 MiB tmpfs in a user namespace):
    NoSpaceLeft before anything is written, with the sizes."""
    if shutil.which("unshare") is None:
        pytest.skip("no unshare")
    probe = subprocess.run(["unshare", "-rm", "true"], capture_output=True, check=False, timeout=30)
    if probe.returncode != 0:
        pytest.skip(f"no user namespaces here: {probe.stderr.decode()[-200:]}")
    hub.add("model", "acme/big-model", {"model.safetensors": os.urandom(BIG)})
    vol = tmp_path / "vol"
    vol.mkdir()
    inputs = [{"name": "model", "source": "hf://acme/big-model", "dest": str(vol / "model")}]
    f = Fetch("pretrain", tmp_path / "w", inputs, hf_env(hub))
    wrap = ["unshare", "-rm", "sh", "-c", f'mount -t tmpfs -o size=1m tmpfs "{vol}" && exec "$@"']
    assert f.run(wrap=[*wrap, "sh"]) == 1, f.log()[-3000:]
    res = f.result()
    assert res["failure"] == "NoSpaceLeft", res
    assert str(BIG) in res["reason"]


# -- S3 -------------------------------------------------------------------------------------


def test_s3_object_and_prefix_fetched(s3: dict[str, str], tmp_path: Path) -> None:
    c = client(s3)
    c.create_bucket(Bucket="inputs")
    c.put_object(Bucket="inputs", Key="data/train.jsonl", Body=b'{"text": "hello"}\n')
    weights = os.urandom(BIG)
    c.put_object(Bucket="inputs", Key="models/m1/config.json", Body=b'{"hidden_size": 8}')
    c.put_object(Bucket="inputs", Key="models/m1/sub/model.safetensors", Body=weights)
    inputs = [
        {
            "name": "dataset",
            "source": "s3://inputs/data/train.jsonl",
            "dest": str(tmp_path / "d" / "train.jsonl"),
        },
        {"name": "model", "source": "s3://inputs/models/m1", "dest": str(tmp_path / "m" / "m1")},
    ]
    f = Fetch("pretrain", tmp_path / "w", inputs, s3)
    assert f.run() == 0, f.log()[-3000:]
    fetched = {x["name"]: x for x in f.result()["fetched"]}
    assert (tmp_path / "d" / "train.jsonl").read_text() == '{"text": "hello"}\n'
    assert (tmp_path / "m" / "m1" / "sub" / "model.safetensors").read_bytes() == weights
    assert fetched["model"]["files"] == 2 and fetched["model"]["bytes"] == BIG + 18
    assert fetched["dataset"]["files"] == 1 and fetched["dataset"]["revision"]  # the ETag
    f.no_secrets()


@pytest.mark.parametrize(
    ("source", "failure"),
    [
        ("s3://no-such-bucket/models/m1", "BucketNotFound"),
        ("s3://inputs2/models/none", "ObjectNotFound"),
    ],
)
def test_s3_failures(s3: dict[str, str], tmp_path: Path, source: str, failure: str) -> None:
    client(s3).create_bucket(Bucket="inputs2")
    f = Fetch(
        "pretrain", tmp_path, [{"name": "model", "source": source, "dest": str(tmp_path / "m")}], s3
    )
    assert f.run() == 1, f.log()[-3000:]
    res = f.result()
    assert res["failure"] == failure, res
    f.no_secrets()


def pretrain_spec(data: Path) -> dict[str, Any]:
    return {
        "framework": "deepspeed",
        "model": {
            "config": {
                "model_type": "llama",
                "vocab_size": 64,
                "hidden_size": 16,
                "intermediate_size": 32,
                "num_hidden_layers": 1,
                "num_attention_heads": 2,
                "num_key_value_heads": 2,
                "max_position_embeddings": 64,
            }
        },
        "dataPath": str(data),
        "seqLength": 16,
        "microBatchSize": 2,
        "gradientAccumulation": 1,
        "learningRate": 1e-3,
        "minLearningRate": 1e-4,
        "lrSchedule": "cosine",
        "warmupSteps": 0,
        "maxSteps": 2,
        "precision": "fp32",
        "checkpoint": {"interval": 100, "keep": 1, "resume": False},
        "dsConfigPath": None,
    }


def _tokens(path: Path) -> Path:
    """A corpus of uint16 token ids (the .bin layout the pretrain stage reads)."""
    import array

    ids = array.array("H", [(i * 7) % 64 for i in range(4096)])
    path.write_bytes(ids.tobytes())
    return path


@pytest.mark.timeout(900)
def test_stage_output_uploaded_and_next_stage_reads_it(s3: dict[str, str], tmp_path: Path) -> None:
    """A real pretrain stage, its S3 input fetched first by the init container's command,
    reports what was fetched and uploads its output when it succeeded; the next stage's S3
    input, the model it reported, is fetched from the bucket."""
    c = client(s3)
    c.create_bucket(Bucket="runs")
    c.upload_file(str(_tokens(tmp_path / "corpus.bin")), "runs", "data/corpus.bin")
    fetched_dir = str(tmp_path / "inputs" / ".fetched")
    init = Fetch(
        "pretrain",
        tmp_path / "init",
        [
            {
                "name": "data",
                "source": "s3://runs/data/corpus.bin",
                "dest": str(tmp_path / "inputs" / "data" / "corpus.bin"),
            }
        ],
        {**s3, "INTERNLM_FETCHED_DIR": fetched_dir},
    )
    assert init.run() == 0, init.log()[-3000:]
    env = {
        **s3,
        "INTERNLM_OUTPUT_URI": "s3://runs/pretrain-1",
        "INTERNLM_FETCHED_DIR": fetched_dir,
        "NPROC_PER_NODE": "1",
        "NNODES": "1",
        "NODE_RANK": "0",
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(free_port()),
    }
    run = make_stage(
        "pretrain",
        "pretrain",
        pretrain_spec(tmp_path / "inputs" / "data" / "corpus.bin"),
        tmp_path / "stage",
        env=env,
    )
    assert run.run(timeout=800) == 0, run.log()[-4000:]
    res = run.termination()
    assert res["ok"] is True
    assert res["fetched"][0]["name"] == "data" and res["fetched"][0]["bytes"] == 8192
    up = res["uploaded"]
    assert up["uri"] == "s3://runs/pretrain-1" and up["files"] > 0
    keys = {
        o["Key"] for o in c.list_objects_v2(Bucket="runs", Prefix="pretrain-1/").get("Contents", [])
    }
    assert "pretrain-1/hf/config.json" in keys, sorted(keys)
    # the next stage: the model the operator reports (output URI + /hf), fetched from S3
    nxt = Fetch(
        "pretrain",
        tmp_path / "next",
        [
            {
                "name": "model",
                "source": "s3://runs/pretrain-1/hf",
                "dest": str(tmp_path / "next-in" / "hf"),
            }
        ],
        s3,
    )
    assert nxt.run() == 0, nxt.log()[-3000:]
    got = tmp_path / "next-in" / "hf"
    local = tmp_path / "stage" / "output" / "hf"
    assert sorted(p.name for p in got.iterdir()) == sorted(p.name for p in local.iterdir())
    assert json.loads((got / "config.json").read_text())["hidden_size"] == 16
    for secret in (S3_SECRET,):
        assert secret not in run.log() and secret not in json.dumps(res)


@pytest.mark.timeout(900)
def test_upload_failure_fails_the_stage(s3: dict[str, str], tmp_path: Path) -> None:
    run = make_stage(
        "pretrain",
        "pretrain",
        pretrain_spec(_tokens(tmp_path / "corpus.bin")),
        tmp_path / "stage",
        env={
            **s3,
            "INTERNLM_OUTPUT_URI": "s3://no-such-output-bucket/run",
            "NPROC_PER_NODE": "1",
            "NNODES": "1",
            "NODE_RANK": "0",
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(free_port()),
        },
    )
    assert run.run(timeout=800) == 1, run.log()[-4000:]
    res = run.termination()
    assert res["ok"] is False and res["failure"] == "UploadFailed", res
    assert "no-such-output-bucket" in res["reason"]
