"""The env vars fetching and uploading need: hub tokens and object-store credentials from their
Secrets, the object-store settings and the fetch settings of ``spec.env``."""

from __future__ import annotations

from typing import Any

from ..api.v1alpha1.pod import WorkloadCommon


def secret_env(name: str, ref: Any) -> dict[str, Any]:
    """An env var from a Secret key (the value never leaves the Secret)."""
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}}}


# The ``spec.env`` variables a fetch honours as well (a hub mirror such as HF_ENDPOINT, the
# clients' own settings, proxies, CA bundles): the fetch init containers and the hub cache's
# fetch Job get them too, not only the workload container.
FETCH_ENV_PREFIXES = ("HF_", "HUGGINGFACE_", "MODELSCOPE_", "AWS_", "INTERNLM_FETCH_")
FETCH_ENV_NAMES = frozenset(
    ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE")
)


def is_fetch_env(name: str) -> bool:
    return name.startswith(FETCH_ENV_PREFIXES) or name.upper() in FETCH_ENV_NAMES


def hub_env(spec: WorkloadCommon) -> list[dict[str, Any]]:
    """What fetching and uploading need: the model hub tokens of ``spec.hubTokens`` and the
    object-store credentials of ``spec.objectStore`` as env vars from their Secrets, the
    object-store endpoint, region and addressing style, and the fetch settings of
    ``spec.env`` (:func:`is_fetch_env`), which replace a variable of the same name."""
    env = []
    tokens = getattr(spec, "hub_tokens", None)
    if tokens is not None and tokens.hugging_face is not None:
        env.append(secret_env("HF_TOKEN", tokens.hugging_face))
    if tokens is not None and tokens.model_scope is not None:
        env.append(secret_env("MODELSCOPE_API_TOKEN", tokens.model_scope))
    env += object_store_env(spec)
    user = [e.to_dict() for e in getattr(spec, "env", None) or [] if is_fetch_env(e.name)]
    mine = {e["name"] for e in user}
    return [e for e in env if e["name"] not in mine] + user


def without_user_env(env: list[dict[str, Any]], spec: WorkloadCommon) -> list[dict[str, Any]]:
    """``env`` less the names ``spec.env`` sets (the workload container appends spec.env
    itself, last; a name twice in one container breaks server-side apply)."""
    mine = {e.name for e in getattr(spec, "env", None) or []}
    return [e for e in env if e["name"] not in mine]


def object_store_env(spec: Any) -> list[dict[str, Any]]:
    """``spec.objectStore`` as the env boto3 reads (AWS_ENDPOINT_URL_S3, AWS_DEFAULT_REGION,
    the key pair from its Secrets) and the addressing style (path with an endpoint)."""
    store = getattr(spec, "object_store", None)
    if store is None:
        return []
    env: list[dict[str, Any]] = []
    if store.endpoint:
        env.append({"name": "AWS_ENDPOINT_URL_S3", "value": store.endpoint})
    if store.region:
        env.append({"name": "AWS_DEFAULT_REGION", "value": store.region})
    style = store.addressing_style or ("path" if store.endpoint else None)
    if style:
        env.append({"name": "INTERNLM_S3_ADDRESSING_STYLE", "value": style})
    if store.access_key_id is not None and store.secret_access_key is not None:
        env.append(secret_env("AWS_ACCESS_KEY_ID", store.access_key_id))
        env.append(secret_env("AWS_SECRET_ACCESS_KEY", store.secret_access_key))
    return env
