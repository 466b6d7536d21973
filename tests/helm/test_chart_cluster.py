"""The chart against the real API server of the local cluster: server-side dry runs, RBAC
proven with `kubectl auth can-i`, CRD upgrade through `helm upgrade`, uninstall with keep."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO, Cluster, wait_until

from .conftest import CHART, Helm, demo

KINDS = ["trainjobs", "finetunes", "evalruns", "modelserves", "agents"]


@pytest.fixture
def extra_namespaces(cluster: Cluster, namespace: str) -> Iterator[list[str]]:
    """Two more namespaces next to ``namespace``: one watched, one outside."""
    names = [f"{namespace}-w", f"{namespace}-x"]
    for n in names:
        cluster.kubectl("create", "namespace", n)
    yield names
    cluster.kubectl("delete", "namespace", *names, "--wait=false", check=False)


def dry_run(cluster: Cluster, manifest: str) -> str:
    res = cluster.kubectl("apply", "--dry-run=server", "-f", "-", input=manifest)
    return res.stdout


def test_default_values_pass_server_side_dry_run(
    cluster: Cluster, namespace: str, helm: Helm, crds: list[str]
) -> None:
    out = dry_run(cluster, helm.template_text(namespace=namespace, release="dry"))
    for what in (
        "customresourcedefinition.apiextensions.k8s.io/trainjobs.internlm.io",
        "serviceaccount/dry-internlm-operator",
        "clusterrole.rbac.authorization.k8s.io/dry-internlm-operator",
        "clusterrolebinding.rbac.authorization.k8s.io/dry-internlm-operator",
        "clusterrole.rbac.authorization.k8s.io/dry-internlm-operator-view",
        "service/dry-internlm-operator-metrics",
        "deployment.apps/dry-internlm-operator",
    ):
        assert what in out, out


def test_namespaced_values_pass_server_side_dry_run(
    cluster: Cluster, namespace: str, extra_namespaces: list[str], helm: Helm
) -> None:
    watched = extra_namespaces[0]
    text = helm.template_text(
        f"watchNamespaces={{{namespace},{watched}}}",
        "crds.enabled=false",
        "operator.logFormat=text",
        namespace=namespace,
        release="dryns",
    )
    out = dry_run(cluster, text)
    lines = out.splitlines()
    assert (
        lines.count(
            "role.rbac.authorization.k8s.io/dryns-internlm-operator created (server dry run)"
        )
        == 2
    ), out
    assert (
        lines.count(
            "rolebinding.rbac.authorization.k8s.io/dryns-internlm-operator created (server dry run)"
        )
        == 2
    ), out
    assert "clusterrole.rbac.authorization.k8s.io/dryns-internlm-operator-crd-reader" in out
    assert "customresourcedefinition" not in out


def can_i(cluster: Cluster, sa: str, verb: str, resource: str, *flags: str) -> bool:
    res = cluster.kubectl("auth", "can-i", verb, resource, f"--as={sa}", *flags, check=False)
    return res.stdout.strip() == "yes"


NEEDED = [
    # (verb, resource, extra flags): every call the operator makes in a watched namespace
    *[(v, f"{k}.internlm.io", ()) for k in KINDS for v in ("get", "list", "watch")],
    *[("patch", f"{k}.internlm.io", ("--subresource=status",)) for k in KINDS],
    *[("update", f"{k}.internlm.io", ("--subresource=finalizers",)) for k in KINDS],
    *[
        (v, r, ())
        for r in ("jobs.batch", "deployments.apps")
        for v in ("get", "list", "watch", "create", "patch", "delete")
    ],
    *[
        (v, r, ())
        for r in (
            "services",
            "configmaps",
            "horizontalpodautoscalers.autoscaling",
            "poddisruptionbudgets.policy",
        )
        for v in ("create", "patch", "delete")
    ],
    ("list", "pods", ()),
    ("create", "events", ()),
    ("list", "events", ()),
    ("get", "persistentvolumeclaims", ()),
    ("get", "configmaps", ()),
]

FORBIDDEN_IN_WATCHED = [
    ("get", "secrets"),
    ("list", "secrets"),
    ("watch", "secrets"),
    ("create", "pods"),
    ("delete", "pods"),
    ("get", "pods/log"),
    ("patch", "trainjobs.internlm.io"),
    ("create", "pods/exec"),
    ("delete", "trainjobs.internlm.io"),
    ("create", "agents.internlm.io"),
    ("update", "deployments.apps"),
    ("create", "serviceaccounts"),
    ("create", "rolebindings.rbac.authorization.k8s.io"),
    ("create", "persistentvolumeclaims"),
    ("create", "leases.coordination.k8s.io"),
]


def install(khelm: Helm, release: str, namespace: str, *sets: str) -> str:
    args = ["install", release, str(CHART), "-n", namespace, "--wait", "--timeout", "2m"]
    for s in sets:
        args += ["--set", s]
    return khelm(*args).stdout


def test_rbac_namespaced_is_sufficient_and_minimal(
    cluster: Cluster, namespace: str, extra_namespaces: list[str], khelm: Helm, release: str
) -> None:
    watched, outside = extra_namespaces
    notes = install(
        khelm, release, namespace, "crds.enabled=false", f"watchNamespaces={{{watched}}}"
    )
    assert f"It watches only: {watched}" in notes
    assert f"kubectl apply -n {watched} -f samples/pipeline.yaml" in notes
    sa = f"system:serviceaccount:{namespace}:{release}-internlm-operator"

    missing = [
        f"{v} {r} {' '.join(f)}"
        for v, r, f in NEEDED
        if not can_i(cluster, sa, v, r, "-n", watched, *f)
    ]
    assert not missing, f"the operator lacks: {missing}"
    assert can_i(cluster, sa, "watch", "customresourcedefinitions.apiextensions.k8s.io")

    allowed = [
        f"{v} {r}" for v, r in FORBIDDEN_IN_WATCHED if can_i(cluster, sa, v, r, "-n", watched)
    ]
    assert not allowed, f"the operator may do more than it needs in {watched}: {allowed}"
    # Nothing at all outside the watched namespace, including its own.
    for ns in (outside, namespace, "default", "kube-system"):
        leaked = [f"{v} {r}" for v, r, f in NEEDED if not f and can_i(cluster, sa, v, r, "-n", ns)]
        assert not leaked, f"the operator reaches into {ns}: {leaked}"
        assert not can_i(cluster, sa, "get", "secrets", "-n", ns)
    # Nothing cluster-wide beyond reading CRDs.
    for verb, res in [
        ("list", "trainjobs.internlm.io"),
        ("list", "namespaces"),
        ("create", "namespaces"),
        ("list", "nodes"),
        ("delete", "customresourcedefinitions.apiextensions.k8s.io"),
        ("update", "customresourcedefinitions.apiextensions.k8s.io"),
        ("create", "clusterroles.rbac.authorization.k8s.io"),
        ("list", "secrets"),
    ]:
        assert not can_i(cluster, sa, verb, res, "--all-namespaces"), f"{verb} {res} cluster-wide"
    assert not can_i(cluster, sa, "impersonate", "serviceaccounts", "-n", watched)


def test_rbac_clusterwide_is_sufficient_and_minimal(
    cluster: Cluster, namespace: str, khelm: Helm, release: str
) -> None:
    install(khelm, release, namespace, "crds.enabled=false")
    sa = f"system:serviceaccount:{namespace}:{release}-internlm-operator"
    missing = [
        f"{v} {r} {' '.join(f)}"
        for v, r, f in NEEDED
        if not can_i(cluster, sa, v, r, "--all-namespaces", *f)
    ]
    assert not missing, f"the operator lacks: {missing}"
    allowed = [
        f"{v} {r}" for v, r in FORBIDDEN_IN_WATCHED if can_i(cluster, sa, v, r, "--all-namespaces")
    ]
    assert not allowed, f"the operator may do more than it needs: {allowed}"
    for verb, res in [
        ("delete", "customresourcedefinitions.apiextensions.k8s.io"),
        ("patch", "customresourcedefinitions.apiextensions.k8s.io"),
        ("create", "namespaces"),
        ("delete", "namespaces"),
        ("list", "nodes"),
        ("create", "clusterrolebindings.rbac.authorization.k8s.io"),
    ]:
        assert not can_i(cluster, sa, verb, res), f"{verb} {res}"
    # Users get the five kinds through the built-in roles (aggregation).
    view = cluster.get("clusterrole", "view")
    assert any("trainjobs" in (r.get("resources") or []) for r in view.get("rules") or [])


def _changed_chart(tmp: Path) -> Path:
    """A copy of the chart whose TrainJob CRD has one more printer column."""
    chart = tmp / "internlm-operator"
    shutil.copytree(CHART, chart)
    crd = chart / "templates" / "crds" / "internlm.io_trainjobs.yaml"
    text = crd.read_text()
    assert "    additionalPrinterColumns:\n" in text
    text = text.replace(
        "    additionalPrinterColumns:\n",
        "    additionalPrinterColumns:\n"
        "    - name: Upgraded\n      type: string\n      jsonPath: .metadata.uid\n"
        "      priority: 1\n",
        1,
    )
    crd.write_text(text)
    return chart


def _columns(cluster: Cluster) -> list[str]:
    crd = cluster.get("crd", "trainjobs.internlm.io")
    return [c["name"] for c in crd["spec"]["versions"][0].get("additionalPrinterColumns") or []]


def test_crd_upgrade_and_uninstall_with_keep(
    cluster: Cluster, namespace: str, khelm: Helm, release: str, crds: list[str], tmp_path: Path
) -> None:
    """The one test that lets a release own the cluster's CRDs (they are shared by every
    test): it adopts them, upgrades one, restores it, and uninstalls with crds.keep."""
    demo.adopt_crds(demo.Kube(cluster.kubeconfig), release, namespace)
    install(khelm, release, namespace, "watchNamespaces={" + namespace + "}")
    crd = cluster.get("crd", "trainjobs.internlm.io")
    assert crd["metadata"]["annotations"]["meta.helm.sh/release-name"] == release
    assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    cluster.kubectl("apply", "-n", namespace, "-f", str(REPO / "samples" / "trainjob.yaml"))
    before = _columns(cluster)
    assert "Upgraded" not in before

    khelm("upgrade", release, str(_changed_chart(tmp_path)), "-n", namespace, "--reuse-values")
    wait_until("the upgraded CRD", lambda: "Upgraded" in _columns(cluster), timeout=30)

    khelm("upgrade", release, str(CHART), "-n", namespace, "--reuse-values")
    wait_until("the restored CRD", lambda: _columns(cluster) == before, timeout=30)

    res = khelm("uninstall", release, "-n", namespace, "--wait")
    assert "kept due to the resource policy" in res.stdout + res.stderr
    for name in crds:
        cluster.kubectl("get", "crd", name)
    tjs = cluster.get("trainjobs", "-n", namespace)["items"]
    assert [t["metadata"]["name"] for t in tjs] == ["internlm2-5-7b-cpt"]
    # The release's own objects are gone.
    assert (
        cluster.kubectl(
            "get", "clusterrole", f"{release}-internlm-operator-crd-reader", check=False
        ).returncode
        != 0
    )
