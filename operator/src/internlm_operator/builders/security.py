"""The security settings of every pod the operator renders: the Pod Security Standard
``restricted`` profile, so the workloads run in namespaces that enforce it.

Pod level: non-root as the workload images' own user, that user's group owning the volumes
(``fsGroup``), the runtime's default seccomp profile. Container level (init containers too): no
privilege escalation, every capability dropped. The IDs can be changed per resource
(``spec.podSecurityContext``, e.g. a cluster that assigns UIDs per namespace); the rest cannot,
as no workload needs a privilege.

A disk-backed ``emptyDir`` is mounted at the images' HOME and HOME points there, so caches
(Hugging Face, torch extensions, Triton) are writable whatever the UID the pod runs as: the
image's own home belongs to the image's user only.
"""

from __future__ import annotations

import copy
from typing import Any

WORKLOAD_UID = 65532
"""The user (and group) every project image runs as (images/*/Dockerfile ``USER``)."""
WORKLOAD_GID = 65532
HOME_DIR = "/home/internlm"
HOME_VOLUME = "home"

_POD_DEFAULTS: dict[str, Any] = {
    "runAsNonRoot": True,
    "runAsUser": WORKLOAD_UID,
    "runAsGroup": WORKLOAD_GID,
    "fsGroup": WORKLOAD_GID,
    # Only chown a volume whose root is not already the group's: a checkpoint PVC with
    # millions of files is not walked on every pod start.
    "fsGroupChangePolicy": "OnRootMismatch",
    "seccompProfile": {"type": "RuntimeDefault"},
}
_CONTAINER: dict[str, Any] = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
}


def pod_security_context(override: Any = None) -> dict[str, Any]:
    """The pod's ``securityContext``: the defaults, then the fields ``override`` (a
    ``PodSecurityContext`` of the API, or None) sets."""
    out = copy.deepcopy(_POD_DEFAULTS)
    if override is not None:
        out.update(override.to_dict())
    return out


def container_security_context() -> dict[str, Any]:
    return copy.deepcopy(_CONTAINER)


def harden(pod: dict[str, Any], override: Any = None) -> dict[str, Any]:
    """Give ``pod`` (a pod spec, changed in place and returned) the security contexts and the
    writable HOME, in every container."""
    pod["securityContext"] = pod_security_context(override)
    if not any(v.get("name") == HOME_VOLUME for v in pod.get("volumes") or []):
        pod.setdefault("volumes", []).append({"name": HOME_VOLUME, "emptyDir": {}})
    for c in [*(pod.get("initContainers") or []), *(pod.get("containers") or [])]:
        c["securityContext"] = container_security_context()
        mounts = c.setdefault("volumeMounts", [])
        if not any(m.get("mountPath") == HOME_DIR for m in mounts):
            mounts.append({"name": HOME_VOLUME, "mountPath": HOME_DIR})
        env = c.setdefault("env", [])
        if not any(e.get("name") == "HOME" for e in env):
            env.append({"name": "HOME", "value": HOME_DIR})
    return pod
