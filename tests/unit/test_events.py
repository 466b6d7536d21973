"""Event names: one per resource version and Event, so a pass retried after a kill between its
Events and its status patch records no copy (tests/integration/test_chaos.py proves it on a
cluster, with the operator SIGKILLed there)."""

from __future__ import annotations

import re
from typing import Any

from internlm_operator.reconcilers.kube.client import KubeError
from internlm_operator.reconcilers.kube.events import event_name, record

DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")


def obj(rv: str | None = "41", uid: str | None = "u-1") -> dict[str, Any]:
    md: dict[str, Any] = {"name": "pipeline-sft", "namespace": "ns"}
    if uid:
        md["uid"] = uid
    if rv:
        md["resourceVersion"] = rv
    return {"apiVersion": "internlm.io/v1alpha1", "kind": "FineTune", "metadata": md}


def test_same_version_and_event_same_name() -> None:
    a = event_name(obj(), "Normal", "JobCreated", "Created is True")
    assert a == event_name(obj(), "Normal", "JobCreated", "Created is True")
    assert a.startswith("pipeline-sft.") and DNS_SUBDOMAIN.match(a)


def test_anything_else_another_name() -> None:
    base = event_name(obj(), "Normal", "JobCreated", "m")
    others = {
        event_name(obj(rv="42"), "Normal", "JobCreated", "m"),
        event_name(obj(uid="u-2"), "Normal", "JobCreated", "m"),
        event_name(obj(), "Warning", "JobCreated", "m"),
        event_name(obj(), "Normal", "PodsRunning", "m"),
        event_name(obj(), "Normal", "JobCreated", "n"),
    }
    assert base not in others and len(others) == 5


def test_without_a_version_random() -> None:
    assert event_name(obj(rv=None), "Normal", "R", "m") != event_name(
        obj(rv=None), "Normal", "R", "m"
    )
    assert event_name(obj(uid=None), "Normal", "R", "m") != event_name(
        obj(uid=None), "Normal", "R", "m"
    )


class Events:
    """Stands in for the client: keeps Events by name, refusing a second with the same name
    as the API server does."""

    def __init__(self) -> None:
        self.items: dict[str, dict[str, Any]] = {}

    def create(self, manifest: dict[str, Any]) -> Any:
        name = manifest["metadata"]["name"]
        if name in self.items:
            raise KubeError(409, "AlreadyExists", f'events "{name}" already exists', True)
        self.items[name] = manifest
        return manifest


def test_recorded_again_by_a_retried_pass_is_one_event(caplog: Any) -> None:
    kube = Events()
    record(kube, obj(), "Normal", "JobCreated", "Created is True")  # type: ignore[arg-type]
    record(kube, obj(), "Normal", "JobCreated", "Created is True")  # type: ignore[arg-type]
    assert [e["reason"] for e in kube.items.values()] == ["JobCreated"]
    assert "could not record" not in caplog.text
    record(kube, obj(rv="43"), "Normal", "JobCreated", "Created is True")  # type: ignore[arg-type]
    assert len(kube.items) == 2
