"""The failure policy on the local cluster (docs/operator.md "Failure policy"): an NCCL failure
that exits 1 restarts the gang after runPolicy.restartDelay (RestartBackoff meanwhile, the new
Job no earlier than status.nextRestartTime), a user error fails fast, a per-resource rule wins
over the default table, and a bad messagePattern is an InvalidSpec."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import Cluster, wait_until
from tests.integration.conftest import (
    Batch,
    OperatorHandle,
    claims_of,
    make_pvcs,
    operator_config,
    running_operator,
    sample,
)

pytestmark = pytest.mark.cluster

NCCL = (
    "Traceback (most recent call last):\n"
    "torch.distributed.DistBackendError: NCCL error in: ../torch/csrc/distributed/c10d/"
    "NCCLUtils.hpp:219, remote process exited or there was a network error, NCCL version 2.19.3\n"
    "ncclRemoteError: A call failed possibly due to a network error or a remote process exiting "
    "prematurely."
)
USER_ERROR = (
    "Traceback (most recent call last):\n"
    '  File "/app/train.py", line 88, in <module>\n'
    "ValueError: column 'text' not found in the dataset"
)


@pytest.fixture(scope="module")
def slow_resync(cluster: Cluster, crds: list[str], session_token: str) -> Iterator[OperatorHandle]:
    """An operator whose resync (30 s) is far longer than the restart delays here: a gang that
    restarts on time was requeued for the end of its delay, not found by the resync. It
    watches only ``fp-<token>-*`` namespaces, so it never meets the session's operator."""
    config = operator_config(cluster, f"fp-{session_token}-*", resync_seconds=30.0)
    with running_operator(config) as handle:
        yield handle


_counter = itertools.count()


@pytest.fixture
def slow_ns(cluster: Cluster, session_token: str, slow_resync: OperatorHandle) -> Iterator[str]:
    name = f"fp-{session_token}-{next(_counter)}"
    cluster.kubectl("create", "namespace", name)
    wait_until(
        f"ServiceAccount default in {name}",
        lambda: (
            cluster.kubectl("get", "serviceaccount", "default", "-n", name, check=False).returncode
            == 0
        ),
        timeout=60,
    )
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


def small(name: str, run_policy: dict[str, Any]) -> dict[str, Any]:
    doc = sample("trainjob")
    doc["metadata"] = {"name": name}
    doc["spec"]["nodes"] = 1
    doc["spec"]["optimization"]["globalBatchSize"] = 16
    doc["spec"].pop("hubTokens", None)
    doc["spec"]["runPolicy"] = run_policy
    return doc


def apply(cluster: Cluster, ns: str, doc: dict[str, Any]) -> Batch:
    make_pvcs(cluster, ns, *claims_of(doc))
    cluster.apply(doc, namespace=ns)
    return Batch(cluster, ns, doc["kind"], doc["metadata"]["name"])


def ts(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


def test_nccl_exit_1_restarts_after_the_delay(cluster: Cluster, slow_ns: str) -> None:
    namespace = slow_ns
    delay = 3
    rp = {"backoffLimit": 2, "restartDelay": {"initialSeconds": delay, "maxSeconds": delay}}
    tj = apply(cluster, namespace, small("nccl", rp))
    first = wait_until("the Job", tj.job)
    tj.end_pod(tj.wait_running(1)[0], 1, NCCL)
    ended = time.monotonic()

    # The restart is decided (and counted) at once; the gang waits out the delay.
    seen: dict[str, Any] = {}

    def backing_off() -> Any:
        st = tj.status()
        ready = next((c for c in st.get("conditions") or [] if c["type"] == "Ready"), {})
        if ready.get("reason") == "RestartBackoff":
            seen.update(status=st, ready=ready)
            return st
        return None

    st = wait_until("RestartBackoff", backing_off, timeout=30, interval=0.1)
    assert st["restarts"] == 1 and st["nextRestartTime"]
    assert (
        "NCCLError" in seen["ready"]["message"]
        and st["nextRestartTime"] in seen["ready"]["message"]
    )
    restarting = next(c for c in st["conditions"] if c["type"] == "Restarting")
    assert restarting["status"] == "True" and restarting["reason"] == "NCCLError"
    due = ts(st["nextRestartTime"])
    decided = ts(restarting["lastTransitionTime"])
    assert (due - decided).total_seconds() >= delay

    second = wait_until(
        "a new Job",
        lambda: (j := tj.job()) and j["metadata"]["uid"] != first["metadata"]["uid"] and j,
        timeout=60,
        interval=0.1,
    )
    recreated = time.monotonic()
    # Never before the delay (creationTimestamp has whole seconds, as nextRestartTime does) ...
    assert ts(second["metadata"]["creationTimestamp"]) >= due
    assert recreated - ended >= delay - 1
    # ... and not at the next resync (30 s): the pass was requeued for when the delay ended.
    assert recreated - ended < delay + 8, recreated - ended
    assert second["metadata"]["labels"]["internlm.io/attempt"] == "1"
    tj.finish_all(1)
    st = tj.wait_phase("Succeeded")
    assert st["restarts"] == 1 and "nextRestartTime" not in st


def test_a_user_error_with_exit_1_fails_fast(
    cluster: Cluster, namespace: str, operator: OperatorHandle
) -> None:
    rp = {"backoffLimit": 2, "restartDelay": {"initialSeconds": 1}}
    tj = apply(cluster, namespace, small("usererr", rp))
    first = wait_until("the Job", tj.job)
    tj.end_pod(tj.wait_running(1)[0], 1, USER_ERROR)
    st = tj.wait_phase("Failed", timeout=60)
    failed = next(c for c in st["conditions"] if c["type"] == "Failed")
    assert failed["reason"] == "ExitCode" and "ValueError: column 'text'" in failed["message"]
    assert not st.get("restarts") and "nextRestartTime" not in st
    assert tj.job()["metadata"]["uid"] == first["metadata"]["uid"]  # never restarted


def test_a_rule_overrides_the_default_table(cluster: Cluster, slow_ns: str) -> None:
    namespace = slow_ns
    # An NCCL error this team knows to be its own bug: fail fast with their reason.
    known = {
        "backoffLimit": 2,
        "restartDelay": {"initialSeconds": 1},
        "failurePolicy": {
            "rules": [
                {
                    "messagePattern": r"ncclRemoteError|NCCL error",
                    "action": "FailFast",
                    "reason": "KnownNcclBug",
                }
            ]
        },
    }
    # A storage flake (exit 1, default: fail fast) retried, without counting it.
    flaky = {
        "backoffLimit": 0,
        "restartDelay": {"initialSeconds": 1},
        "failurePolicy": {
            "rules": [
                {
                    "exitCodes": [1],
                    "messagePattern": r"input/output error",
                    "action": "RetryUncounted",
                }
            ]
        },
    }
    a = apply(cluster, namespace, small("known", known))
    b = apply(cluster, namespace, small("flaky", flaky))
    b_first = wait_until("flaky's Job", b.job)
    a.end_pod(a.wait_running(1)[0], 1, NCCL)
    b.end_pod(b.wait_running(1)[0], 1, "OSError: [Errno 5] Input/output error: '/mnt/pvc/x'")

    st = a.wait_phase("Failed", timeout=60)
    failed = next(c for c in st["conditions"] if c["type"] == "Failed")
    assert failed["reason"] == "KnownNcclBug"
    assert "runPolicy.failurePolicy.rules[0]: FailFast" in failed["message"]
    assert not st.get("restarts")

    wait_until(
        "flaky restarted",
        lambda: (j := b.job()) and j["metadata"]["uid"] != b_first["metadata"]["uid"],
        timeout=20,  # the 1 s delay, requeued: well before the 30 s resync
    )
    b.finish_all(1)
    st = b.wait_phase("Succeeded")
    assert not st.get("restarts")  # not counted: backoffLimit 0 was not used up


def test_bad_patterns_and_delays(
    cluster: Cluster, namespace: str, operator: OperatorHandle
) -> None:
    # The API server cannot check a regex: the operator reports it.
    bad = {"failurePolicy": {"rules": [{"messagePattern": "NCCL (error", "action": "Retry"}]}}
    tj = apply(cluster, namespace, small("badrule", bad))
    st = wait_until(
        "InvalidSpec",
        lambda: (
            (s := tj.status())
            and any(c["reason"] == "InvalidSpec" for c in s.get("conditions") or [])
            and s
        ),
        timeout=30,
    )
    stalled = next(c for c in st["conditions"] if c["type"] == "Stalled")
    assert stalled["status"] == "True"
    assert "messagePattern" in stalled["message"] and "missing ')'" in stalled["message"]
    assert tj.job() is None
    # CEL: the delay bounds, and a rule needs a criterion.
    for run_policy, message in (
        ({"restartDelay": {"initialSeconds": 600}}, "must be at least initialSeconds"),
        ({"failurePolicy": {"rules": [{"action": "Retry"}]}}, "at least one of exitCodes"),
    ):
        doc = small("rejected", run_policy)
        res = cluster.kubectl(
            "apply", "-n", namespace, "-f", "-", input=json.dumps(doc), check=False
        )
        assert res.returncode != 0 and message in res.stderr, res.stderr
