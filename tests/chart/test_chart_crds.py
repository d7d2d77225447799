"""The generated CRDs are structural and carry what the API server needs to validate and cost CEL."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from bakeoff_operator import crdgen

CRDS = crdgen.crds()
ALLOWED_KEYS = {
    "type",
    "description",
    "properties",
    "required",
    "items",
    "additionalProperties",
    "enum",
    "default",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "minLength",
    "maxLength",
    "pattern",
    "minItems",
    "maxItems",
    "maxProperties",
    "format",
    "x-kubernetes-int-or-string",
    "x-kubernetes-validations",
    "x-kubernetes-list-type",
    "x-kubernetes-list-map-keys",
}


def _nodes(schema: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, schema
    for name, sub in schema.get("properties", {}).items():
        yield from _nodes(sub, f"{path}.{name}")
    if "items" in schema:
        yield from _nodes(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from _nodes(schema["additionalProperties"], f"{path}{{}}")


def _schema(name: str) -> dict[str, Any]:
    schema: dict[str, Any] = CRDS[name]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


@pytest.mark.parametrize("name", sorted(CRDS))
def test_schema_is_structural_and_bounded(name: str) -> None:
    for path, node in _nodes(_schema(name)):
        if path == ".metadata":
            continue
        assert set(node) <= ALLOWED_KEYS, f"{name}{path}: {set(node) - ALLOWED_KEYS}"
        assert "type" in node or node.get("x-kubernetes-int-or-string"), f"{name}{path} has no type"
        if node.get("type") == "string" and path not in {".apiVersion", ".kind"}:
            # CEL cost estimation needs a bound on every string.
            assert "maxLength" in node or "enum" in node or node.get("format") == "date-time", f"{name}{path}"
        if node.get("type") == "array":
            assert "maxItems" in node, f"{name}{path}"
        if node.get("type") == "object" and "additionalProperties" in node:
            assert "maxProperties" in node, f"{name}{path}"
        if path.count(".") > 1 and not path.endswith(("[]", "{}")):
            assert node.get("description"), f"{name}{path} has no description"


def test_names_short_names_and_categories() -> None:
    names = {doc["spec"]["names"]["kind"]: doc["spec"] for doc in CRDS.values()}
    assert names["ModelVariant"]["names"]["shortNames"] == ["mv"]
    assert names["BakeOff"]["names"]["shortNames"] == ["bo"]
    assert names["GPUClass"]["names"]["shortNames"] == ["gpuc"]
    assert names["GPUClass"]["scope"] == "Cluster"
    assert {spec["names"]["categories"][0] for spec in names.values()} == {"bakeoff"}


def test_model_variant_subresources_and_columns() -> None:
    version = CRDS["bakeoff.dev_modelvariants.yaml"]["spec"]["versions"][0]
    assert version["subresources"]["scale"] == {
        "specReplicasPath": ".spec.replicas",
        "statusReplicasPath": ".status.replicas",
        "labelSelectorPath": ".status.selector",
    }
    columns = [c["name"] for c in version["additionalPrinterColumns"]]
    assert columns[:7] == ["Format", "GPU", "TP", "Ready", "Replicas", "Endpoint", "Cost/1M"]
    assert columns[-1] == "Age"


def test_conditions_are_a_map_keyed_by_type() -> None:
    for name in CRDS:
        conditions = _schema(name)["properties"]["status"]["properties"]["conditions"]
        assert conditions["x-kubernetes-list-type"] == "map"
        assert conditions["x-kubernetes-list-map-keys"] == ["type"]
        assert "type" in conditions["items"]["required"]


def test_int_or_auto_fields() -> None:
    tp = _schema("bakeoff.dev_modelvariants.yaml")["properties"]["spec"]["properties"]["tensorParallelSize"]
    assert tp["x-kubernetes-int-or-string"] is True
    assert tp["default"] == "auto"
    assert "type(self) == string" in tp["x-kubernetes-validations"][0]["rule"]


def test_cross_field_rules_are_in_the_crds() -> None:
    rules = " ".join(
        r["rule"]
        for name in CRDS
        for _, node in _nodes(_schema(name))
        for r in node.get("x-kubernetes-validations", [])
    )
    for fragment in (
        "self.minReplicas <= self.maxReplicas",
        "self.mambaLayers > 0",
        "has(self.variants) != has(self.variantSelector)",
        "!self.scaleToZero || self.minReplicas == 0",
        "self.format != 'fp8' || !(self.gpuClass in ['a100-80gb', 'a10g', 'a6000'])",
    ):
        assert fragment in rules
