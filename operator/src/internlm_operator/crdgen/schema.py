"""Pydantic JSON schema -> Kubernetes structural schema.

The API server accepts only *structural* schemas (OpenAPI v3.0 subset): every node has a
``type`` (or ``x-kubernetes-int-or-string`` / ``x-kubernetes-preserve-unknown-fields``), no
``$ref``, no ``anyOf``/``oneOf`` carrying types, ``nullable`` instead of a null type,
``additionalProperties`` only without ``properties``, no ``uniqueItems``, no tuple ``items``.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import core_schema

_DROP = {"title", "discriminator", "examples"}
_NULL = {"type": "null"}


class SchemaError(ValueError):
    """A pydantic schema construct that has no structural equivalent."""


class _Generator(GenerateJsonSchema):
    """Emits defaults made by a ``default_factory`` too (the full default object), so that the
    API server's defaulting fills nested objects and CEL rules see their fields."""

    def default_schema(self, schema: core_schema.WithDefaultSchema) -> JsonSchemaValue:
        factory = schema.get("default_factory")
        if factory is not None and not schema.get("default_factory_takes_data"):
            value = factory()  # type: ignore[call-arg]
            if isinstance(value, BaseModel):
                value = value.model_dump(by_alias=True, exclude_none=True, mode="json")
            schema = {**schema, "default": value}
            del schema["default_factory"]
        return super().default_schema(schema)


def structural_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The structural schema of a pydantic model (all ``$ref`` inlined)."""
    raw = model.model_json_schema(by_alias=True, mode="validation", schema_generator=_Generator)
    defs: dict[str, Any] = raw.pop("$defs", {})
    return _order(_convert(raw, defs, path=""))


_KEY_ORDER = [
    "description",
    "type",
    "format",
    "enum",
    "default",
    "nullable",
    "minimum",
    "exclusiveMinimum",
    "maximum",
    "exclusiveMaximum",
    "minLength",
    "maxLength",
    "pattern",
    "minItems",
    "maxItems",
    "maxProperties",
    "required",
    "properties",
    "additionalProperties",
    "items",
]


def _order(node: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``node`` with keys in a canonical order and no shared sub-objects."""

    def rank(key: str) -> tuple[int, str]:
        return (_KEY_ORDER.index(key), "") if key in _KEY_ORDER else (len(_KEY_ORDER), key)

    out: dict[str, Any] = {}
    for key in sorted(node, key=rank):
        value = node[key]
        if key == "properties":
            value = {name: _order(sub) for name, sub in value.items()}
        elif key in ("items", "additionalProperties") and isinstance(value, dict):
            value = _order(value)
        elif isinstance(value, list):
            value = [dict(v) if isinstance(v, dict) else v for v in value]
        elif isinstance(value, dict):
            value = dict(value)
        out[key] = value
    return out


def _resolve(ref: str, defs: dict[str, Any]) -> dict[str, Any]:
    prefix = "#/$defs/"
    if not ref.startswith(prefix):
        raise SchemaError(f"unsupported $ref {ref}")
    target: dict[str, Any] = defs[ref[len(prefix) :]]
    return target


def _merge(base: dict[str, Any], overlay: dict[str, Any]) -> dict[str, Any]:
    """``overlay`` keys win, except that CEL rule lists are concatenated."""
    out = dict(base)
    for key, value in overlay.items():
        if key == "x-kubernetes-validations" and key in out:
            out[key] = [*out[key], *value]
        else:
            out[key] = value
    return out


def _convert(node: dict[str, Any], defs: dict[str, Any], path: str) -> dict[str, Any]:
    node = {k: v for k, v in node.items() if k not in _DROP}

    if "$ref" in node:
        siblings = {k: v for k, v in node.items() if k != "$ref"}
        return _convert(_merge(_resolve(node["$ref"], defs), siblings), defs, path)

    for key in ("oneOf", "allOf"):
        if key in node:
            branches = node.pop(key)
            if len(branches) != 1:
                raise SchemaError(f"{path}: {key} with {len(branches)} branches")
            node = _merge(branches[0], node)
            return _convert(node, defs, path)

    if "anyOf" in node:
        branches = node.pop("anyOf")
        nullable = _NULL in branches
        rest = [b for b in branches if b != _NULL]
        if len(rest) == 1:
            node = _merge(rest[0], node)
        elif sorted(b.get("type", "") for b in rest) == ["integer", "string"]:
            node["x-kubernetes-int-or-string"] = True
        else:
            raise SchemaError(f"{path}: anyOf {rest} has no structural equivalent")
        if node.get("default", 0) is None:
            del node["default"]
        out = _convert(node, defs, path)
        if nullable:
            out["nullable"] = True
        return out

    if node.get("default", 0) is None:
        del node["default"]
    if "const" in node:
        node["enum"] = [node.pop("const")]
    if isinstance(node.get("exclusiveMinimum"), int | float) and not isinstance(
        node["exclusiveMinimum"], bool
    ):
        node["minimum"] = node.pop("exclusiveMinimum")
        node["exclusiveMinimum"] = True
    if isinstance(node.get("exclusiveMaximum"), int | float) and not isinstance(
        node["exclusiveMaximum"], bool
    ):
        node["maximum"] = node.pop("exclusiveMaximum")
        node["exclusiveMaximum"] = True
    if "uniqueItems" in node:
        raise SchemaError(f"{path}: uniqueItems is not allowed")

    if node.get("x-kubernetes-int-or-string"):
        node.pop("type", None)
        return node

    if "enum" in node and "type" not in node:
        types = {type(v) for v in node["enum"]}
        node["type"] = {str: "string", int: "integer", bool: "boolean"}.get(types.pop(), "string")

    if node.get("type") == "object" or "properties" in node:
        node["type"] = "object"
        props = node.get("properties")
        extra = node.pop("additionalProperties", None)
        if props is not None:
            node["properties"] = {
                name: _convert(sub, defs, f"{path}.{name}") for name, sub in props.items()
            }
            if not node.get("required"):
                node.pop("required", None)
        elif extra is True or extra is None or extra == {}:
            node["x-kubernetes-preserve-unknown-fields"] = True
        elif isinstance(extra, dict):
            node["additionalProperties"] = _convert(extra, defs, f"{path}.*")
        elif extra is False:
            node["x-kubernetes-preserve-unknown-fields"] = True
    elif node.get("type") == "array":
        items = node.get("items")
        if not isinstance(items, dict):
            raise SchemaError(f"{path}: array items must be one schema")
        node["items"] = _convert(items, defs, f"{path}[]")
    elif "type" not in node:
        raise SchemaError(f"{path}: no type in {node}")
    return node
