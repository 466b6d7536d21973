"""The API group and version, the constrained scalar types, the CEL rule helpers and
:class:`ApiModel`, the base of every model of ``internlm.io/v1alpha1``."""

from __future__ import annotations

import re
from typing import Annotated, Any, Final

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, WithJsonSchema
from pydantic.alias_generators import to_camel

GROUP = "internlm.io"
VERSION = "v1alpha1"
API_VERSION: Final = "internlm.io/v1alpha1"
CATEGORY = "internlm"

# ---------------------------------------------------------------------------------------------
# Constrained scalar types (bounds keep CEL cost estimates within the API server's budget)
# ---------------------------------------------------------------------------------------------

DNS_LABEL_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS_SUBDOMAIN_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
QUANTITY_PATTERN = r"^[0-9]+(\.[0-9]+)?(m|k|Ki|Mi|Gi|Ti|Pi|Ei|M|G|T|P|E)?$"
URI_PATTERN = r"^(s3|gs|oss|az|hdfs|https?)://[^\s]+$"
HTTP_URL_PATTERN = r"^https?://[^\s]+$"
HUB_REPO_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$"
ENV_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
IDENTIFIER_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"

ResourceName = Annotated[str, Field(min_length=1, max_length=253, pattern=DNS_SUBDOMAIN_PATTERN)]
"""A Kubernetes object name (DNS-1123 subdomain)."""
LabelName = Annotated[str, Field(min_length=1, max_length=63, pattern=DNS_LABEL_PATTERN)]
"""A DNS-1123 label (Service names, Kueue queue names)."""
Path = Annotated[str, Field(max_length=1024, pattern=r"^[^\x00]*$")]
"""A filesystem path inside a volume."""
ShortText = Annotated[str, Field(max_length=256)]
"""A short free-text string."""
Identifier = Annotated[str, Field(min_length=1, max_length=128, pattern=IDENTIFIER_PATTERN)]
"""A name such as an OpenCompass dataset config, a metric, a tool or a served model name."""


def _check_quantity(value: int | str) -> int | str:
    if isinstance(value, int):
        if value < 0:
            raise ValueError("quantity must not be negative")
        return value
    if not re.fullmatch(QUANTITY_PATTERN, value):
        raise ValueError(f"{value!r} is not a Kubernetes quantity such as 500m, 8, 64Gi")
    return value


Quantity = Annotated[
    int | str,
    AfterValidator(_check_quantity),
    WithJsonSchema(
        {
            "x-kubernetes-int-or-string": True,
            "pattern": QUANTITY_PATTERN,
            "maxLength": 64,
        }
    ),
]
"""A Kubernetes resource quantity (``8``, ``500m``, ``64Gi``)."""


# The API server enforces these CEL rules; where cheap, a pydantic validator on the model
# mirrors each one, so that the operator and the API server agree on what is valid.
def cel(rule: str, message: str, field_path: str | None = None) -> dict[str, str]:
    """One ``x-kubernetes-validations`` entry."""
    entry = {"rule": rule, "message": message}
    if field_path:
        entry["fieldPath"] = field_path
    return entry


def immutable(name: str) -> dict[str, Any]:
    """``json_schema_extra`` for a field that cannot change once the resource exists."""
    return {"x-kubernetes-validations": [cel("self == oldSelf", f"{name} is immutable")]}


def validations(*rules: dict[str, str]) -> dict[str, Any]:
    """``json_schema_extra`` carrying CEL rules for a model."""
    return {"x-kubernetes-validations": list(rules)}


class ApiModel(BaseModel):
    """Base of every API model: camelCase on the wire, unknown fields rejected."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        extra="forbid",
        protected_namespaces=(),
    )

    def to_dict(self) -> dict[str, Any]:
        """The wire form: camelCase keys, unset optional fields left out."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")
