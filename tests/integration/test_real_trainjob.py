"""The first TrainJob that really runs: through the operator (in-process), on the real node
``real-0``, in the project's own pretrain image (CPU variant, built by images/build.py).

A cluster of this module's own (real-node mode, state ``e2e/.cluster-realnode-trainjob``, port
base 20400; exclusive on the host through ``realnode_fixture``). A tiny random Llama, its
tokenizer and a tokenised corpus are made at test time by a pod of the same image (nothing
from a hub) on a hostPath PersistentVolume; the TrainJob (DeepSpeed ZeRO-2, 2 nodes = 2 pods,
torchrun rendezvous through the operator's headless Service, on CPU with gloo) trains it and
writes checkpoints and the Hugging Face model to another one. Checked: phase Succeeded, real
progress and outputs in status, the model loads and generates with transformers (in a pod of
the image), DeepSpeed ran with the ds_config.json the operator rendered; a pod killed after
the first checkpoint makes the gang restart and resume from that checkpoint.

Needs root, the real node's packages and buildah (skipped otherwise, like test_real_node).
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import sys
import textwrap
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from internlm_operator.builders.security import WORKLOAD_UID
from internlm_operator.config import OperatorConfig, default_images

from tests.conftest import REPO, wait_until
from tests.integration.conftest import Batch, OperatorHandle, running_operator
from tests.integration.realnode_fixture import (
    RealCluster,
    image_archive,
    missing_prerequisites,
    real_node_cluster,
)

pytestmark = pytest.mark.cluster

PORT_BASE = 20400
STATE = REPO / "e2e" / ".cluster-realnode-trainjob"
IMAGE = "localhost/internlm-operator/pretrain:cpu"
NS_PREFIX = "rtj-"
UID = WORKLOAD_UID  # the user the pods run as (and the workload images' user)


# ---------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def pretrain_archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The pretrain CPU image (warm: the cached archive; cold: a full build, minutes)."""
    why = missing_prerequisites()
    if why:
        pytest.skip(why)
    for tool in ("buildah", "umoci", "skopeo"):
        if not shutil.which(tool):
            pytest.skip(f"{tool} is needed to build the pretrain image (.ci/run installs it)")
    return image_archive("pretrain", tmp_path_factory.mktemp("build"))


@pytest.fixture(scope="module")
def real(pretrain_archive: Path) -> Iterator[RealCluster]:
    with real_node_cluster("test_real_trainjob", STATE, PORT_BASE) as c:
        t0 = time.monotonic()
        c.import_image(pretrain_archive)
        sys.stderr.write(f"[test_real_trainjob] image imported in {time.monotonic() - t0:.0f}s\n")
        for f in sorted((REPO / "crds").glob("*.yaml")):
            c.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(f))
        c.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd", "--all")
        yield c


def real_operator_config(real: RealCluster, **overrides: Any) -> OperatorConfig:
    """The in-process operator of a real-node module: the imported pretrain image, fast
    resync and retries, its namespaces only."""
    settings: dict[str, Any] = dict(
        kubeconfig=str(real.kubeconfig),
        namespaces=(f"{NS_PREFIX}*",),
        metrics_port=0,
        health_port=0,
        resync_seconds=1.0,
        images={**default_images(), "pretrain": IMAGE},
        image_pull_policy="Never",
        # real pods have 10.88.x.y addresses on the cni-local0 bridge: polling stays here
        progress_timeout=1.0,
        progress_interval=1.0,
        retry_min_seconds=0.5,
        retry_max_seconds=5.0,
    )
    return OperatorConfig(**{**settings, **overrides})


@pytest.fixture(scope="module")
def operator(real: RealCluster) -> Iterator[OperatorHandle]:
    with running_operator(real_operator_config(real)) as handle:
        yield handle


@pytest.fixture
def ns(real: RealCluster) -> Iterator[str]:
    name = f"{NS_PREFIX}{uuid.uuid4().hex[:6]}"
    real.kubectl("create", "namespace", name)
    wait_until(
        "the default ServiceAccount",
        lambda: real.kubectl("get", "sa", "default", "-n", name, check=False).returncode == 0,
        timeout=60,
    )
    yield name
    real.kubectl("delete", "namespace", name, "--wait=false", check=False)


# ---------------------------------------------------------------------------- helpers


def host_volumes(
    c: RealCluster, ns: str, root: Path, *claims: str, **existing: Path
) -> dict[str, Path]:
    """A hostPath PV + bound PVC per claim (a new directory under ``root``, or an ``existing``
    one), its directory writable by the workload's user."""
    dirs: dict[str, Path] = {}
    docs = []
    for claim in (*claims, *existing):
        d = existing.get(claim) or root / claim
        d.mkdir(parents=True, exist_ok=True)
        os.chown(d, UID, UID)
        for p in (d, *d.parents):  # the kubelet's and the pod's way down to it
            if p == Path("/"):
                break
            p.chmod(p.stat().st_mode | 0o711)
        dirs[claim] = d
        pv = f"{ns}-{claim}"
        docs += [
            {
                "apiVersion": "v1",
                "kind": "PersistentVolume",
                "metadata": {"name": pv},
                "spec": {
                    "capacity": {"storage": "10Gi"},
                    "accessModes": ["ReadWriteMany"],
                    "persistentVolumeReclaimPolicy": "Retain",
                    "storageClassName": "",
                    "hostPath": {"path": str(d), "type": "Directory"},
                    "claimRef": {"namespace": ns, "name": claim},
                },
            },
            {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "metadata": {"name": claim, "namespace": ns},
                "spec": {
                    "accessModes": ["ReadWriteMany"],
                    "storageClassName": "",
                    "volumeName": pv,
                    "resources": {"requests": {"storage": "10Gi"}},
                },
            },
        ]
    c.kubectl(
        "apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": docs})
    )
    for claim in dirs:
        wait_until(
            f"PVC {claim} Bound",
            lambda claim=claim: c.get("pvc", claim, "-n", ns)["status"].get("phase") == "Bound",
            timeout=60,
        )
    return dirs


def run_pod(
    c: RealCluster, ns: str, name: str, script: str, claims: dict[str, bool], timeout: float = 300
) -> dict[str, Any]:
    """Run ``script`` in a pod of the pretrain image with the claims mounted at /mnt/<claim>
    (read-only when True); its termination message, parsed."""
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "restartPolicy": "Never",
            "automountServiceAccountToken": False,
            "containers": [
                {
                    "name": "main",
                    "image": IMAGE,
                    "imagePullPolicy": "Never",
                    "command": ["python", "-c", textwrap.dedent(script)],
                    "env": [{"name": "OMP_NUM_THREADS", "value": "1"}],
                    "resources": {"limits": {"cpu": "1", "memory": "2Gi"}},
                    "terminationMessagePolicy": "FallbackToLogsOnError",
                    "volumeMounts": [
                        {"name": k, "mountPath": f"/mnt/{k}", "readOnly": ro}
                        for k, ro in claims.items()
                    ],
                }
            ],
            "volumes": [{"name": k, "persistentVolumeClaim": {"claimName": k}} for k in claims],
        },
    }
    c.apply(pod, ns)

    def done() -> dict[str, Any] | None:
        st = c.get("pod", name, "-n", ns).get("status", {})
        return st if st.get("phase") in ("Succeeded", "Failed") else None

    st: dict[str, Any] = wait_until(
        f"pod {name} finished",
        done,
        timeout=timeout,
        interval=1,
        explain=lambda: c.kubectl("describe", "pod", name, "-n", ns, check=False).stdout[-3000:],
    )
    logs = c.kubectl("logs", name, "-n", ns, check=False).stdout
    assert st["phase"] == "Succeeded", logs[-4000:]
    msg = st["containerStatuses"][0]["state"]["terminated"].get("message", "")
    result: dict[str, Any] = json.loads(msg)
    return result


# A byte-level BPE tokenizer trained here, a random Llama of ~150k parameters and a tokenised
# corpus (.npy of token ids: data.format tokenized), all on the `corpus` claim.
MAKE_ASSETS = """
import json, random
from pathlib import Path
import numpy as np, torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

root = Path("/mnt/corpus")
rng = random.Random(0)
names = ["alice", "bob", "carol", "dave", "erin", "frank"]
verbs = ["likes", "sees", "helps", "calls", "meets", "finds"]
things = ["the cat", "a dog", "the red ball", "some tea", "a small box", "the old map"]
sent = lambda: f"{rng.choice(names)} {rng.choice(verbs)} {rng.choice(things)}."
docs = [" ".join(sent() for _ in range(rng.randint(3, 8))) for _ in range(400)]
tok = Tokenizer(models.BPE(unk_token="<unk>"))
tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
tok.decoder = decoders.ByteLevel()
tok.train_from_iterator(docs, trainers.BpeTrainer(
    vocab_size=400, special_tokens=["<unk>", "<s>", "</s>", "<pad>"],
    initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False))
hf_tok = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>",
                                 unk_token="<unk>", pad_token="<pad>")
model_dir = root / "tiny-llama"
hf_tok.save_pretrained(model_dir)
config = LlamaConfig(vocab_size=len(hf_tok), hidden_size=64, intermediate_size=192,
                     num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                     max_position_embeddings=512, bos_token_id=hf_tok.bos_token_id,
                     eos_token_id=hf_tok.eos_token_id, pad_token_id=hf_tok.pad_token_id,
                     tie_word_embeddings=False)
torch.manual_seed(0)
model = LlamaForCausalLM(config)
model.save_pretrained(model_dir, safe_serialization=True)
ids = []
for d in docs:
    ids += hf_tok(d, add_special_tokens=False)["input_ids"] + [hf_tok.eos_token_id]
(root / "tokenized").mkdir(exist_ok=True)
np.save(root / "tokenized" / "shard-00000.npy", np.asarray(ids, dtype=np.int32))
out = {"params": sum(p.numel() for p in model.parameters()), "tokens": len(ids),
       "vocab": len(hf_tok)}
open("/dev/termination-log", "w").write(json.dumps(out))
"""

LOAD_MODEL = """
import json, math, transformers
hf = "/mnt/models/%s"
m = transformers.AutoModelForCausalLM.from_pretrained(hf)
t = transformers.AutoTokenizer.from_pretrained(hf)
ids = t("alice likes", return_tensors="pt").input_ids
loss = m(input_ids=ids, labels=ids).loss.item()
g = m.generate(ids, max_new_tokens=6, do_sample=False, pad_token_id=t.pad_token_id)
out = {"params": sum(p.numel() for p in m.parameters()), "text": t.decode(g[0]),
       "loss": loss, "finite": math.isfinite(loss)}
open("/dev/termination-log", "w").write(json.dumps(out))
"""


def trainjob(name: str, out_path: str, max_steps: int, interval: int) -> dict[str, Any]:
    return {
        "apiVersion": "internlm.io/v1alpha1",
        "kind": "TrainJob",
        "metadata": {"name": name},
        "spec": {
            "framework": "deepspeed",
            "model": {"source": {"pvc": {"claimName": "corpus", "path": "tiny-llama"}}},
            "data": {"pvc": {"claimName": "corpus", "path": "tokenized"}, "format": "tokenized"},
            "output": {"pvc": {"claimName": "models", "path": out_path}},
            "nodes": 2,
            # real-0 has 2 CPUs; its 8 GPUs are a status patch (the workload runs on CPU)
            "resources": {"gpusPerNode": 1, "cpu": "750m", "memory": "3Gi"},
            "parallelism": {"zeroStage": 2},
            "optimization": {
                "learningRate": 0.003,
                "minLearningRate": 0.0003,
                "lrSchedule": "cosine",
                "globalBatchSize": 8,
                "microBatchSize": 2,
                "seqLength": 128,
                "maxSteps": max_steps,
                "precision": "fp32",
            },
            "checkpoint": {"interval": interval, "keep": 2, "resume": True},
            "runPolicy": {"backoffLimit": 2},
        },
    }


def metrics(out: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines() if x]


def pod_progress(ip: str) -> dict[str, Any]:
    try:
        with urllib.request.urlopen(f"http://{ip}:9400/progress", timeout=2) as r:
            data: dict[str, Any] = json.loads(r.read())
            return data
    except (OSError, ValueError):
        return {}


def explain(b: Batch) -> str:
    """The TrainJob's status, its pods' log tails and the namespace's events, as text."""
    c = b.cluster
    parts = [json.dumps(b.status(), indent=1)]
    for p in b.pods(active_only=False):
        name = p["metadata"]["name"]
        logs = c.kubectl("logs", name, "-n", b.ns, "--tail=40", check=False)
        parts.append(f"--- {name} ({p['status'].get('phase')}):\n{logs.stdout}{logs.stderr}")
    parts.append(c.kubectl("get", "events", "-n", b.ns, check=False).stdout[-3000:])
    return "\n".join(parts)


# ---------------------------------------------------------------------------- tests


@pytest.fixture(scope="module")
def assets(real: RealCluster, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The tiny model, tokenizer and tokenised corpus (made once, by a pod of the image) on a
    host directory every test's ``corpus`` volume points at."""
    ns = f"{NS_PREFIX}assets"
    real.kubectl("create", "namespace", ns)
    wait_until(
        "the default ServiceAccount",
        lambda: real.kubectl("get", "sa", "default", "-n", ns, check=False).returncode == 0,
        timeout=60,
    )
    root = tmp_path_factory.mktemp("real-trainjob")
    host_volumes(real, ns, root, "corpus")
    t0 = time.monotonic()
    made = run_pod(real, ns, "make-assets", MAKE_ASSETS, {"corpus": False})
    made["seconds"] = round(time.monotonic() - t0, 1)
    made["dir"] = str(root / "corpus")
    assert made["params"] > 50_000 and made["tokens"] > 8 * 128, made
    return made


def start(
    c: RealCluster, ns: str, assets: dict[str, Any], tmp: Path, steps: int, interval: int
) -> tuple[Batch, Path]:
    vols = host_volumes(c, ns, tmp / "volumes", "models", corpus=Path(assets["dir"]))
    c.apply(trainjob("tiny", "trainjobs/tiny", max_steps=steps, interval=interval), ns)
    return Batch(c, ns, "TrainJob", "tiny"), vols["models"] / "trainjobs" / "tiny"


def check_model(c: RealCluster, ns: str, out: Path, assets: dict[str, Any]) -> None:
    """The Hugging Face model is on the volume and loads with transformers (in the image)."""
    hf = out / "hf"
    assert (hf / "config.json").is_file() and (hf / "model.safetensors").is_file()
    assert (hf / "tokenizer.json").is_file()
    loaded = run_pod(c, ns, "load-model", LOAD_MODEL % "trainjobs/tiny/hf", {"models": True})
    assert loaded["params"] == assets["params"] and loaded["finite"], loaded
    assert loaded["text"].startswith("alice likes"), loaded


def logs_of(b: Batch) -> str:
    return "".join(
        b.cluster.kubectl("logs", p["metadata"]["name"], "-n", b.ns, check=False).stdout
        for p in b.pods(active_only=False)
    )


@pytest.mark.timeout(1800)
def test_two_node_trainjob_succeeds_on_the_real_node(
    real: RealCluster, operator: OperatorHandle, assets: dict[str, Any], ns: str, tmp_path: Path
) -> None:
    c = real
    b, out = start(c, ns, assets, tmp_path, steps=12, interval=4)
    t0 = time.monotonic()
    running = b.wait_running(2, timeout=300)
    assert {p["spec"]["nodeName"] for p in running} == {"real-0"}
    st = wait_until(
        "TrainJob tiny Succeeded",
        lambda: (s := b.status()).get("phase") in ("Succeeded", "Failed") and s,
        timeout=1200,
        interval=1,
    )
    took = time.monotonic() - t0
    if st["phase"] != "Succeeded":
        pytest.fail(f"the TrainJob failed: {explain(b)}")
    prog = st["progress"]
    assert prog["step"] == 12 and prog["totalSteps"] == 12, prog
    assert math.isfinite(prog["loss"]) and prog["loss"] > 0, prog
    assert prog["tokensPerSecond"] > 0, prog
    assert st["outputs"]["model"] == "pvc://models/trainjobs/tiny/hf", st
    assert st["lastCheckpoint"]["step"] == 12, st
    assert not st.get("restarts"), st
    rows = metrics(out)
    assert [r["step"] for r in rows] == list(range(1, 13)), rows
    assert rows[-1]["loss"] < rows[0]["loss"], rows
    assert sorted(p.name for p in (out / "checkpoints").glob("step-*")) == ["step-12", "step-8"]
    check_model(c, ns, out, assets)

    # DeepSpeed ran with the ds_config.json the operator rendered into its ConfigMap
    cm = c.get("configmap", "tiny-tj-config", "-n", ns)
    rendered = json.loads(cm["data"]["ds_config.json"])
    config = json.loads(cm["data"]["config.json"])
    assert config["spec"]["dsConfigPath"] == "/etc/internlm/ds_config.json"
    used = json.loads((out / "ds_config.used.json").read_text())
    assert used["source"] == "/etc/internlm/ds_config.json", used
    # without the Python headers (the CPU image) no DeepSpeed op can be JIT-built: torch's
    # AdamW (torch_adam) stands in for the fused one; nothing else differs
    assert used["cpuAdaptations"] in ([], ["optimizer.params.torch_adam"]), used
    if used["cpuAdaptations"]:
        used["config"]["optimizer"]["params"].pop("torch_adam")
    for key, value in rendered.items():
        assert used["config"].get(key) == value, (key, value, used["config"].get(key))
    assert used["zeroStage"] == 2 and used["scheduler"] == "WarmupCosineLR", used
    assert used["trainBatchSize"] == 8 and used["gradientAccumulation"] == 2, used
    sys.stderr.write(
        f"[test_real_trainjob] assets {assets['seconds']}s; 12 steps: Succeeded {took:.0f}s "
        f"after both pods ran\n"
    )


@pytest.mark.timeout(2400)
def test_killed_pod_restarts_the_gang_which_resumes_from_the_checkpoint(
    real: RealCluster, operator: OperatorHandle, assets: dict[str, Any], ns: str, tmp_path: Path
) -> None:
    c = real
    steps, interval = 40, 10
    b, out = start(c, ns, assets, tmp_path, steps=steps, interval=interval)
    t0 = time.monotonic()

    def first_checkpoint() -> dict[str, Any] | None:
        for p in b.pods():
            ip = p["status"].get("podIP")
            prog = pod_progress(ip) if ip else {}
            if (prog.get("checkpoint") or {}).get("step"):
                return {"pod": p, "progress": prog}
        if b.status().get("phase") in ("Failed", "Succeeded"):
            pytest.fail(f"the TrainJob ended before its first checkpoint: {explain(b)}")
        return None

    seen = wait_until("the first checkpoint", first_checkpoint, timeout=900, interval=0.2)
    t_ckpt = time.monotonic() - t0
    victim = next(
        p for p in b.pods()
        if p["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"] == "1"
    )  # fmt: skip
    c.kubectl("delete", "pod", victim["metadata"]["name"], "-n", ns, "--wait=false")
    ckpt_step, killed_at = seen["progress"]["checkpoint"]["step"], seen["progress"]["step"]
    assert killed_at < steps, "training finished before a pod could be killed"

    st = wait_until(
        "TrainJob tiny finished",
        lambda: (s := b.status()).get("phase") in ("Succeeded", "Failed") and s,
        timeout=1500,
        interval=1,
    )
    took = time.monotonic() - t0
    if st["phase"] != "Succeeded":
        pytest.fail(f"the TrainJob failed: {explain(b)}")
    assert st["restarts"] == 1, st
    assert st["progress"]["step"] == steps and st["lastCheckpoint"]["step"] == steps, st

    # resumed: the restarted gang says which checkpoint it loaded, and its steps start right
    # after it. That is a periodic checkpoint, or the one the gang saved when SIGTERM reached
    # it (then no step is repeated and the metrics never go back)
    logs = logs_of(b)
    said = re.findall(r"resumed from checkpoint step (\d+)", logs)
    assert said, f"no resume in the restarted pods' logs:\n{logs[-3000:]}"
    resumed_from = int(said[-1])
    rows = metrics(out)
    got = [r["step"] for r in rows]
    assert resumed_from >= ckpt_step, (resumed_from, ckpt_step, got)
    assert resumed_from % interval == 0 or resumed_from >= killed_at, (resumed_from, got)
    assert got[len(got) - (steps - resumed_from) :] == list(range(resumed_from + 1, steps + 1)), got
    assert sorted(set(got)) == list(range(1, steps + 1)), got
    check_model(c, ns, out, assets)
    restarted = [
        ln
        for ln in c.kubectl("get", "events", "-n", ns, check=False).stdout.splitlines()
        if "trainjob/tiny" in ln and "Warning" in ln  # the gang restart: why (Signal/Transient)
    ]
    sys.stderr.write("".join(f"[test_real_trainjob] event: {ln}\n" for ln in restarted))
    sys.stderr.write(
        f"[test_real_trainjob] kill/resume: first checkpoint {t_ckpt:.0f}s after apply, pod "
        f"killed at step {killed_at}, resumed from {resumed_from}, Succeeded {took:.0f}s "
        "after apply\n"
    )


@pytest.mark.timeout(1800)
def test_suspended_trainjob_checkpoints_when_stopped_and_resumes_from_it(
    real: RealCluster, operator: OperatorHandle, assets: dict[str, Any], ns: str, tmp_path: Path
) -> None:
    """spec.suspend on a running 2-node TrainJob: the Job is suspended, the real kubelet ends
    the pods with SIGTERM, the workload saves a checkpoint at the step it reached (no periodic
    checkpoint is due: the interval is the whole run) and exits; nothing counts as a failure.
    Unsuspended, the gang resumes from that checkpoint and completes."""
    c = real
    steps = 40
    b, out = start(c, ns, assets, tmp_path, steps=steps, interval=steps)
    b.wait_running(2, timeout=300)
    wait_until(
        "a few steps done",
        lambda: (
            (s := b.status()).get("phase") not in ("Failed", "Succeeded")
            and ((s.get("progress") or {}).get("step") or 0) >= 3
            and s
        ),
        timeout=600,
        interval=0.5,
        explain=lambda: explain(b),
    )
    c.kubectl("patch", "trainjob", "tiny", "-n", ns, "--type=merge", "-p",
              '{"spec":{"suspend":true}}')  # fmt: skip
    st = wait_until(
        "TrainJob tiny Suspended with its pods gone",
        lambda: (s := b.status()).get("phase") == "Suspended" and not b.pods() and s,
        timeout=300,
        interval=1,
        explain=lambda: explain(b),
    )
    assert not st.get("restarts"), st
    saved = sorted(p.name for p in (out / "checkpoints").glob("step-*/COMPLETE"))
    assert len(saved) == 1, sorted(p.name for p in (out / "checkpoints").iterdir())
    stopped_at = int(
        json.loads(next((out / "checkpoints").glob("step-*/COMPLETE")).read_text())["step"]
    )
    assert 3 <= stopped_at < steps, stopped_at
    job = c.get("job", "tiny-tj", "-n", ns)
    assert job["spec"]["suspend"] is True, job["spec"]
    terminated = [
        cs["state"]["terminated"]
        for p in b.pods(active_only=False)
        for cs in p["status"].get("containerStatuses") or []
        if cs.get("state", {}).get("terminated")
    ]
    sys.stderr.write(f"[test_real_trainjob] suspended at step {stopped_at}: {terminated}\n")

    c.kubectl("patch", "trainjob", "tiny", "-n", ns, "--type=merge", "-p",
              '{"spec":{"suspend":false}}')  # fmt: skip
    st = wait_until(
        "TrainJob tiny finished",
        lambda: (s := b.status()).get("phase") in ("Succeeded", "Failed") and s,
        timeout=1200,
        interval=1,
    )
    if st["phase"] != "Succeeded":
        pytest.fail(f"the TrainJob failed after resuming: {explain(b)}")
    assert not st.get("restarts"), st  # a suspension is not a failure
    assert f"resumed from checkpoint step {stopped_at}" in logs_of(b), logs_of(b)[-3000:]
    got = [r["step"] for r in metrics(out)]
    assert got == list(range(1, steps + 1)), got  # nothing repeated, nothing skipped
    check_model(c, ns, out, assets)
    sys.stderr.write(
        f"[test_real_trainjob] suspend/resume: stopped at step {stopped_at}, resumed from it, "
        f"{steps} steps\n"
    )


def test_tensor_or_sequence_parallel_with_deepspeed_is_invalid(
    real: RealCluster, operator: OperatorHandle, ns: str
) -> None:
    for name, par in (("tp", {"tensor": 2}), ("sp", {"sequence": 2})):
        tj = trainjob(name, f"trainjobs/{name}", max_steps=4, interval=2)
        tj["spec"]["resources"]["gpusPerNode"] = 2
        tj["spec"]["parallelism"].update(par)
        c = real
        c.apply(tj, ns)
        b = Batch(c, ns, "TrainJob", name)
        stalled = wait_until(
            f"{name} Stalled",
            lambda b=b: (s := b.condition("Stalled")) and s["status"] == "True" and s,
            timeout=60,
        )
        assert stalled["reason"] == "InvalidSpec", stalled
        key = next(iter(par))
        assert f"parallelism.{key} 2 is not supported by framework deepspeed" in stalled["message"]
        assert b.job() is None
