"""The chain for real: TrainJob -> FineTune -> EvalRun (one gate passed, one failed on purpose)
[-> ModelServe -> Agent when their CPU images are there], through the operator (in-process),
on the real node ``real-0``, each stage in the project's own CPU image.

A cluster of this module's own (real-node mode, state ``e2e/.cluster-realnode-chain``, port
base 24400; exclusive on the host through ``realnode_fixture``). The tiny random Llama, its
tokenizer and the tokenised corpus are made at test time by a pod (as in test_real_trainjob,
but in the finetune image: see realchain.ASSETS_IMAGE); the SFT set and the eval sets are
small files shipped in the repo (e2e/data/chain/). The manifests are e2e/realchain.py's,
which `make demo` runs in real mode too. Every stage reads its upstream's output through the
operator's ``fromResource`` references, and each status is checked for real figures (steps,
loss, scores) and the lineage.

Images: built (or reused) by images/build.py like test_real_trainjob does; with
INTERNLM_REAL_IMAGES=cached the newest archive already built for each image is used instead
(while others edit the workload sources, which would rebuild every workload image), or for
the images it lists (INTERNLM_REAL_IMAGES=pretrain,finetune,eval).

Needs root, the real node's packages and buildah (skipped otherwise, like test_real_node).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from internlm_operator.config import OperatorConfig, default_images

from tests.conftest import REPO, wait_until
from tests.integration.conftest import Batch, OperatorHandle
from tests.integration.realnode_fixture import (
    RealCluster,
    image_archive,
    missing_prerequisites,
    real_node_cluster,
)
from tests.integration.test_modelserve import Serve
from tests.integration.test_real_trainjob import UID, host_volumes

sys.path.insert(0, str(REPO / "e2e"))
import realchain
from realchain import GATE_FAIL, GATE_PASS, evalrun, finetune, trainjob

pytestmark = pytest.mark.cluster

PORT_BASE = 24400
STATE = REPO / "e2e" / ".cluster-realnode-chain"
NS_PREFIX = "rch-"
STAGE_IMAGES = realchain.IMAGES


def image_ref(name: str) -> str:
    return f"localhost/internlm-operator/{name}:cpu"


def log(msg: str) -> None:
    sys.stderr.write(f"[test_real_chain] {msg}\n")


def build_archive(name: str, tmp: Path) -> Path:
    return image_archive(name, tmp)


# ---------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def archives(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    why = missing_prerequisites()
    if why:
        pytest.skip(why)
    for tool in ("buildah", "umoci", "skopeo"):
        if not shutil.which(tool):
            pytest.skip(f"{tool} is needed to build the images (.ci/run installs it)")
    tmp = tmp_path_factory.mktemp("build")
    return {name: build_archive(name, tmp) for name in STAGE_IMAGES}


def import_image(c: RealCluster, archive: Path) -> None:
    t0 = time.monotonic()
    c.import_image(archive)
    log(f"{archive.name} imported in {time.monotonic() - t0:.0f}s")


@pytest.fixture(scope="module")
def real(archives: dict[str, Path]) -> Iterator[RealCluster]:
    """The cluster, with the first stages' images imported. Each torch image is ~9 GB
    unpacked on the node, so the others come (and go) as the chain reaches them: eval once the
    TrainJob is done (pretrain is removed then), serve and agent for the serving half."""
    with real_node_cluster("test_real_chain", STATE, PORT_BASE) as c:
        for name in ("finetune", "pretrain"):
            import_image(c, archives[name])
        for f in sorted((REPO / "crds").glob("*.yaml")):
            c.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(f))
        c.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd", "--all")
        yield c


@pytest.fixture(scope="module")
def operator(real: RealCluster, archives: dict[str, Path]) -> Iterator[OperatorHandle]:
    config = OperatorConfig(
        kubeconfig=str(real.kubeconfig),
        namespaces=(f"{NS_PREFIX}*",),
        metrics_port=0,
        health_port=0,
        resync_seconds=1.0,
        images={
            **default_images(),
            **{n: image_ref(n) for n in (*archives, *realchain.SERVING_IMAGES)},
        },
        image_pull_policy="Never",
        progress_timeout=1.0,
        progress_interval=1.0,
        retry_min_seconds=0.5,
        retry_max_seconds=5.0,
    )
    handle = OperatorHandle(config)
    handle.start()
    yield handle
    handle.stop()


@pytest.fixture(scope="module")
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


@pytest.fixture(scope="module")
def volumes(
    real: RealCluster, ns: str, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:
    """``corpus`` (the tiny model, tokenizer and corpus, made by a pod; the repo's SFT and
    eval sets copied in) and ``models`` (every stage's output), both hostPath."""
    root = tmp_path_factory.mktemp("real-chain")
    vols = host_volumes(real, ns, root, "corpus", "models")
    for rel in realchain.DATA_FILES.values():
        d = vols["corpus"] / rel
        d.parent.mkdir(exist_ok=True)
        os.chown(d.parent, UID, UID)
    for f, rel in realchain.DATA_FILES.items():
        shutil.copy(realchain.DATA / f, vols["corpus"] / rel)
        os.chown(vols["corpus"] / rel, UID, UID)
    t0 = time.monotonic()
    real.apply(realchain.assets_pod(image_ref(realchain.ASSETS_IMAGE)), ns)
    st = wait_until(
        "the assets pod finished",
        lambda: (
            (s := real.get("pod", "make-assets", "-n", ns).get("status", {})).get("phase")
            in ("Succeeded", "Failed")
            and s
        ),
        timeout=300,
        interval=1,
    )
    logs = real.kubectl("logs", "make-assets", "-n", ns, check=False).stdout
    assert st["phase"] == "Succeeded", logs[-4000:]
    made = json.loads(st["containerStatuses"][0]["state"]["terminated"]["message"])
    log(f"assets {made} in {time.monotonic() - t0:.0f}s")
    return vols


# ---------------------------------------------------------------------------- helpers


def explain(b: Batch) -> str:
    c = b.cluster
    parts = [json.dumps(b.status(), indent=1)]
    for p in b.pods(active_only=False):
        name = p["metadata"]["name"]
        logs = c.kubectl("logs", name, "-n", b.ns, "--tail=60", "--all-containers", check=False)
        parts.append(f"--- {name} ({p['status'].get('phase')}):\n{logs.stdout}{logs.stderr}")
        st = p["status"].get("containerStatuses") or []
        parts.append(json.dumps([s.get("state") for s in st])[-2000:])
    parts.append(c.kubectl("get", "events", "-n", b.ns, check=False).stdout[-3000:])
    return "\n".join(parts)


def finished(b: Batch, timeout: float, want: str = "Succeeded") -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        s = b.status()
        if s.get("phase") in ("Succeeded", "Failed"):
            return s
        return None

    st: dict[str, Any] = wait_until(
        f"{b.kind} {b.name} finished", done, timeout=timeout, interval=2, explain=lambda: explain(b)
    )
    if st["phase"] != want:
        pytest.fail(f"{b.kind} {b.name} is {st['phase']}, not {want}:\n{explain(b)}")
    return st


def lineage(st: dict[str, Any]) -> list[tuple[str, str]]:
    return [(e["kind"], e["name"]) for e in st.get("lineage") or []]


def cond(st: dict[str, Any], type_: str) -> dict[str, Any]:
    return next((c for c in st.get("conditions") or [] if c["type"] == type_), {})


# ---------------------------------------------------------------------------- the chain

TIMES: dict[str, float] = {}


@pytest.mark.timeout(1800)
def test_trainjob_then_finetune_then_evalruns(
    real: RealCluster,
    operator: OperatorHandle,
    volumes: dict[str, Path],
    ns: str,
    archives: dict[str, Path],
) -> None:
    c = real
    docs = [
        trainjob(),
        finetune(),
        evalrun("gate-pass", GATE_PASS),
        evalrun("gate-fail", GATE_FAIL),
    ]
    t0 = time.monotonic()
    for d in docs:  # all at once: each stage waits for its upstream
        c.apply(d, ns)
    tj = Batch(c, ns, "TrainJob", "base")
    ft = Batch(c, ns, "FineTune", "sft")
    ev_pass = Batch(c, ns, "EvalRun", "gate-pass")
    ev_fail = Batch(c, ns, "EvalRun", "gate-fail")

    st = finished(tj, 900)
    TIMES["trainjob"] = time.monotonic() - t0
    prog = st["progress"]
    assert prog["step"] == prog["totalSteps"] == 8 and math.isfinite(prog["loss"]), prog
    assert st["outputs"]["model"] == "pvc://models/trainjobs/base/hf", st
    log(f"TrainJob Succeeded in {TIMES['trainjob']:.0f}s: {prog}")
    # while the FineTune runs: the EvalRuns' image in, the TrainJob's out (disk)
    c.remove_image(image_ref("pretrain"))
    import_image(c, archives["eval"])

    st = finished(ft, 1200)
    TIMES["finetune"] = time.monotonic() - t0 - TIMES["trainjob"]
    prog = st["progress"]
    assert prog["step"] == prog["totalSteps"] and prog["step"] > 0, prog
    assert math.isfinite(prog["loss"]) and prog["loss"] > 0, prog
    assert st["outputs"]["merged"] == "pvc://models/finetunes/sft/merged", st
    assert st["outputs"]["adapter"] == "pvc://models/finetunes/sft/adapter", st
    merged = volumes["models"] / "finetunes" / "sft" / "merged"
    assert (merged / "config.json").is_file(), sorted(p.name for p in merged.parent.iterdir())
    adapter = json.loads((merged.parent / "adapter" / "adapter_config.json").read_text())
    assert adapter["r"] == 8 and adapter["lora_alpha"] == 16, adapter
    assert lineage(st) == [("TrainJob", "base")], st.get("lineage")
    log(f"FineTune Succeeded {TIMES['finetune']:.0f}s after the TrainJob: {prog}")

    st_pass = finished(ev_pass, 1200)
    st_fail = finished(ev_fail, 1200, want="Failed")  # the run succeeded, its gate failed
    TIMES["evalruns"] = time.monotonic() - t0 - TIMES["trainjob"] - TIMES["finetune"]
    scores = {(s["dataset"], s["metric"]): s for s in st_pass["scores"]}
    assert set(scores) == {("repeat_qa", "accuracy"), ("who_mcq", "accuracy")}, st_pass
    assert all(0 <= s["value"] <= 100 for s in scores.values()), st_pass
    assert scores[("who_mcq", "accuracy")]["passed"] is True, st_pass
    assert st_pass["passed"] is True and cond(st_pass, "Ready")["status"] == "True", st_pass
    assert lineage(st_pass) == [("TrainJob", "base"), ("FineTune", "sft")], st_pass["lineage"]

    assert st_fail["passed"] is False, st_fail
    failed = cond(st_fail, "Failed")
    assert failed["status"] == "True" and failed["reason"] == "ThresholdsNotMet", st_fail
    assert "repeat_qa" in failed["message"], failed
    fscores = {s["dataset"]: s for s in st_fail["scores"]}
    assert fscores["repeat_qa"]["passed"] is False and fscores["who_mcq"]["passed"] is True
    # the same model, the same data, greedy decoding: the same scores
    assert fscores["repeat_qa"]["value"] == scores[("repeat_qa", "accuracy")]["value"]
    log(
        f"EvalRuns done {TIMES['evalruns']:.0f}s after the FineTune: "
        + ", ".join(f"{k[0]}={v['value']}" for k, v in scores.items())
    )


@pytest.fixture(scope="module")
def serving_images(real: RealCluster, tmp_path_factory: pytest.TempPathFactory) -> None:
    """The serve and agent images, imported when the serving half of the chain runs."""
    tmp = tmp_path_factory.mktemp("build-serving")
    for name in ("finetune", "eval"):  # the batch half is done: room for the serving images
        real.remove_image(image_ref(name))
    for name in realchain.SERVING_IMAGES:
        import_image(real, build_archive(name, tmp))


def pod_ip(c: RealCluster, ns: str, selector: str) -> str:
    pods = c.get("pods", "-n", ns, "-l", selector)["items"]
    ips = [p["status"].get("podIP") for p in pods if p["status"].get("phase") == "Running"]
    assert ips and ips[0], pods
    return str(ips[0])


def chat(url: str, model: str, text: str, timeout: float = 300) -> dict[str, Any]:
    body = json.dumps(
        {"model": model, "messages": [{"role": "user", "content": text}], "max_tokens": 16}
    ).encode()
    req = urllib.request.Request(
        f"{url}/chat/completions", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=timeout) as r:
        reply: dict[str, Any] = json.loads(r.read())
    return reply


@pytest.mark.timeout(1800)
def test_modelserve_and_agent_on_the_evaluated_model(
    real: RealCluster, operator: OperatorHandle, serving_images: None, ns: str
) -> None:
    """After the first test: the merged model served by `transformers serve` once EvalRun
    gate-pass passed, and an Agent on it through the ModelServe's Service; both answer."""
    c = real
    ev = Batch(c, ns, "EvalRun", "gate-pass")
    if ev.status().get("passed") is not True:
        pytest.fail("the batch half of the chain did not pass (see the test before this one)")
    t0 = time.monotonic()
    c.apply(realchain.modelserve(gate="gate-pass"), ns)
    c.apply(realchain.agent(), ns)
    ms = Serve(c, ns, "serve")
    ag = Serve(c, ns, "agent", kind="Agent")

    def ready(x: Serve) -> dict[str, Any] | None:
        s = x.status()
        return s if s.get("phase") == "Ready" else None

    st = wait_until(
        "ModelServe serve Ready",
        lambda: ready(ms),
        timeout=900,
        interval=2,
        explain=lambda: (
            json.dumps(ms.status(), indent=1)
            + c.kubectl("get", "events", "-n", ns, check=False).stdout[-3000:]
        ),
    )
    TIMES["modelserve"] = time.monotonic() - t0
    endpoint = st["endpoint"]
    assert endpoint == f"http://serve-ms.{ns}.svc.cluster.local:23333/v1", st
    assert lineage(st) == [
        ("TrainJob", "base"),
        ("FineTune", "sft"),
        ("EvalRun", "gate-pass"),
    ], st.get("lineage")
    url = f"http://{pod_ip(c, ns, 'app.kubernetes.io/instance=serve')}:23333/v1"
    reply = chat(url, realchain.SERVED_NAME, "alice likes")
    assert reply["model"] == realchain.SERVED_NAME, reply
    assert reply["choices"][0]["message"]["role"] == "assistant", reply
    assert isinstance(reply["choices"][0]["message"]["content"], str), reply
    log(f"ModelServe Ready {TIMES['modelserve']:.0f}s after apply, endpoint {endpoint}: {reply}")

    st = wait_until(
        "Agent agent Ready",
        lambda: ready(ag),
        timeout=600,
        interval=2,
        explain=lambda: json.dumps(ag.status(), indent=1),
    )
    assert st["endpoint"].startswith(f"http://agent-ag.{ns}.svc.cluster.local:"), st
    assert st["llm"]["endpoint"] == endpoint, st
    assert [k for k, _ in lineage(st)] == ["TrainJob", "FineTune", "EvalRun", "ModelServe"], st
    port = st["endpoint"].rsplit(":", 1)[1].split("/")[0]
    url = f"http://{pod_ip(c, ns, 'app.kubernetes.io/instance=agent')}:{port}/v1"
    answer = chat(url, "agent", "What is 2 + 3?")
    text = answer["choices"][0]["message"]["content"]
    assert isinstance(text, str), answer
    log(f"Agent Ready, endpoint {st['endpoint']}; asked 'What is 2 + 3?', answered {text!r}")
