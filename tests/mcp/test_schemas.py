"""The output schemas the MCP server lists are flattened (no `$ref`, nullable as a type list)
but accept exactly what the specs' own schemas accept."""

from __future__ import annotations

import json
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from mcp_server import flat_schema
from tool_registry.modules import build_registry

SPECS = build_registry().exposable()


PROBES: tuple[Any, ...] = (None, "x", "daily", "great", "avatar", 3, 2.5, False, [], {})


def _example(node: Any) -> Any:
    """A representative instance of a (flattened) schema node: objects with every property,
    arrays with one item."""
    if not isinstance(node, dict):
        return None
    kind = node.get("type")
    kinds = kind if isinstance(kind, list) else [kind]
    if "object" in kinds:
        return {k: _example(v) for k, v in node.get("properties", {}).items()}
    if "array" in kinds:
        return [_example(node.get("items", {}))]
    if "enum" in node:
        return node["enum"][0]
    return {"string": "s", "integer": 1, "number": 1.0, "boolean": True}.get(str(kinds[0]))


def _variants(instance: Any) -> list[Any]:
    """The instance, and copies with one leaf (at any depth) replaced by each probe value."""
    out: list[Any] = [instance]
    if isinstance(instance, dict):
        for key, value in instance.items():
            for probe in PROBES:
                out.append({**instance, key: probe})
            for inner in _variants(value)[1:]:
                out.append({**instance, key: inner})
    elif isinstance(instance, list) and instance:
        for inner in _variants(instance[0])[1:]:
            out.append([inner])
    return out


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name)
def test_flat_output_schema_is_equivalent(spec: Any) -> None:
    original = spec.output_schema()
    flat = flat_schema(original)
    Draft202012Validator.check_schema(flat)
    assert "$ref" not in json.dumps(flat)
    strict = Draft202012Validator(original)
    fast = Draft202012Validator(flat)
    samples = [None, {}, [], "x", 1, *_variants(_example(flat))]
    assert strict.is_valid(_example(flat))
    for instance in samples:
        assert strict.is_valid(instance) == fast.is_valid(instance), instance


def test_flat_schema_merges_nullable_and_keeps_enums() -> None:
    schema: dict[str, Any] = {
        "type": "object",
        "properties": {
            "kind": {"anyOf": [{"enum": ["a", "b"], "type": "string"}, {"type": "null"}]},
            "n": {"anyOf": [{"type": "number"}, {"type": "null"}], "default": None},
            "c": {"anyOf": [{"const": "z"}, {"type": "null"}]},
        },
    }
    flat: dict[str, Any] = flat_schema(schema)["properties"]
    assert flat["kind"] == {"enum": ["a", "b", None], "type": ["string", "null"]}
    assert flat["n"] == {"default": None, "type": ["number", "null"]}
    assert flat["c"] == schema["properties"]["c"]  # const is not type-scoped: left alone
    assert Draft202012Validator(flat_schema(schema)).is_valid({"kind": None, "n": None})
    assert not Draft202012Validator(flat_schema(schema)).is_valid({"kind": "c"})


def test_recursive_schema_is_left_alone() -> None:
    schema = {
        "$defs": {"Node": {"type": "object", "properties": {"next": {"$ref": "#/$defs/Node"}}}},
        "$ref": "#/$defs/Node",
    }
    assert flat_schema(schema) == schema
