"""The watch-fed store and the apply hash: newer-wins, label index, copies, namespaces."""

from __future__ import annotations

from typing import Any

from internlm_operator.reconcilers.kube.cached import APPLIED_HASH, stamped
from internlm_operator.reconcilers.kube.store import Store

POD = ("v1", "Pod")


def pod(name: str, rv: str, job: str = "j", ns: str = "ns", **labels: str) -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "namespace": ns,
            "resourceVersion": rv,
            "labels": {"batch.kubernetes.io/job-name": job, **labels},
            "managedFields": [{"manager": "x"}],
        },
        "status": {"phase": "Running"},
    }


def test_only_a_newer_version_replaces_the_stored_one() -> None:
    s = Store()
    assert s.upsert(POD, pod("a", "10"))
    assert not s.upsert(POD, pod("a", "10"))  # the watch echoing our own write
    old = pod("a", "9")
    old["status"]["phase"] = "Pending"
    assert not s.upsert(POD, old)  # a late event cannot undo a write-through
    got = s.get(POD, "ns", "a")
    assert got is not None and got["status"]["phase"] == "Running"
    assert "managedFields" not in got["metadata"]


def test_reads_are_copies() -> None:
    s = Store()
    s.upsert(POD, pod("a", "1"))
    got = s.get(POD, "ns", "a")
    assert got is not None
    got["status"]["phase"] = "Failed"
    assert s.list(POD, "ns")[0]["status"]["phase"] == "Running"


def test_list_by_an_indexed_label_and_by_other_labels() -> None:
    s = Store()
    s.upsert(POD, pod("a", "1", job="j1", role="w"))
    s.upsert(POD, pod("b", "2", job="j1"))
    s.upsert(POD, pod("c", "3", job="j2", role="w"))
    s.upsert(POD, pod("d", "4", job="j1", ns="other"))
    names = lambda items: sorted(i["metadata"]["name"] for i in items)  # noqa: E731
    assert names(s.list(POD, "ns", {"batch.kubernetes.io/job-name": "j1"})) == ["a", "b"]
    assert names(s.list(POD, None, {"batch.kubernetes.io/job-name": "j1"})) == ["a", "b", "d"]
    assert names(s.list(POD, "ns", {"role": "w"})) == ["a", "c"]
    s.upsert(POD, pod("a", "5", job="j2"))  # relabelled: the index follows
    assert names(s.list(POD, "ns", {"batch.kubernetes.io/job-name": "j1"})) == ["b"]
    s.remove(POD, "ns", "b")
    assert s.list(POD, "ns", {"batch.kubernetes.io/job-name": "j1"}) == []


def test_replace_of_one_namespace_keeps_the_others_and_reports_what_changed() -> None:
    s = Store()
    s.upsert(POD, pod("a", "1"))
    s.upsert(POD, pod("b", "2"))
    s.upsert(POD, pod("x", "3", ns="other"))
    changed = s.replace(POD, [pod("a", "1"), pod("c", "4")], namespace="ns")
    assert sorted(changed) == [("ns", "b"), ("ns", "c")]  # b gone, c new, a unchanged
    assert sorted(s.names(POD)) == [("ns", "a"), ("ns", "c"), ("other", "x")]
    assert not s.synced(POD)
    s.mark_synced(POD)
    assert s.synced(POD)


def test_the_apply_hash_ignores_itself_and_follows_the_content() -> None:
    m = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"k": "1"}}
    a, ha = stamped(m)
    _, hb = stamped(a)  # a stamped manifest stamps to the same hash
    assert ha == hb and a["metadata"]["annotations"][APPLIED_HASH] == ha
    assert "annotations" not in m["metadata"]  # the builder's manifest is left alone
    _, hc = stamped({**m, "data": {"k": "2"}})
    assert hc != ha
