"""Inputs from hubs and object stores, outputs to S3: what the builders render (the
``fetch-<input>`` init containers, INTERNLM_INPUTS, the object-store env), the API fields
(``include``, ``objectStore``), and how status names a failed fetch or upload from the
workload's result (``failure``). The workload side runs for real in
tests/workloads/test_transfer.py."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from internlm_operator.api.v1alpha1 import parse
from internlm_operator.status.failures import classify, pod_failure
from internlm_operator.status.serving import crash, fetch_failure
from pydantic import ValidationError

from .test_batch_builders import children, container, env, load

STORE = {
    "endpoint": "http://minio.storage:9000",
    "region": "eu-west-1",
    "accessKeyId": {"name": "s3-creds", "key": "id"},
    "secretAccessKey": {"name": "s3-creds", "key": "secret"},
}


def pod_of(ch: Any) -> dict[str, Any]:
    p: dict[str, Any] = ch.job["spec"]["template"]["spec"]
    return p


def inputs_of(init: dict[str, Any]) -> list[dict[str, Any]]:
    e = {x["name"]: x for x in init["env"]}
    doc: list[dict[str, Any]] = json.loads(e["INTERNLM_INPUTS"]["value"])
    return doc


def test_finetune_fetches_a_model_repo_and_a_dataset_repo() -> None:
    doc = load("finetune")
    doc["spec"]["model"]["huggingFace"].update(revision="v2.5", include=["*.json", "*.safetensors"])
    ch = children(doc)
    pod = pod_of(ch)
    inits = {c["name"]: c for c in pod["initContainers"]}
    assert list(inits) == ["fetch-model", "fetch-dataset"]
    for c in inits.values():
        assert c["command"] == ["python", "-m", "internlm_workloads", "fetch"]
        assert c["terminationMessagePolicy"] == "FallbackToLogsOnError"
        assert {"name": "inputs", "mountPath": "/mnt/inputs"} in c["volumeMounts"]
    assert inputs_of(inits["fetch-model"]) == [
        {
            "name": "model",
            "source": "hf://internlm/internlm2_5-7b-chat@v2.5",
            "dest": "/mnt/inputs/model",
            "repoType": "model",
            "allowPatterns": ["*.json", "*.safetensors"],
        }
    ]
    assert inputs_of(inits["fetch-dataset"]) == [
        {
            "name": "dataset",
            "source": "hf://tatsu-lab/alpaca",
            "dest": "/mnt/inputs/dataset",
            "repoType": "dataset",  # not fetched as a model repo (a 404 on the Hub)
        }
    ]
    # the stage reports what they fetched, from the inputs volume
    assert env(ch)["INTERNLM_FETCHED_DIR"] == "/mnt/inputs/.fetched"
    cfg = json.loads(ch.config_map["data"]["config.json"])["spec"]
    assert cfg["modelPath"] == "/mnt/inputs/model" and cfg["datasetPath"] == "/mnt/inputs/dataset"


def test_s3_input_and_output_with_the_object_store() -> None:
    doc = load("trainjob")
    doc["spec"]["data"] = {"uri": "s3://corpora/tokenized/shard-000.bin", "format": "tokenized"}
    doc["spec"]["output"] = {"uri": "s3://runs/cpt-1"}
    doc["spec"]["objectStore"] = STORE
    ch = children(doc)
    pod = pod_of(ch)
    inits = {c["name"]: c for c in pod["initContainers"]}
    assert inputs_of(inits["fetch-data"]) == [
        {
            "name": "data",
            "source": "s3://corpora/tokenized/shard-000.bin",
            "dest": "/mnt/inputs/data/shard-000.bin",
        }
    ]
    cfg = json.loads(ch.config_map["data"]["config.json"])["spec"]
    assert cfg["dataPath"] == "/mnt/inputs/data/shard-000.bin"
    want = {
        "AWS_ENDPOINT_URL_S3": "http://minio.storage:9000",
        "AWS_DEFAULT_REGION": "eu-west-1",
        "INTERNLM_S3_ADDRESSING_STYLE": "path",
        "AWS_ACCESS_KEY_ID": {"secretKeyRef": {"name": "s3-creds", "key": "id"}},
        "AWS_SECRET_ACCESS_KEY": {"secretKeyRef": {"name": "s3-creds", "key": "secret"}},
    }
    init_env = {e["name"]: e.get("value", e.get("valueFrom")) for e in inits["fetch-data"]["env"]}
    main_env = env(ch)
    for k, v in want.items():
        assert init_env[k] == v and main_env[k] == v  # the main container uploads the output
    assert main_env["INTERNLM_OUTPUT_URI"] == "s3://runs/cpt-1"
    assert main_env["INTERNLM_OUTPUT_DIR"] == "/mnt/output"
    # secrets only as references: no key material anywhere in the rendered objects
    for c in [*pod["initContainers"], container(ch)]:
        for e in c["env"]:
            if e["name"].startswith("AWS_") and "KEY" in e["name"]:
                assert "value" not in e


def test_fetch_settings_of_spec_env_reach_the_fetches() -> None:
    """A hub mirror (HF_ENDPOINT) or proxy set in spec.env is used by the fetch init
    containers and the hub cache's fetch Job (hub_env), not only by the workload: before, the
    fetches went to huggingface.co whatever spec.env said (found on the real node, where
    nothing else is reachable). Each name once per container; spec.env wins."""
    from internlm_operator.builders.common import hub_env

    doc = load("finetune")
    doc["spec"]["objectStore"] = STORE
    doc["spec"]["env"] = [
        {"name": "HF_ENDPOINT", "value": "http://hub.local:8080"},
        {"name": "https_proxy", "value": "http://proxy.local:3128"},
        {"name": "AWS_DEFAULT_REGION", "value": "us-east-2"},
        {"name": "TRAIN_NOTE", "value": "2"},
    ]
    ch = children(doc)
    for c in [*pod_of(ch)["initContainers"], container(ch)]:
        names = [e["name"] for e in c["env"]]
        assert len(names) == len(set(names)), (c["name"], names)
        e = {x["name"]: x.get("value", x.get("valueFrom")) for x in c["env"]}
        assert e["HF_ENDPOINT"] == "http://hub.local:8080", c["name"]
        assert e["https_proxy"] == "http://proxy.local:3128"
        assert e["AWS_DEFAULT_REGION"] == "us-east-2"  # spec.env replaces objectStore.region
        assert e["AWS_ENDPOINT_URL_S3"] == "http://minio.storage:9000"
    assert "TRAIN_NOTE" not in {e["name"] for e in pod_of(ch)["initContainers"][0]["env"]}
    assert env(ch)["TRAIN_NOTE"] == "2"
    # the env the hub cache's fetch Job gets (reconcilers/hubcache.py) is the same hub_env
    names = [e["name"] for e in hub_env(parse(doc).spec)]
    assert "HF_ENDPOINT" in names and "TRAIN_NOTE" not in names
    assert names.count("AWS_DEFAULT_REGION") == 1


def test_addressing_style_defaults() -> None:
    doc = load("trainjob")
    doc["spec"]["output"] = {"uri": "s3://runs/x"}
    doc["spec"]["objectStore"] = {"region": "us-west-2"}  # AWS itself: botocore decides
    e = env(children(doc))
    assert "INTERNLM_S3_ADDRESSING_STYLE" not in e and "AWS_ENDPOINT_URL_S3" not in e
    doc["spec"]["objectStore"] = {"endpoint": "https://s3.local", "addressingStyle": "virtual"}
    assert env(children(doc))["INTERNLM_S3_ADDRESSING_STYLE"] == "virtual"


def test_object_store_keys_come_in_pairs() -> None:
    doc = load("trainjob")
    doc["spec"]["objectStore"] = {"accessKeyId": {"name": "s", "key": "id"}}
    with pytest.raises(ValidationError, match="set together"):
        parse(doc)


def test_other_uri_schemes_pass_through() -> None:
    doc = load("trainjob")
    doc["spec"]["data"] = {"uri": "gs://corpora/tokenized", "format": "tokenized"}
    ch = children(doc)
    names = [c["name"] for c in pod_of(ch).get("initContainers") or []]
    assert "fetch-data" not in names
    assert json.loads(ch.config_map["data"]["config.json"])["spec"]["dataPath"] == (
        "gs://corpora/tokenized"
    )


# -- status -----------------------------------------------------------------------------------


def _result(**r: Any) -> str:
    return json.dumps(r, separators=(",", ":"))


def init_failed(code: int, result: dict[str, Any] | None) -> dict[str, Any]:
    msg = _result(**result) if result is not None else "Traceback ...\nboom"
    return {
        "metadata": {"name": "ft-0", "annotations": {}},
        "status": {
            "phase": "Failed",
            "initContainerStatuses": [
                {"name": "fetch-model", "state": {"terminated": {"exitCode": 0}}},
                {
                    "name": "fetch-dataset",
                    "state": {
                        "terminated": {
                            "exitCode": code,
                            "reason": "Error",
                            "message": msg,
                            "finishedAt": "2026-01-01T00:00:00Z",
                        }
                    },
                },
            ],
            "containerStatuses": [
                {"name": "workload", "state": {"waiting": {"reason": "PodInitializing"}}}
            ],
        },
    }


@pytest.mark.parametrize(
    ("failure", "reason"),
    [
        ("RepoNotFound", "RepoNotFound: dataset repo acme/x does not exist on https://hf.co"),
        ("RevisionNotFound", "RevisionNotFound: model repo acme/x has no revision 'v9'"),
        ("Unauthorized", "Unauthorized: model repo acme/x is gated: no token was given"),
        ("BucketNotFound", "BucketNotFound: input model s3://nope/m: bucket nope does not exist"),
        ("NoSpaceLeft", "NoSpaceLeft: input model needs 20 bytes but /mnt/inputs has 10"),
    ],
)
def test_a_failed_fetch_fails_the_job_with_its_reason(failure: str, reason: str) -> None:
    pod = init_failed(1, {"ok": False, "reason": reason, "failure": failure})
    f = pod_failure(pod, container="workload")
    assert f is not None and not f.retryable
    assert f.reason == failure
    assert "fetch-dataset exited 1" in f.message and reason in f.message
    assert classify(None, [pod], container="workload") == f


def test_fetch_failures_without_a_kind_and_transient_ones() -> None:
    f = pod_failure(init_failed(1, None), container="workload")
    assert f is not None and f.reason == "FetchFailed" and not f.retryable
    # the source did not answer (exit 75): retried with a new pod
    f = pod_failure(
        init_failed(75, {"ok": False, "reason": "Unreachable: ...", "failure": "Unreachable"}),
        container="workload",
    )
    assert f is not None and f.retryable and f.reason == "Transient"
    f = pod_failure(init_failed(137, None), container="workload")
    assert f is not None and f.retryable and f.reason == "Signal"


def _main_failed(result: dict[str, Any]) -> dict[str, Any]:
    return {
        "metadata": {"name": "tj-0"},
        "status": {
            "phase": "Failed",
            "containerStatuses": [
                {
                    "name": "workload",
                    "state": {"terminated": {"exitCode": 1, "message": _result(**result)}},
                }
            ],
        },
    }


def test_a_failed_upload_fails_the_job_with_its_reason() -> None:
    reason = "UploadFailed: output s3://runs/x: bucket runs does not exist"
    f = pod_failure(_main_failed({"ok": False, "reason": reason, "failure": "UploadFailed"}))
    assert f is not None and not f.retryable and f.reason == "UploadFailed"
    assert reason in f.message
    # anything that is not a CamelCase word is not taken as a reason
    for bad in ("", "not a reason", "x" * 100, "Bad-Reason"):
        f = pod_failure(_main_failed({"ok": False, "reason": "r", "failure": bad}))
        assert f is not None and f.reason == "ExitCode"


def test_a_modelserve_whose_fetch_fails_is_degraded_with_the_reason() -> None:
    import datetime as dt

    pod = copy.deepcopy(init_failed(1, None))
    pod["status"]["phase"] = "Pending"
    st = pod["status"]["initContainerStatuses"][1]
    st["lastState"] = st.pop("state")
    st["state"] = {"waiting": {"reason": "CrashLoopBackOff"}}
    st["lastState"]["terminated"]["message"] = _result(
        ok=False,
        reason="Unauthorized: model repo acme/private is private: no token was given",
        failure="Unauthorized",
    )
    assert fetch_failure(pod) == (
        "Unauthorized",
        "pod ft-0: fetch-dataset: Unauthorized: model repo acme/private is private: no token "
        "was given",
    )
    got = crash([pod], dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
    assert got is not None and got[0] == "Unauthorized"


def test_status_inputs_from_the_result() -> None:
    from internlm_operator.api.v1alpha1 import FetchedInput
    from internlm_operator.status.results import inputs

    result = {
        "ok": True,
        "fetched": [
            {
                "name": "model",
                "source": "hf://internlm/internlm2_5-7b-chat@main",
                "revision": "a" * 40,
                "bytes": 15476981248,
                "files": 17,
                "seconds": 210.4,
            },
            {"name": "dataset", "source": "s3://data/sft.jsonl", "bytes": True, "files": -1},
            {"source": "no name"},
            "not a row",
        ],
    }
    rows = inputs(result)
    assert rows == [
        {
            "name": "model",
            "source": "hf://internlm/internlm2_5-7b-chat@main",
            "revision": "a" * 40,
            "bytes": 15476981248,
            "files": 17,
        },
        {"name": "dataset", "source": "s3://data/sft.jsonl"},
    ]
    for r in rows:  # what the status schema takes
        FetchedInput.model_validate(r)
    assert inputs(None) == [] and inputs({"ok": False, "reason": "x"}) == []
