"""Status of ModelServe / Agent from observed Deployments and pods (pure tables)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from internlm_operator.status.serving import Blocker, ServingObservation, crash, decide

NOW = dt.datetime(2026, 1, 1, 12, 0, 0, tzinfo=dt.UTC)


def deploy(
    desired: int,
    ready: int,
    updated: int | None = None,
    replicas: int | None = None,
    gen: int = 1,
    observed: int = 1,
    deadline: bool = False,
) -> dict[str, Any]:
    updated = desired if updated is None else updated
    replicas = desired if replicas is None else replicas
    conds = []
    if deadline:
        conds.append(
            {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}
        )
    return {
        "metadata": {"generation": gen},
        "spec": {"replicas": desired},
        "status": {
            "observedGeneration": observed,
            "replicas": replicas,
            "readyReplicas": ready,
            "availableReplicas": ready,
            "updatedReplicas": updated,
            "conditions": conds,
        },
    }


def failed_pod(seconds_ago: float, code: int = 1) -> dict[str, Any]:
    t = (NOW - dt.timedelta(seconds=seconds_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "metadata": {"name": "p1"},
        "status": {
            "phase": "Failed",
            "containerStatuses": [
                {
                    "name": "server",
                    "state": {"terminated": {"exitCode": code, "reason": "Error", "finishedAt": t}},
                }
            ],
        },
    }


def conds(st: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in st["conditions"]}


def status_with(**c: tuple[str, str]) -> dict[str, Any]:
    return {
        "conditions": [
            {
                "type": k,
                "status": v[0],
                "reason": v[1],
                "lastTransitionTime": "2026-01-01T00:00:00Z",
            }
            for k, v in c.items()
        ],
        "readyReplicas": 2,
    }


READY_PREV = status_with(Ready=("True", "Serving"), Degraded=("False", "AsExpected"))
DEGRADED_PREV = status_with(Ready=("True", "Serving"), Degraded=("True", "ServerCrashed"))

CASES = [
    # name, deployment, pods, prev, blocker -> phase, Ready, Progressing, Degraded, Stalled
    (
        "waiting for upstream",
        None,
        [],
        {},
        Blocker("dependency", "WaitingForDependency", "w"),
        "Waiting",
        ("False", "WaitingForDependency"),
        "False",
        "False",
        "False",
    ),
    (
        "gate failed",
        None,
        [],
        {},
        Blocker("upstream-failed", "GateFailed", "eval failed"),
        "Waiting",
        ("False", "GateFailed"),
        "False",
        "False",
        "True",
    ),
    (
        "invalid spec",
        None,
        [],
        {},
        Blocker("invalid", "InvalidSpec", "bad"),
        "Failed",
        ("False", "InvalidSpec"),
        "False",
        "False",
        "True",
    ),
    (
        "just created",
        None,
        [],
        {},
        None,
        "Pending",
        ("False", "Creating"),
        "True",
        "False",
        "False",
    ),
    (
        "starting",
        deploy(2, 0),
        [],
        {},
        None,
        "Progressing",
        ("False", "ServersNotReady"),
        "True",
        "False",
        "False",
    ),
    (
        "one of two ready while starting",
        deploy(2, 1),
        [],
        {},
        None,
        "Progressing",
        ("True", "Serving"),
        "True",
        "False",
        "False",
    ),
    (
        "all ready",
        deploy(2, 2),
        [],
        {},
        None,
        "Ready",
        ("True", "Serving"),
        "False",
        "False",
        "False",
    ),
    (
        "rolling out, ready kept",
        deploy(2, 2, updated=1, replicas=3, gen=2),
        [],
        READY_PREV,
        None,
        "Progressing",
        ("True", "Serving"),
        "True",
        "False",
        "False",
    ),
    (
        "scale up is not degraded",
        deploy(3, 2, updated=3, replicas=3),
        [],
        READY_PREV,
        None,
        "Progressing",
        ("True", "Serving"),
        "True",
        "False",
        "False",
    ),
    (
        "recent crash",
        deploy(2, 2),
        [failed_pod(5)],
        READY_PREV,
        None,
        "Degraded",
        ("True", "Serving"),
        "False",
        "True",
        "False",
    ),
    (
        "old crash forgotten",
        deploy(2, 2),
        [failed_pod(600)],
        DEGRADED_PREV,
        None,
        "Ready",
        ("True", "Serving"),
        "False",
        "False",
        "False",
    ),
    (
        "ready count dropped",
        deploy(2, 1),
        [],
        READY_PREV,
        None,
        "Degraded",
        ("True", "Serving"),
        "True",
        "True",
        "False",
    ),
    (
        "still below while degraded",
        deploy(2, 1),
        [],
        DEGRADED_PREV,
        None,
        "Degraded",
        ("True", "Serving"),
        "True",
        "True",
        "False",
    ),
    (
        "deadline exceeded",
        deploy(1, 0, updated=1, replicas=1, deadline=True),
        [],
        {},
        None,
        "Degraded",
        ("False", "ProgressDeadlineExceeded"),
        "True",
        "True",
        "True",
    ),
    (
        "agent: model serve gone",
        deploy(1, 1),
        [],
        READY_PREV,
        Blocker("llm", "ModelServeNotFound", "ModelServe chat not found"),
        "Degraded",
        ("False", "ModelServeNotFound"),
        "False",
        "True",
        "False",
    ),
    (
        "gate pending while serving the old model",
        deploy(1, 1),
        [],
        READY_PREV,
        Blocker("gate", "WaitingForGate", "EvalRun e has not passed"),
        "Ready",
        ("True", "Serving"),
        "False",
        "False",
        "False",
    ),
]


@pytest.mark.parametrize(
    (
        "name",
        "d",
        "pods",
        "prev",
        "blocker",
        "phase",
        "ready",
        "progressing",
        "degraded",
        "stalled",
    ),
    CASES,
    ids=[c[0] for c in CASES],
)
def test_decide(
    name: str,
    d: Any,
    pods: list[Any],
    prev: dict[str, Any],
    blocker: Any,
    phase: str,
    ready: tuple[str, str],
    progressing: str,
    degraded: str,
    stalled: str,
) -> None:
    obs = ServingObservation(
        generation=3,
        status=prev,
        deployment=d,
        pods=pods,
        now=NOW,
        desired_replicas=2,
        blocker=blocker,
        fields={"endpoint": "http://x/v1", "selector": "a=b"},
    )
    dec = decide(obs)
    c = conds(dec.status)
    assert dec.status["phase"] == phase
    assert c["Ready"] == ready
    assert c["Progressing"][0] == progressing
    assert c["Degraded"][0] == degraded
    assert c["Stalled"][0] == stalled
    assert set(c) == {"Ready", "Progressing", "Degraded", "Reconciling", "Stalled"}
    assert all(x["observedGeneration"] == 3 for x in dec.status["conditions"])
    assert dec.status["endpoint"] == "http://x/v1"
    if blocker is not None and blocker.kind in ("gate", "dependency", "llm"):
        assert c["Reconciling"] == ("True", blocker.reason)  # the change is still pending


def test_idempotent_and_settled() -> None:
    obs = ServingObservation(
        generation=1, status={}, deployment=deploy(1, 1), pods=[], now=NOW, desired_replicas=1
    )
    first = decide(obs)
    assert first.settled
    again = decide(
        ServingObservation(
            generation=1,
            status=first.status,
            deployment=deploy(1, 1),
            pods=[],
            now=NOW + dt.timedelta(minutes=5),
            desired_replicas=1,
        )
    )
    assert again.status == first.status
    assert again.events == []


def test_events_on_degraded_and_recovery() -> None:
    base = decide(ServingObservation(1, {}, deploy(2, 2), [], NOW, 2)).status
    bad = decide(ServingObservation(1, base, deploy(2, 2), [failed_pod(1)], NOW, 2))
    assert ("Warning", "ServerCrashed") in [(t, r) for t, r, _ in bad.events]
    good = decide(ServingObservation(1, bad.status, deploy(2, 2), [failed_pod(300)], NOW, 2))
    assert [(t, r) for t, r, _ in good.events] == [("Normal", "AsExpected")]


def test_crash_detection_kinds() -> None:
    crashloop = {
        "metadata": {"name": "p"},
        "status": {
            "phase": "Running",
            "containerStatuses": [
                {"state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off"}}}
            ],
        },
    }
    assert crash([crashloop], NOW) == ("CrashLoopBackOff", "pod p: back-off")
    restarted = {
        "metadata": {"name": "p"},
        "status": {
            "phase": "Running",
            "containerStatuses": [
                {
                    "state": {"running": {}},
                    "lastState": {
                        "terminated": {
                            "exitCode": 137,
                            "reason": "OOMKilled",
                            "finishedAt": "2026-01-01T11:59:50Z",
                        }
                    },
                }
            ],
        },
    }
    r = crash([restarted], NOW)
    assert r is not None and r[0] == "ServerCrashed" and "137" in r[1]
    assert crash([failed_pod(100)], NOW) is None
