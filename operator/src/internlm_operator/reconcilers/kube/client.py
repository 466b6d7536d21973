"""A small, dict-in / dict-out Kubernetes client for the reconcilers.

Everything the operator writes goes through :meth:`Kube.apply` (server-side apply under one
field manager, ``force=True``), :meth:`Kube.delete` and :meth:`Kube.patch_status`. Reads return
plain dicts (or ``None`` for "not found"), so the pure layers never see client model objects.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

import kubernetes
import urllib3

FIELD_MANAGER = "internlm-operator"
METADATA_ONLY = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1,application/json"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Kind:
    api_version: str
    kind: str
    plural: str
    namespaced: bool = True

    @property
    def base(self) -> str:
        if "/" in self.api_version:
            return f"/apis/{self.api_version}"
        return f"/api/{self.api_version}"

    def path(self, namespace: str | None, name: str | None = None, sub: str | None = None) -> str:
        p = self.base
        if self.namespaced and namespace:
            p += f"/namespaces/{quote(namespace)}"
        p += f"/{self.plural}"
        if name:
            p += f"/{quote(name)}"
        if sub:
            p += f"/{sub}"
        return p


KINDS: dict[tuple[str, str], Kind] = {}


def register_kind(api_version: str, kind: str, plural: str, namespaced: bool = True) -> Kind:
    k = Kind(api_version, kind, plural, namespaced)
    KINDS[(api_version, kind)] = k
    return k


for _av, _k, _p in [
    ("v1", "ConfigMap", "configmaps"),
    ("v1", "Service", "services"),
    ("v1", "Pod", "pods"),
    ("v1", "Secret", "secrets"),
    ("v1", "Event", "events"),
    ("v1", "PersistentVolumeClaim", "persistentvolumeclaims"),
    ("v1", "ServiceAccount", "serviceaccounts"),
    ("batch/v1", "Job", "jobs"),
    ("apps/v1", "Deployment", "deployments"),
    ("autoscaling/v2", "HorizontalPodAutoscaler", "horizontalpodautoscalers"),
    ("policy/v1", "PodDisruptionBudget", "poddisruptionbudgets"),
    ("internlm.io/v1alpha1", "TrainJob", "trainjobs"),
    ("internlm.io/v1alpha1", "FineTune", "finetunes"),
    ("internlm.io/v1alpha1", "EvalRun", "evalruns"),
    ("internlm.io/v1alpha1", "ModelServe", "modelserves"),
    ("internlm.io/v1alpha1", "Agent", "agents"),
    ("kueue.x-k8s.io/v1beta2", "Workload", "workloads"),
]:
    register_kind(_av, _k, _p)
register_kind("v1", "Node", "nodes", namespaced=False)


def kind_of(api_version: str, kind: str) -> Kind:
    try:
        return KINDS[(api_version, kind)]
    except KeyError:
        raise ValueError(f"unknown kind {api_version}/{kind}") from None


class KubeError(Exception):
    """An API call failed. ``transient`` says whether retrying may help."""

    def __init__(self, status: int, reason: str, message: str, transient: bool) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message
        self.transient = transient


class NotFound(KubeError):
    pass


def _transient(status: int) -> bool:
    # 409 Conflict, 429 Too Many Requests, 5xx, and 0 = no answer at all.
    return status in (0, 408, 409, 429) or status >= 500


def load_api_client(kubeconfig: str | None = None, context: str | None = None) -> Any:
    """An ApiClient from an explicit kubeconfig, else in-cluster, else the default kubeconfig."""
    if kubeconfig:
        return kubernetes.config.new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=kubeconfig, context=context
        )
    cfg = kubernetes.client.Configuration()
    try:
        kubernetes.config.load_incluster_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
    except kubernetes.config.ConfigException:
        return kubernetes.config.new_client_from_config(  # type: ignore[no-untyped-call]
            context=context
        )
    return kubernetes.client.ApiClient(configuration=cfg)


class Kube:
    def __init__(self, api_client: Any, timeout: float = 30.0) -> None:
        self.api = api_client
        self.timeout = timeout

    # -- raw ---------------------------------------------------------------------------
    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        query: dict[str, Any] | None = None,
        content_type: str = "application/json",
        accept: str = "application/json",
    ) -> Any:
        if query:
            path = f"{path}?{urlencode(query)}"
        headers = {"Accept": accept, "Content-Type": content_type}
        _m, url, headers, body, _pp = self.api.param_serialize(
            method, path, header_params=headers, body=body, auth_settings=["BearerToken"]
        )
        try:
            resp = self.api.call_api(
                method, url, header_params=headers, body=body, _request_timeout=self.timeout
            )
            data = resp.read()
        except (urllib3.exceptions.HTTPError, OSError) as e:
            raise KubeError(0, "Unreachable", str(e), transient=True) from e
        status = int(resp.status)
        text = data.decode("utf-8", "replace") if isinstance(data, bytes) else str(data or "")
        if status >= 400:
            message, reason = text, str(resp.reason or "")
            try:
                doc = json.loads(text)
                message = doc.get("message", text)
                reason = doc.get("reason", reason)
            except ValueError:
                pass
            cls = NotFound if status == 404 else KubeError
            raise cls(status, reason, message, transient=_transient(status))
        return json.loads(text) if text else None

    # -- reads -------------------------------------------------------------------------
    def get(self, api_version: str, kind: str, namespace: str | None, name: str) -> Any:
        try:
            return self.request("GET", kind_of(api_version, kind).path(namespace, name))
        except NotFound:
            return None

    def exists(self, api_version: str, kind: str, namespace: str | None, name: str) -> bool | None:
        """Whether the object exists, reading only its metadata (a Secret's data never reaches
        the operator); ``None`` when the operator may not read it (403)."""
        try:
            self.request(
                "GET",
                kind_of(api_version, kind).path(namespace, name),
                accept=METADATA_ONLY,
            )
        except NotFound:
            return False
        except KubeError as e:
            if e.status == 403:
                return None
            raise
        return True

    def list(
        self,
        api_version: str,
        kind: str,
        namespace: str | None,
        labels: dict[str, str] | None = None,
        fields: dict[str, str] | None = None,
    ) -> list[dict[str, Any]]:
        query = {}
        if labels:
            query["labelSelector"] = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
        if fields:
            query["fieldSelector"] = ",".join(f"{k}={v}" for k, v in sorted(fields.items()))
        doc = self.request("GET", kind_of(api_version, kind).path(namespace), query=query)
        items: list[dict[str, Any]] = doc.get("items", []) if doc else []
        return items

    # -- writes ------------------------------------------------------------------------
    def apply(self, manifest: dict[str, Any]) -> Any:
        """Server-side apply, one field manager, force."""
        k = kind_of(manifest["apiVersion"], manifest["kind"])
        md = manifest["metadata"]
        return self.request(
            "PATCH",
            k.path(md.get("namespace"), md["name"]),
            body=manifest,
            query={"fieldManager": FIELD_MANAGER, "force": "true"},
            content_type="application/apply-patch+yaml",
        )

    def merge_patch(
        self,
        api_version: str,
        kind: str,
        namespace: str | None,
        name: str,
        patch: Any,
        sub: str | None = None,
    ) -> Any:
        return self.request(
            "PATCH",
            kind_of(api_version, kind).path(namespace, name, sub),
            body=patch,
            query={"fieldManager": FIELD_MANAGER},
            content_type="application/merge-patch+json",
        )

    def patch_status(
        self, api_version: str, kind: str, namespace: str, name: str, status: dict[str, Any]
    ) -> Any:
        """One merge patch of the status subresource (lists are replaced whole)."""
        return self.merge_patch(api_version, kind, namespace, name, {"status": status}, "status")

    def delete(
        self,
        api_version: str,
        kind: str,
        namespace: str | None,
        name: str,
        propagation: str = "Background",
        uid: str | None = None,
    ) -> bool:
        """Delete; ``False`` when it was already gone."""
        body: dict[str, Any] = {"propagationPolicy": propagation}
        if uid:
            body["preconditions"] = {"uid": uid}
        try:
            self.request("DELETE", kind_of(api_version, kind).path(namespace, name), body=body)
        except NotFound:
            return False
        except KubeError as e:
            if e.status == 409 and uid:  # uid precondition failed: it is already another object
                return False
            raise
        return True

    def create(self, manifest: dict[str, Any]) -> Any:
        k = kind_of(manifest["apiVersion"], manifest["kind"])
        return self.request("POST", k.path(manifest["metadata"].get("namespace")), body=manifest)
