"""The chart without a cluster: lint, rendering, RBAC shape, and the values schema."""

from __future__ import annotations

import re
import subprocess
import sys
from typing import Any

import pytest
import yaml
from internlm_operator import config as cfg

from tests.conftest import REPO

from .conftest import CHART, Helm, by_kind, one

KINDS = ["trainjobs", "finetunes", "evalruns", "modelserves", "agents"]
STAGES = ["pretrain", "finetune", "eval", "serve", "agent"]


def test_crd_templates_are_generated_from_crds() -> None:
    res = subprocess.run(
        [sys.executable, str(REPO / "hack" / "helm_crds.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert res.returncode == 0, res.stderr


@pytest.mark.parametrize(
    "target,command",
    [
        ("crds", "hack/helm_crds.py"),
        ("crds-check", "hack/helm_crds.py --check"),
    ],
)
def test_make_crds_targets_cover_the_chart_copies(target: str, command: str) -> None:
    """`make crds` regenerates the chart's CRD templates after crds/, `make crds-check` fails
    when they drift: the two copies cannot diverge through the usual workflow."""
    res = subprocess.run(
        ["make", "-n", target], cwd=REPO, capture_output=True, text=True, check=False
    )
    assert res.returncode == 0, res.stderr
    lines = [line.strip() for line in res.stdout.splitlines()]
    crdgen = next(i for i, line in enumerate(lines) if "internlm_operator.crdgen" in line)
    helm = next(i for i, line in enumerate(lines) if line.endswith(command))
    assert crdgen < helm, lines  # the chart's copies are made from the fresh crds/


@pytest.mark.parametrize(
    "sets",
    [
        [],
        ["watchNamespaces={team-a,team-b}", "crds.keep=false"],
        [
            "metrics.serviceMonitor.enabled=true",
            "workloads.defaultStorageClass=fast-nvme",
            "workloads.defaultResources.requests.cpu=2",
            "serviceAccount.create=false",
            "serviceAccount.name=existing",
            "image.digest=sha256:" + "a" * 64,
        ],
    ],
    ids=["default", "namespaced", "everything"],
)
def test_lint_is_clean(helm: Helm, sets: list[str]) -> None:
    args = ["lint", "--strict", str(CHART)]
    for s in sets:
        args += ["--set", s]
    res = helm(*args)
    assert "0 chart(s) failed" in res.stdout, res.stdout
    assert "[WARNING]" not in res.stdout and "[ERROR]" not in res.stdout, res.stdout


def test_offline_render_assumes_the_local_clusters_version(helm: Helm) -> None:
    """The helm that `make binaries` builds knows its own version and assumes the local
    cluster's Kubernetes when rendering offline, so the chart's kubeVersion is checked for real."""
    assert helm("version", "--template", "{{.Version}}").stdout.strip().startswith("v3.")
    out = helm.template_text()
    assert "kind: Deployment" in out


def test_chart_refuses_kubernetes_older_than_1_27(helm: Helm) -> None:
    res = helm("template", "rel", str(CHART), "--kube-version", "1.26.0", check=False)
    assert res.returncode != 0
    assert "kubeVersion" in res.stderr and ">=1.27.0-0" in res.stderr


def test_crds_render_exactly_as_generated(helm: Helm) -> None:
    docs = helm.template()
    crds = {d["metadata"]["name"]: d for d in by_kind(docs, "CustomResourceDefinition")}
    assert sorted(crds) == sorted(f"{k}.internlm.io" for k in KINDS)
    for f in (REPO / "crds").glob("*.yaml"):
        src = yaml.safe_load(f.read_text())
        got = crds[src["metadata"]["name"]]
        assert got["spec"] == src["spec"], f"{f.name}: the template changes the CRD spec"
        assert got["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
        assert got["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm"


def test_crds_gated_and_keep_optional(helm: Helm) -> None:
    assert not by_kind(helm.template("crds.enabled=false"), "CustomResourceDefinition")
    crds = by_kind(helm.template("crds.keep=false"), "CustomResourceDefinition")
    assert len(crds) == 5
    for c in crds:
        assert "helm.sh/resource-policy" not in (c["metadata"].get("annotations") or {})


def test_deployment_is_restricted_and_probed(helm: Helm) -> None:
    dep = one(helm.template(), "Deployment")
    spec = dep["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "Recreate"}
    pod = spec["template"]["spec"]
    assert pod["serviceAccountName"] == "rel-internlm-operator"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (c,) = pod["containers"]
    sc = c["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["runAsNonRoot"] is True
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "health"}
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"metrics": 8080, "health": 8081}
    assert c["resources"]["requests"] and c["resources"]["limits"]
    assert c["image"] == "ghcr.io/internlm-operator/operator:0.1.0"
    assert c["args"][0] == "run"
    assert "--metrics-port=8080" in c["args"] and "--health-port=8081" in c["args"]
    assert not [a for a in c["args"] if a.startswith("--namespace")]


def _env(dep: dict[str, Any]) -> dict[str, str]:
    c = dep["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e.get("value") for e in c["env"]}


def test_workload_settings_reach_the_operator(helm: Helm) -> None:
    env = _env(one(helm.template(), "Deployment"))
    for s in STAGES:
        assert env[f"INTERNLM_IMAGE_{s.upper()}"] == f"ghcr.io/internlm-operator/{s}:0.1.0"
    assert env["INTERNLM_DEFAULT_STORAGE_CLASS"] == ""
    assert "INTERNLM_DEFAULT_RESOURCES" not in env
    env = _env(
        one(
            helm.template(
                "workloads.image.registry=registry.local/ml",
                "workloads.image.tag=2.0",
                "workloads.images.serve=mirror.local/lmdeploy:0.7",
                "workloads.defaultStorageClass=fast-nvme",
                "workloads.defaultResources.requests.cpu=4",
                "workloads.image.pullPolicy=Always",
            ),
            "Deployment",
        )
    )
    assert env["INTERNLM_IMAGE_PRETRAIN"] == "registry.local/ml/pretrain:2.0"
    assert env["INTERNLM_IMAGE_SERVE"] == "mirror.local/lmdeploy:0.7"
    assert env["INTERNLM_DEFAULT_STORAGE_CLASS"] == "fast-nvme"
    assert env["INTERNLM_DEFAULT_RESOURCES"] == '{"requests":{"cpu":4}}'
    assert env["INTERNLM_IMAGE_PULL_POLICY"] == "Always"


def test_hub_cache_is_off_by_default_and_adds_only_pvc_create(helm: Helm) -> None:
    def role(*sets: str) -> set[tuple[str, str, str]]:
        roles = {r["metadata"]["name"]: r for r in by_kind(helm.template(*sets), "ClusterRole")}
        return _rules(roles["rel-internlm-operator"])

    env = _env(one(helm.template(), "Deployment"))
    assert "INTERNLM_HUB_CACHE_STORAGE_CLASS" not in env
    assert (
        cfg.from_env({k: v for k, v in env.items() if v is not None}).hub_cache_storage_class
        is None
    )
    on = ("workloads.hubCache.storageClass=cephfs", "workloads.hubCache.size=5Ti")
    env = _env(one(helm.template(*on), "Deployment"))
    assert env["INTERNLM_HUB_CACHE_STORAGE_CLASS"] == "cephfs"
    assert env["INTERNLM_HUB_CACHE_SIZE"] == "5Ti"
    c = cfg.from_env({k: v for k, v in env.items() if v is not None})
    assert (c.hub_cache_storage_class, c.hub_cache_size) == ("cephfs", "5Ti")
    assert role(*on) - role() == {("", "persistentvolumeclaims", "create")}


def test_operator_defaults_match_the_chart(helm: Helm) -> None:
    """An operator run without the chart (no env) uses the chart's workload images, and what
    the chart passes is what the operator reads."""
    env = _env(one(helm.template(), "Deployment"))
    chart_images = {s: env[f"INTERNLM_IMAGE_{s.upper()}"] for s in STAGES}
    assert cfg.default_images() == chart_images
    assert cfg.from_env({}).images == chart_images
    assert cfg.from_env({}).image_pull_policy == env["INTERNLM_IMAGE_PULL_POLICY"]
    env = _env(
        one(
            helm.template(
                "workloads.defaultResources.requests.cpu=4",
                "workloads.defaultResources.limits.memory=8Gi",
                "workloads.defaultStorageClass=fast-nvme",
            ),
            "Deployment",
        )
    )
    c = cfg.from_env({k: v for k, v in env.items() if v is not None})
    assert c.default_resources == {"requests": {"cpu": "4"}, "limits": {"memory": "8Gi"}}
    assert c.default_storage_class == "fast-nvme"


def _rules(role: dict[str, Any]) -> set[tuple[str, str, str]]:
    out = set()
    for r in role["rules"]:
        for g in r["apiGroups"]:
            for res in r["resources"]:
                for v in r["verbs"]:
                    out.add((g, res, v))
    return out


def _assert_least_privilege(rules: set[tuple[str, str, str]]) -> None:
    assert not [r for r in rules if "*" in r], "no wildcards"
    resources = {res for _, res, _ in rules}
    for forbidden in (
        "secrets",
        "namespaces",
        "nodes",
        "serviceaccounts",
        "roles",
        "rolebindings",
        "clusterroles",
        "clusterrolebindings",
        "leases",
    ):
        assert forbidden not in resources, forbidden
    assert {v for g, res, v in rules if res == "pods"} == {"list", "watch"}
    assert not {v for g, res, v in rules if res == "customresourcedefinitions"} - {
        "get",
        "list",
        "watch",
    }
    # create: our Events; list: a pending Job's FailedCreate Events (status.stuck)
    assert {v for g, res, v in rules if res == "events"} == {"create", "list"}
    # Before creating pods: do the PVCs and ConfigMaps they name exist (get only)?
    assert {v for g, res, v in rules if res == "persistentvolumeclaims"} == {"get"}
    for k in KINDS:
        # Only read (kopf writes nothing on them); creating and deleting them is the user's call.
        assert {v for g, res, v in rules if res == k} == {"get", "list", "watch"}
        assert {v for g, res, v in rules if res == f"{k}/status"} == {"patch"}


def _doc_rbac_table(doc: str, heading: str) -> set[tuple[str, str, str]]:
    """(group, resource, verb) from the markdown RBAC table under ``heading`` in ``doc``:
    rows ``| `group` | resources | verbs | why |``, "`*/status` of the five" expanded."""
    text = (REPO / "docs" / doc).read_text()
    section = text[text.index(heading) :]
    out: set[tuple[str, str, str]] = set()
    started = False
    for line in section.splitlines()[1:]:
        if not line.startswith("|"):
            if started:
                break
            continue
        started = True
        cells = [c.strip() for c in line.strip("|").split("|")]
        if cells[0] in ("API group", "---"):
            continue
        group = cells[0].strip("`").replace('""', "")
        m = re.fullmatch(r"`\*/(\w+)` of the five", cells[1])
        resources = [f"{k}/{m.group(1)}" for k in KINDS] if m else cells[1].split(", ")
        for res in resources:
            for verb in cells[2].split(", "):
                out.add((group, res.strip(), verb.strip()))
    assert out, f"no RBAC table under {heading!r} in docs/{doc}"
    return out


@pytest.mark.parametrize(
    "doc,heading",
    [
        ("operator.md", "### What it needs from the API (RBAC)"),
        ("helm.md", "## RBAC: exactly what the operator calls"),
    ],
)
def test_rbac_docs_match_the_chart(helm: Helm, doc: str, heading: str) -> None:
    """The RBAC tables in the docs say exactly what the chart grants (tests/helm/test_demo.py
    proves the chart's set sufficient for the whole pipeline)."""
    docs = helm.template()
    granted = _rules(
        {r["metadata"]["name"]: r for r in by_kind(docs, "ClusterRole")}["rel-internlm-operator"]
    )
    documented = _doc_rbac_table(doc, heading)
    assert documented - granted == set(), "documented but not granted"
    assert granted - documented == set(), "granted but not documented"


def test_rbac_clusterwide_by_default(helm: Helm) -> None:
    docs = helm.template()
    assert not by_kind(docs, "Role") and not by_kind(docs, "RoleBinding")
    roles = {r["metadata"]["name"]: r for r in by_kind(docs, "ClusterRole")}
    assert sorted(roles) == [
        "rel-internlm-operator",
        "rel-internlm-operator-admin",
        "rel-internlm-operator-edit",
        "rel-internlm-operator-view",
    ]
    _assert_least_privilege(_rules(roles["rel-internlm-operator"]))
    crb = one(docs, "ClusterRoleBinding")
    assert crb["roleRef"]["name"] == "rel-internlm-operator"
    assert crb["subjects"] == [
        {"kind": "ServiceAccount", "name": "rel-internlm-operator", "namespace": "internlm-system"}
    ]


def test_rbac_check_secrets_is_opt_in_and_get_only(helm: Helm) -> None:
    def secret_verbs(*sets: str) -> set[str]:
        roles = {r["metadata"]["name"]: r for r in by_kind(helm.template(*sets), "ClusterRole")}
        return {v for _, res, v in _rules(roles["rel-internlm-operator"]) if res == "secrets"}

    assert secret_verbs() == set()
    assert secret_verbs("rbac.checkSecrets=true") == {"get"}


def test_rbac_namespaced_with_watch_namespaces(helm: Helm) -> None:
    docs = helm.template("watchNamespaces={team-a,team-b}")
    roles = by_kind(docs, "Role")
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["team-a", "team-b"]
    for r in roles:
        _assert_least_privilege(_rules(r))
    bindings = by_kind(docs, "RoleBinding")
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["team-a", "team-b"]
    cluster_roles = {r["metadata"]["name"]: r for r in by_kind(docs, "ClusterRole")}
    # Cluster-wide only CRD reads (kopf watches CRDs) and the users' aggregated roles.
    assert _rules(cluster_roles["rel-internlm-operator-crd-reader"]) == {
        ("apiextensions.k8s.io", "customresourcedefinitions", v) for v in ("get", "list", "watch")
    }
    assert "rel-internlm-operator" not in cluster_roles
    args = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--namespace=team-a" in args and "--namespace=team-b" in args


def test_aggregated_user_roles(helm: Helm) -> None:
    roles = {r["metadata"]["name"]: r for r in by_kind(helm.template(), "ClusterRole")}
    for level in ("admin", "edit", "view"):
        role = roles[f"rel-internlm-operator-{level}"]
        assert (
            role["metadata"]["labels"][f"rbac.authorization.k8s.io/aggregate-to-{level}"] == "true"
        )
        rules = _rules(role)
        for k in KINDS:
            assert ("internlm.io", k, "list") in rules
            assert (("internlm.io", k, "create") in rules) == (level != "view")
    assert ("internlm.io", "modelserves/scale", "update") in _rules(
        roles["rel-internlm-operator-edit"]
    )
    off = helm.template("rbac.aggregateToDefaultRoles=false")
    assert [r["metadata"]["name"] for r in by_kind(off, "ClusterRole")] == ["rel-internlm-operator"]


def test_metrics_service_and_service_monitor(helm: Helm) -> None:
    docs = helm.template()
    svc = one(docs, "Service")
    assert svc["spec"]["ports"][0]["targetPort"] == "metrics"
    assert not by_kind(docs, "ServiceMonitor")
    sm = one(
        helm.template(
            "metrics.serviceMonitor.enabled=true", "metrics.serviceMonitor.labels.release=prom"
        ),
        "ServiceMonitor",
    )
    assert sm["metadata"]["labels"]["release"] == "prom"
    assert sm["spec"]["endpoints"][0]["port"] == "metrics"
    res = helm(
        "template",
        "rel",
        str(CHART),
        "--set",
        "metrics.serviceMonitor.enabled=true",
        "--set",
        "metrics.service.enabled=false",
        check=False,
    )
    assert res.returncode != 0
    assert "metrics.serviceMonitor.enabled needs metrics.service.enabled" in res.stderr


@pytest.mark.parametrize(
    ("sets", "where", "what"),
    [
        (["operator.logFormat=xml"], "/operator/logFormat", "text"),
        (["watchNamespaces={Team_A}"], "/watchNamespaces/0", "does not match pattern"),
        (["operator.metricsPort=70000"], "/operator/metricsPort", "maximum"),
        (["operator.healthPort=web"], "/operator/healthPort", "integer"),
        (["crds.enabled=maybe"], "/crds/enabled", "boolean"),
        (["resources.limits.memory=lots"], "/resources/limits/memory", ""),
        (["image.pullPolicy=Sometimes"], "/image/pullPolicy", "IfNotPresent"),
        (["image.digest=latest"], "/image/digest", "does not match pattern"),
        (["workloads.images.serve=Not An Image"], "/workloads/images/serve", "pattern"),
        (["workloads.defaultStorageClass=Fast_NVMe"], "/workloads/defaultStorageClass", "pattern"),
        (["crds.enabeld=true"], "/crds", "enabeld"),
        (["replicaCount=2"], "", "replicaCount"),
        (["operator.resyncSeconds=0"], "/operator/resyncSeconds", ""),
        (["metrics.serviceMonitor.interval=30sec"], "/metrics/serviceMonitor/interval", "pattern"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_schema_rejects_invalid_values(helm: Helm, sets: list[str], where: str, what: str) -> None:
    args = ["template", "rel", str(CHART)]
    for s in sets:
        args += ["--set", s]
    res = helm(*args, check=False)
    assert res.returncode != 0, f"{sets} was accepted"
    err = res.stderr
    assert "values don't meet the specifications of the schema" in err, err
    assert f"'{where}'" in err or where in err, err
    assert what in err, err
