"""A child the API server refuses for good (an admission policy here) is named in status:
Stalled with reason ChildRejected and the server's own message, for a batch kind and a
serving kind, and the operator goes on with everything else."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import Cluster, wait_until
from tests.integration.conftest import OperatorHandle, sample
from tests.integration.test_trainjob import small

pytestmark = pytest.mark.cluster
MESSAGE = "children in this namespace need the label team"
EXPRESSION = "has(object.metadata.labels) && 'team' in object.metadata.labels"


@pytest.fixture
def policy(cluster: Cluster, namespace: str) -> Iterator[str]:
    """A ValidatingAdmissionPolicy that denies Jobs and Deployments without a team label in
    this test's namespace only (the operator's children never carry one)."""
    name = f"need-team-{namespace}"
    docs: list[dict[str, Any]] = [
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingAdmissionPolicy",
            "metadata": {"name": name},
            "spec": {
                "failurePolicy": "Fail",
                "matchConstraints": {
                    "resourceRules": [
                        {
                            "apiGroups": ["batch", "apps"],
                            "apiVersions": ["v1"],
                            "operations": ["CREATE", "UPDATE"],
                            "resources": ["jobs", "deployments"],
                        }
                    ]
                },
                "validations": [
                    {
                        "expression": EXPRESSION,
                        "message": MESSAGE,
                    }
                ],
            },
        },
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingAdmissionPolicyBinding",
            "metadata": {"name": name},
            "spec": {
                "policyName": name,
                "validationActions": ["Deny"],
                "matchResources": {
                    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}}
                },
            },
        },
    ]
    for d in docs:
        cluster.apply(d)
    # The policy is enforced once the API server has loaded it: probe with a throwaway Job.
    probe = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "probe", "namespace": namespace},
        "spec": {
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "c", "image": "busybox"}],
                }
            }
        },
    }
    wait_until(
        "the admission policy to be enforced",
        lambda: (
            MESSAGE
            in cluster.kubectl(
                "create", "--dry-run=server", "-f", "-", input=json.dumps(probe), check=False
            ).stderr
        ),
        timeout=60,
    )
    yield name
    for kind in ("validatingadmissionpolicybinding", "validatingadmissionpolicy"):
        cluster.kubectl("delete", kind, name, "--ignore-not-found", check=False)


def stalled_reason(cluster: Cluster, ns: str, kind: str, name: str) -> dict[str, Any] | None:
    st = cluster.get(kind, name, "-n", ns).get("status") or {}
    for c in st.get("conditions") or []:
        if c["type"] == "Stalled" and c["status"] == "True" and c["reason"] == "ChildRejected":
            return c
    return None


def test_refused_children_are_named_in_status(
    cluster: Cluster, namespace: str, policy: str, operator: OperatorHandle
) -> None:
    tj = small("refused")
    tj["spec"]["model"] = {"source": {"huggingFace": {"repo": "internlm/internlm2_5-1_8b"}}}
    tj["spec"]["data"] = {"huggingFace": {"repo": "t/corpus"}, "format": "jsonl"}
    tj["spec"]["output"] = {"uri": "s3://b/refused"}
    cluster.apply(tj, namespace=namespace)
    c = wait_until(
        "the TrainJob Stalled with ChildRejected",
        lambda: stalled_reason(cluster, namespace, "trainjob", "refused"),
        timeout=60,
    )
    assert MESSAGE in c["message"] and "422" in c["message"], c

    ms = sample("modelserve")
    ms["metadata"] = {"name": "refused"}
    ms["spec"]["model"] = {"huggingFace": {"repo": "internlm/internlm2_5-1_8b"}}
    ms["spec"].pop("gate", None)
    ms["spec"].pop("apiKeySecret", None)
    cluster.apply(ms, namespace=namespace)
    c = wait_until(
        "the ModelServe Stalled with ChildRejected",
        lambda: stalled_reason(cluster, namespace, "modelserve", "refused"),
        timeout=60,
        explain=lambda: cluster.get("modelserve", "refused", "-n", namespace).get("status"),
    )
    assert MESSAGE in c["message"], c

    # With the policy gone the same TrainJob goes on: it was the only thing in the way, and a
    # refused child is tried again (at the resync), not given up on.
    cluster.kubectl("delete", "validatingadmissionpolicybinding", policy)
    wait_until(
        "the TrainJob's Job once the policy is gone",
        lambda: cluster.kubectl(
            "get", "jobs", "-n", namespace, "-l", "internlm.io/resource=refused", "-o", "name"
        ).stdout.strip(),
        timeout=90,
    )
