"""The generated CRDs: byte-for-byte in sync with crds/, and structural everywhere."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from internlm_operator.api.v1alpha1 import KINDS
from internlm_operator.crdgen import build_crd, file_name, render_all
from internlm_operator.crdgen.__main__ import check, main

REPO = Path(__file__).resolve().parents[2]
CRDS = REPO / "crds"

# Keywords a structural schema node may carry (apiextensions.k8s.io/v1 JSONSchemaProps that
# crdgen emits); anything else means a pydantic construct leaked through.
ALLOWED = (
    {"description", "type", "format", "enum", "default", "nullable"}
    | {"minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"}  # numbers
    | {"minLength", "maxLength", "pattern"}  # strings
    | {"minItems", "maxItems", "items"}  # arrays
    | {"maxProperties", "required", "properties", "additionalProperties"}  # objects
    | {
        "x-kubernetes-validations",
        "x-kubernetes-list-type",
        "x-kubernetes-list-map-keys",
        "x-kubernetes-preserve-unknown-fields",
        "x-kubernetes-int-or-string",
    }
)
FORBIDDEN = {"$ref", "$defs", "anyOf", "oneOf", "allOf", "not", "uniqueItems", "const", "title"}


def walk(node: dict[str, Any], path: str, problems: list[str], root: bool = False) -> None:
    for key in node:
        if key in FORBIDDEN:
            problems.append(f"{path}: forbidden keyword {key}")
        elif key not in ALLOWED:
            problems.append(f"{path}: unexpected keyword {key}")
    free = node.get("x-kubernetes-preserve-unknown-fields") is True
    int_or_string = node.get("x-kubernetes-int-or-string") is True
    if "type" not in node and not (free or int_or_string):
        problems.append(f"{path}: no type")
    if not node.get("description") and not root and path.split(".")[-1] != "metadata":
        problems.append(f"{path}: no description")
    if "properties" in node and "additionalProperties" in node:
        problems.append(f"{path}: additionalProperties beside properties")
    if node.get("additionalProperties") in (True, False):
        problems.append(f"{path}: boolean additionalProperties")
    if "items" in node and not isinstance(node["items"], dict):
        problems.append(f"{path}: items must be a single schema")
    if node.get("type") == "array" and "maxItems" not in node:
        problems.append(f"{path}: list without maxItems (CEL cost)")
    if (
        node.get("type") == "string"
        and "maxLength" not in node
        and "enum" not in node
        and "format" not in node
        and not path.endswith((".apiVersion", ".kind"))
    ):
        problems.append(f"{path}: string without maxLength (CEL cost)")
    if isinstance(node.get("exclusiveMinimum"), int | float) and not isinstance(
        node["exclusiveMinimum"], bool
    ):
        problems.append(f"{path}: numeric exclusiveMinimum (OpenAPI v3.0 wants a boolean)")
    if node.get("x-kubernetes-list-type") == "map":
        item = node["items"]
        for key in node.get("x-kubernetes-list-map-keys", []):
            sub = item["properties"].get(key)
            if sub is None or (key not in item.get("required", []) and "default" not in sub):
                problems.append(f"{path}: list-map key {key} must be required or defaulted")
    for rule in node.get("x-kubernetes-validations", []):
        if not rule.get("message"):
            problems.append(f"{path}: CEL rule without message: {rule['rule']}")
    for name, sub in node.get("properties", {}).items():
        walk(sub, f"{path}.{name}", problems)
    if isinstance(node.get("items"), dict):
        walk(node["items"], f"{path}[]", problems)
    if isinstance(node.get("additionalProperties"), dict):
        walk(node["additionalProperties"], f"{path}{{}}", problems)


@pytest.mark.parametrize("kind", list(KINDS))
def test_schema_is_structural(kind: str) -> None:
    schema = build_crd(KINDS[kind])["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    problems: list[str] = []
    walk(schema, kind, problems, root=True)
    assert not problems, "\n".join(problems)


def test_walker_catches_forbidden_constructs() -> None:
    bad = {
        "type": "object",
        "description": "x",
        "properties": {
            "a": {"$ref": "#/$defs/A"},
            "b": {"anyOf": [{"type": "string"}, {"type": "null"}], "description": "b"},
            "c": {"type": "array", "items": [{"type": "string"}], "description": "c"},
            "d": {"type": "array", "uniqueItems": True, "description": "d", "maxItems": 1},
            "e": {"type": "object", "properties": {}, "additionalProperties": False},
        },
    }
    problems: list[str] = []
    walk(bad, "bad", problems, root=True)
    text = "\n".join(problems)
    for expected in (
        "bad.a: forbidden keyword $ref",
        "bad.b: forbidden keyword anyOf",
        "bad.c: items must be a single schema",
        "bad.d: forbidden keyword uniqueItems",
        "bad.e: additionalProperties beside properties",
        "bad.e: no description",
        "bad.a: no type",
    ):
        assert expected in text


@pytest.mark.parametrize("name", sorted(render_all()))
def test_golden_files_match_generator(name: str) -> None:
    committed = (CRDS / name).read_text(encoding="utf-8")
    assert committed == render_all()[name], f"crds/{name} is stale: run `make crds`"


def test_generation_is_deterministic() -> None:
    assert render_all() == render_all()


def test_check_reports_drift(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--out", str(tmp_path)]) == 0
    assert check(tmp_path) == []
    assert main(["--check", str(tmp_path)]) == 0
    target = tmp_path / file_name(KINDS["TrainJob"])
    target.write_text(target.read_text().replace("ZeRO stage", "ZeRO level"))
    (tmp_path / "internlm.io_olds.yaml").write_text("{}\n")
    capsys.readouterr()
    assert main(["--check", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "-" in out and "ZeRO level" in out
    assert "internlm.io_olds.yaml: stale" in out


@pytest.mark.parametrize("kind", list(KINDS))
def test_crd_metadata(kind: str) -> None:
    info = KINDS[kind]
    crd = yaml.safe_load(render_all()[file_name(info)])
    assert crd["metadata"]["name"] == f"{info.plural}.internlm.io"
    names = crd["spec"]["names"]
    assert names["shortNames"] == [info.short_name]
    assert names["categories"] == ["internlm"]
    assert names["listKind"] == f"{kind}List"
    version = crd["spec"]["versions"][0]
    assert version["name"] == "v1alpha1"
    assert "status" in version["subresources"]
    assert ("scale" in version["subresources"]) == (kind in ("ModelServe", "Agent"))
    columns = [c["name"] for c in version["additionalPrinterColumns"]]
    assert columns[0] == "Phase" and columns[-1] == "Age"
    conditions = version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"][
        "conditions"
    ]
    assert conditions["x-kubernetes-list-type"] == "map"
    assert conditions["x-kubernetes-list-map-keys"] == ["type"]


def test_short_names_are_distinct_and_not_events() -> None:
    shorts = [i.short_name for i in KINDS.values()]
    assert sorted(shorts) == ["ag", "er", "ft", "ms", "tj"]
    assert "ev" not in shorts


def test_immutable_fields_on_batch_kinds() -> None:
    def immutables(kind: str) -> set[str]:
        spec = build_crd(KINDS[kind])["spec"]["versions"][0]["schema"]["openAPIV3Schema"][
            "properties"
        ]["spec"]["properties"]
        return {
            name
            for name, sub in spec.items()
            if any(r["rule"] == "self == oldSelf" for r in sub.get("x-kubernetes-validations", []))
        }

    assert {"framework", "model", "nodes", "data", "output"} <= immutables("TrainJob")
    assert {"model", "method", "dataset", "nodes", "output"} <= immutables("FineTune")
    assert {"target"} <= immutables("EvalRun")
    assert immutables("ModelServe") == set()
