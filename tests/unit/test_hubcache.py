"""The shared hub cache, pure layers: entry keys and names, what the builders render with the
cache on (PVC subPath mounts instead of fetch-<input> init containers), the fetch Job, the PVC,
the entry states and verdicts, status.inputs rows, the batch status while waiting or failed,
the operator flags, and the workload's complete marker. The cluster side runs in
tests/integration/test_hubcache.py."""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path
from typing import Any

import pytest
from internlm_operator.builders import hubcache as hc
from internlm_operator.cli import config_from_args, parse_args
from internlm_operator.config import OperatorConfig, from_env
from internlm_operator.status import hubcache as st

from .test_batch_builders import children, load
from .test_serve_builders import build as serve_build
from .test_serve_builders import spec as serve_spec

REPO = Path(__file__).resolve().parents[2]
NOW = dt.datetime(2026, 12, 2, 12, 0, tzinfo=dt.UTC)
ME = "TrainJob/tj/uid-1"


def entry(**kw: Any) -> hc.CacheEntry:
    base: dict[str, Any] = {
        "input": "model",
        "hub": "huggingFace",
        "repo_type": "model",
        "repo": "internlm/internlm2_5-7b-chat",
        "revision": "v2.5",
        "include": (),
    }
    base.update(kw)
    return hc.CacheEntry(**base)


# -- keys and names ------------------------------------------------------------------------


def test_the_key_names_the_entry_not_the_input() -> None:
    a = entry()
    assert a.hash == entry(input="base").hash  # another resource's input name: same entry
    assert len(a.hash) == 16 and a.job_name == f"hub-fetch-{a.hash}"
    assert a.sub_path == f"{a.hash}/data"
    assert a.source == "hf://internlm/internlm2_5-7b-chat@v2.5"
    assert entry(revision=None).source == "hf://internlm/internlm2_5-7b-chat"
    assert entry(hub="modelScope").source.startswith("ms://")
    assert entry(include=("b", "a")).hash == entry(include=("a", "b")).hash


@pytest.mark.parametrize(
    "change",
    [
        {"revision": "main"},
        {"revision": None},
        {"repo": "internlm/internlm2_5-1_8b"},
        {"repo_type": "dataset"},
        {"hub": "modelScope"},
        {"include": ("*.json",)},
    ],
)
def test_every_part_of_the_key_makes_another_entry(change: dict[str, Any]) -> None:
    assert entry(**change).hash != entry().hash


@pytest.mark.parametrize(
    "loc,expected",
    [
        ("hf://o/r@v1", ("huggingFace", "o/r", "v1")),
        ("hf://o/r", ("huggingFace", "o/r", None)),
        ("ms://o/r@master", ("modelScope", "o/r", "master")),
        ("s3://bucket/key", None),
        ("pvc://claim/x", None),
    ],
)
def test_entry_for(loc: str, expected: tuple[str, str, str | None] | None) -> None:
    e = hc.entry_for("model", loc, ["*.json"], "model")
    if expected is None:
        assert e is None
    else:
        assert e is not None and (e.hub, e.repo, e.revision) == expected
        assert e.include == ("*.json",)


# -- the workload pods ---------------------------------------------------------------------


def pod(ch: Any) -> dict[str, Any]:
    p: dict[str, Any] = ch.job["spec"]["template"]["spec"]
    return p


def test_cache_off_keeps_the_init_containers() -> None:
    ch = children(load("finetune"))
    assert ch.cache == ()
    assert [c["name"] for c in pod(ch)["initContainers"]] == ["fetch-model", "fetch-dataset"]


def test_cache_on_mounts_subpaths_read_only_instead_of_fetching() -> None:
    ch = children(load("finetune"), hub_cache=True)
    p = pod(ch)
    assert "initContainers" not in p
    by_input = {e.input: e for e in ch.cache}
    assert set(by_input) == {"model", "dataset"}
    assert by_input["dataset"].repo_type == "dataset"
    vols = {v["name"]: v for v in p["volumes"]}
    assert vols["hub-cache"] == {
        "name": "hub-cache",
        "persistentVolumeClaim": {"claimName": "internlm-hub-cache", "readOnly": True},
    }
    assert "inputs" not in vols  # nothing is downloaded into the pod
    mounts = [m for m in p["containers"][0]["volumeMounts"] if m["name"] == "hub-cache"]
    assert sorted(mounts, key=lambda m: m["mountPath"]) == [
        {
            "name": "hub-cache",
            "mountPath": "/mnt/inputs/dataset",
            "subPath": by_input["dataset"].sub_path,
            "readOnly": True,
        },
        {
            "name": "hub-cache",
            "mountPath": "/mnt/inputs/model",
            "subPath": by_input["model"].sub_path,
            "readOnly": True,
        },
    ]
    env = {e["name"] for e in p["containers"][0]["env"]}
    assert "INTERNLM_FETCHED_DIR" not in env
    # the paths the workload is given are the same as without the cache
    cfg = json.loads(ch.config_map["data"]["config.json"])
    assert cfg["spec"]["modelPath"] == "/mnt/inputs/model"


def test_cache_on_leaves_s3_inputs_to_their_init_container() -> None:
    doc = load("finetune")
    doc["spec"]["dataset"] = {"uri": "s3://data/alpaca.json"}
    ch = children(doc, hub_cache=True)
    assert [e.input for e in ch.cache] == ["model"]
    assert [c["name"] for c in pod(ch)["initContainers"]] == ["fetch-dataset"]


def test_two_node_trainjob_pods_share_one_entry_per_input() -> None:
    ch = children(load("trainjob"), hub_cache=True)
    assert ch.job["spec"]["completions"] == 2  # both pods of the gang mount the same entry
    assert [e.input for e in ch.cache] == ["model"]
    assert ch.cache[0].revision == "main"


def test_modelserve_mounts_the_cache_too() -> None:
    s = serve_spec(model={"huggingFace": {"repo": "internlm/internlm2_5-7b-chat"}})
    ch = serve_build(s, hub_cache=True)
    p = ch.deployment["spec"]["template"]["spec"]
    assert "initContainers" not in p
    assert [e.input for e in ch.cache] == ["model"]
    assert any(v["name"] == "hub-cache" for v in p["volumes"])


# -- the cache objects ---------------------------------------------------------------------

INDEX = {"metadata": {"name": "internlm-hub-cache", "uid": "cm-uid"}}


def test_claim_and_index() -> None:
    cm = hc.index_config_map("ns")
    assert cm["metadata"]["name"] == "internlm-hub-cache" and cm["data"] == {}
    assert "ownerReferences" not in cm["metadata"]
    pvc = hc.claim("ns", hc.CacheSettings("rwx", "2Ti"), hc.owner_reference(INDEX))
    assert pvc["spec"] == {
        "accessModes": ["ReadWriteMany"],
        "storageClassName": "rwx",
        "resources": {"requests": {"storage": "2Ti"}},
    }
    assert pvc["metadata"]["ownerReferences"] == [
        {"apiVersion": "v1", "kind": "ConfigMap", "name": "internlm-hub-cache", "uid": "cm-uid"}
    ]


def test_fetch_job() -> None:
    e = entry(include=("*.json",))
    env = [{"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf", "key": "token"}}}]
    job = hc.fetch_job(
        hc.FetchJobInputs(
            namespace="ns",
            entry=e,
            image="pretrain:1",
            pull_policy="IfNotPresent",
            owner=hc.owner_reference(INDEX),
            requested_by=ME,
            env=env,
            scheduling={"tolerations": [{"key": "gpu", "operator": "Exists"}]},
        )
    )
    md = job["metadata"]
    assert md["name"] == e.job_name
    assert md["labels"]["internlm.io/hub-cache-entry"] == e.hash
    assert "internlm.io/kind" not in md["labels"]  # not a child of any one resource
    assert md["annotations"]["internlm.io/requested-by"] == ME
    assert json.loads(md["annotations"]["internlm.io/hub-cache-key"]) == e.key
    assert md["ownerReferences"][0]["kind"] == "ConfigMap"
    spec = job["spec"]
    assert spec["backoffLimit"] == 3
    fail = spec["podFailurePolicy"]["rules"][1]
    assert fail["action"] == "FailJob" and 75 in fail["onExitCodes"]["values"]
    p = spec["template"]["spec"]
    assert p["restartPolicy"] == "Never" and p["tolerations"][0]["key"] == "gpu"
    assert p["securityContext"]["runAsNonRoot"] is True
    c = p["containers"][0]
    assert c["command"] == ["python", "-m", "internlm_workloads", "fetch"]
    assert {"name": "hub-cache", "mountPath": "/mnt/hub-cache"} in c["volumeMounts"]
    envs = {x["name"]: x for x in c["env"]}
    assert envs["HF_TOKEN"] == env[0]
    assert json.loads(envs["INTERNLM_INPUTS"]["value"]) == [
        {
            "name": "model",
            "source": e.source,
            "dest": f"/mnt/hub-cache/{e.hash}/data",
            "repoType": "model",
            "allowPatterns": ["*.json"],
            "completeMarker": f"/mnt/hub-cache/{e.hash}/COMPLETE",
        }
    ]
    assert p["volumes"][0] == {
        "name": "hub-cache",
        "persistentVolumeClaim": {"claimName": "internlm-hub-cache"},
    }


def test_fetch_scheduling_drops_the_gpu_product() -> None:
    got = hc.fetch_scheduling(
        {"nodeSelector": {"pool": "a", "nvidia.com/gpu.product": "H100"}, "tolerations": [{}]}
    )
    assert got == {"nodeSelector": {"pool": "a"}, "tolerations": [{}]}


# -- entry states --------------------------------------------------------------------------

ANN = hc.REQUESTED_BY
T0 = "2026-12-02T11:00:00Z"


def fjob(cond: str | None = None, by: str = ME, **cond_kw: Any) -> dict[str, Any]:
    job: dict[str, Any] = {
        "metadata": {"name": "hub-fetch-x", "annotations": {ANN: by}},
        "status": {},
    }
    if cond:
        job["status"]["conditions"] = [
            {"type": cond, "status": "True", "lastTransitionTime": T0, **cond_kw}
        ]
    return job


def fpod(code: int, result: dict[str, Any] | None, finished: str = T0) -> dict[str, Any]:
    t = {"exitCode": code, "finishedAt": finished, "message": json.dumps(result) if result else ""}
    return {
        "metadata": {"name": "hub-fetch-x-abc"},
        "status": {"containerStatuses": [{"name": "fetch", "state": {"terminated": t}}]},
    }


FETCHED = {"name": "model", "source": "hf://o/r@v1", "revision": "c0ffee", "bytes": 10, "files": 2}


@pytest.mark.parametrize(
    "job,pods,rec,expected",
    [
        (None, [], None, st.EntryState("Absent")),
        (fjob(), [], None, st.EntryState("Fetching", requested_by=ME)),
        (
            fjob("Complete"),
            [fpod(0, {"ok": True, "fetched": [FETCHED]})],
            None,
            st.EntryState("Complete", FETCHED, ME),
        ),
        (
            fjob("Failed", reason="PodFailurePolicy"),
            [fpod(1, {"ok": False, "failure": "RepoNotFound", "reason": "RepoNotFound: no o/r"})],
            None,
            st.EntryState(
                "Failed",
                requested_by=ME,
                reason="RepoNotFound",
                message="fetch Job hub-fetch-x exited 1: RepoNotFound: no o/r",
                finished_at=T0,
            ),
        ),
        (  # retried Unreachable until the backoff limit: the last pod's reason
            fjob("Failed", reason="BackoffLimitExceeded"),
            [
                fpod(75, {"failure": "Unreachable", "reason": "Unreachable: a"}, "2026-12-02T10"),
                fpod(75, {"failure": "Unreachable", "reason": "Unreachable: b"}, T0),
            ],
            None,
            st.EntryState(
                "Failed",
                requested_by=ME,
                reason="Unreachable",
                message="fetch Job hub-fetch-x exited 75: Unreachable: b",
                finished_at=T0,
            ),
        ),
        (  # the record wins: the Job may be gone
            None,
            [],
            {"ok": True, "fetched": FETCHED, "requestedBy": "FineTune/ft/u2"},
            st.EntryState("Complete", FETCHED, "FineTune/ft/u2"),
        ),
    ],
)
def test_entry_state(
    job: dict[str, Any] | None,
    pods: list[dict[str, Any]],
    rec: dict[str, Any] | None,
    expected: st.EntryState,
) -> None:
    got = st.entry_state(job, pods, rec, ANN)
    assert (got.state, got.requested_by, got.reason, got.finished_at) == (
        expected.state,
        expected.requested_by,
        expected.reason,
        expected.finished_at,
    )
    assert dict(got.fetched or {}) == dict(expected.fetched or {})
    if expected.message:
        assert got.message == expected.message


def test_record_round_trip() -> None:
    s = st.EntryState("Complete", FETCHED, ME)
    raw = st.record(s, entry().key, NOW)
    rec = st.record_of({"data": {"h": raw}}, "h")
    assert rec is not None and rec["fetched"] == FETCHED and rec["requestedBy"] == ME
    assert rec["completedAt"] == "2026-12-02T12:00:00Z"
    assert st.record_of({"data": {"h": "not json"}}, "h") is None
    assert st.record_of(None, "h") is None


@pytest.mark.parametrize(
    "created,expected",
    [
        ("2026-12-02T11:30:00Z", True),
        ("2026-12-02T10:59:00Z", False),
        (None, False),
        (T0, True),  # the same second (the API's granularity): an integration test's flake
    ],
)
def test_a_failed_entry_is_fetched_again_only_for_a_later_resource(
    created: str | None, expected: bool
) -> None:
    failed = st.EntryState("Failed", reason="Unauthorized", finished_at=T0)
    assert st.retry_failed(failed, created) is expected
    assert st.retry_failed(st.EntryState("Fetching"), created) is False


# -- verdicts, rows, status ----------------------------------------------------------------


def needed(state: st.EntryState, input_: str = "model", rev: str | None = "v1") -> st.Needed:
    return st.Needed(input_, "hf://o/r@v1", rev, "model repo o/r@v1", "hub-fetch-x", state)


def test_verdicts() -> None:
    done = needed(st.EntryState("Complete", FETCHED, ME))
    busy = needed(st.EntryState("Fetching", requested_by=ME), "dataset")
    bad = needed(st.EntryState("Failed", reason="RepoNotFound", message="exited 1: gone"))
    assert st.verdict([done]).kind == "ready"
    v = st.verdict([done, busy])
    assert (v.kind, v.reason) == ("fetching", "FetchingInputs")
    assert v.message == "fetching into the hub cache: model repo o/r@v1 (Job hub-fetch-x)"
    v = st.verdict([busy, bad])
    assert (v.kind, v.reason) == ("failed", "RepoNotFound")
    assert v.message == "hub cache: fetching model repo o/r@v1 failed: exited 1: gone"


def test_rows() -> None:
    mine = needed(st.EntryState("Complete", FETCHED, ME))
    theirs = needed(st.EntryState("Complete", FETCHED, "FineTune/ft/u2"), "dataset", None)
    busy = needed(st.EntryState("Fetching"), "tokenizer")
    on_disk = needed(st.EntryState("Complete", {**FETCHED, "cached": True}, ME), "x")
    assert st.rows([mine, theirs, busy, on_disk], ME) == [
        {
            "name": "model",
            "source": "hf://o/r@v1",
            "revision": "v1",
            "commit": "c0ffee",
            "bytes": 10,
            "files": 2,
            "cached": False,
        },
        {
            "name": "dataset",
            "source": "hf://o/r@v1",
            "commit": "c0ffee",
            "bytes": 10,
            "files": 2,
            "cached": True,
        },
        {"name": "tokenizer", "source": "hf://o/r@v1", "revision": "v1"},
        {
            "name": "x",
            "source": "hf://o/r@v1",
            "revision": "v1",
            "commit": "c0ffee",
            "bytes": 10,
            "files": 2,
            "cached": True,
        },
    ]


def test_merge_rows_keeps_what_the_pods_fetched_themselves() -> None:
    cache = [{"name": "model", "source": "hf://o/r", "cached": True}]
    stage = [{"name": "dataset", "source": "s3://b/k", "revision": "etag"}]
    assert st.merge_rows(cache, stage) == cache + stage
    assert st.merge_rows(cache, cache) == cache


def test_batch_status_waiting_then_failed() -> None:
    rows = [{"name": "model", "source": "hf://o/r@v1", "revision": "v1", "cached": False}]
    v = st.Verdict("fetching", "FetchingInputs", "fetching into the hub cache: model repo o/r@v1")
    s = st.batch_status({}, 1, NOW, v, rows)
    conds = {c["type"]: c for c in s["conditions"]}
    assert s["phase"] == "Waiting" and s["inputs"] == rows
    assert (conds["Ready"]["status"], conds["Ready"]["reason"]) == ("False", "FetchingInputs")
    assert "o/r@v1" in conds["Ready"]["message"]
    assert conds["Reconciling"]["status"] == "True" and conds["Failed"]["status"] == "False"
    assert "completionTime" not in s
    v = st.Verdict("failed", "RepoNotFound", "hub cache: fetching model repo o/r@v1 failed: x")
    s2 = st.batch_status(s, 1, NOW, v, rows)
    conds = {c["type"]: c for c in s2["conditions"]}
    assert s2["phase"] == "Failed" and s2["completionTime"] == "2026-12-02T12:00:00Z"
    assert (conds["Failed"]["status"], conds["Failed"]["reason"]) == ("True", "RepoNotFound")
    assert conds["Stalled"]["status"] == "True"


# -- settings ------------------------------------------------------------------------------


def test_settings_off_by_default_and_from_flags_or_env() -> None:
    assert OperatorConfig().hub_cache_storage_class is None
    cfg = from_env({"INTERNLM_HUB_CACHE_STORAGE_CLASS": "nfs", "INTERNLM_HUB_CACHE_SIZE": "5Ti"})
    assert (cfg.hub_cache_storage_class, cfg.hub_cache_size) == ("nfs", "5Ti")
    assert from_env({}).hub_cache_storage_class is None
    a = parse_args(["run", "--hub-cache-storage-class", "cephfs", "--hub-cache-size", "3Ti"])
    cfg = config_from_args(a)
    assert (cfg.hub_cache_storage_class, cfg.hub_cache_size) == ("cephfs", "3Ti")


# -- the workload's complete marker ----------------------------------------------------------


def test_a_complete_marker_means_nothing_is_fetched(tmp_path: Path) -> None:
    sys.path.insert(0, str(REPO / "images" / "workloads" / "src"))
    from internlm_workloads import transfer

    marker = tmp_path / "h" / "COMPLETE"
    marker.parent.mkdir()
    marker.write_text(json.dumps(FETCHED))
    inp = transfer.Input.parse(
        {
            "name": "base",
            "source": "hf://no/such-repo",  # would fail if it were fetched
            "dest": str(tmp_path / "h" / "data"),
            "completeMarker": str(marker),
        }
    )
    assert inp.complete_marker == str(marker)
    assert transfer.fetch_all([inp]) == [{**FETCHED, "name": "base", "cached": True}]
