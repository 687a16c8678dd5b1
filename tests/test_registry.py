"""Tool specs, the registry, the exported catalog and the space-type allowlist."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from mana_cli.runtime import build_runtime_registry
from tool_registry.catalog import REGENERATE_COMMAND, TOOLS_CATALOG, render_tools_catalog
from tool_registry.context import ToolContext
from tool_registry.errors import ValidationFailed
from tool_registry.models import ToolInput, ToolOutput
from tool_registry.modules import build_registry
from tool_registry.registry import DuplicateToolError, Registry
from tool_registry.space_types import SpaceTypeCatalog
from tool_registry.spec import ToolSpec, ToolSpecError


class In(ToolInput):
    pass


class Out(ToolOutput):
    ok: bool


async def _handler(inp: In, ctx: ToolContext) -> Out:
    return Out(ok=True)


def _spec(name: str, module: str, **kw: Any) -> ToolSpec[In, Out]:
    base: dict[str, Any] = {
        "title": "T",
        "description": "D",
        "scope": "user-space",
        "policy_hint": "read",
    }
    base.update(kw)
    return ToolSpec(name=name, module=module, input=In, output=Out, handler=_handler, **base)


def test_duplicate_names_name_both_modules() -> None:
    registry = Registry([_spec("alpha.run", "alpha")])
    other = _spec("alpha.run", "alpha")
    object.__setattr__(other, "module", "beta")  # simulate a second module declaring it
    with pytest.raises(DuplicateToolError, match=r"'alpha'.*'beta'"):
        registry.register(other)


@pytest.mark.parametrize("name", ["alpha", "Alpha.run", "alpha.run.now", "alpha.", "alpha.9x"])
def test_bad_tool_names_are_rejected(name: str) -> None:
    with pytest.raises(ToolSpecError):
        _spec(name, "alpha")


def test_module_must_match_name_prefix() -> None:
    with pytest.raises(ToolSpecError, match=r"must start with 'beta\.'"):
        _spec("alpha.run", "beta")


def test_annotations_are_derived_from_the_hint() -> None:
    read = _spec("a.read", "a").annotations()
    write = _spec("a.write", "a", policy_hint="write").annotations()
    destroy = _spec("a.drop", "a", policy_hint="destructive", idempotent=True).annotations()
    assert read["readOnlyHint"] and not read["destructiveHint"] and read["idempotentHint"]
    assert not write["readOnlyHint"] and not write["destructiveHint"]
    assert not write["idempotentHint"]
    assert destroy["destructiveHint"] and destroy["idempotentHint"]
    assert not any(a["openWorldHint"] for a in (read, write, destroy))


def test_bundled_registry_shape() -> None:
    registry = build_registry()
    names = {s.name for s in registry.all()}
    assert {
        "spaces.list",
        "spaces.getPolicy",
        "me.listReferenceImages",
        "me.generateWithReference",
        "users.setTier",
    } <= names
    admin = [s.name for s in registry.all() if s.scope == "admin"]
    assert admin == ["users.setTier"]
    assert "users.setTier" not in {s.name for s in registry.exposable()}
    assert {
        "spaces",
        "habits",
        "todo",
        "notes",
        "journal",
        "mood",
        "calendar",
        "contacts",
        "me",
        "users",
    } <= set(registry.modules())
    generate = registry.get("me.generateWithReference")
    assert generate is not None and generate.requires == ("image-generator",)
    assert generate.annotations()["openWorldHint"] is True


def test_every_tool_has_model_facing_text() -> None:
    for spec in build_registry().all():
        assert len(spec.description) >= 40, spec.name
        assert spec.title[0].isupper(), spec.name


def test_exported_schemas_are_valid_json_schema() -> None:
    for entry in build_runtime_registry().export()["tools"]:
        for key in ("inputSchema", "outputSchema"):
            Draft202012Validator.check_schema(entry[key])
            assert entry[key]["type"] == "object", (entry["name"], key)


def test_checked_in_catalog_matches_the_registry() -> None:
    expected = render_tools_catalog(build_runtime_registry())
    current = TOOLS_CATALOG.read_text(encoding="utf-8") if TOOLS_CATALOG.exists() else ""
    assert current == expected, (
        f"{TOOLS_CATALOG.name} is out of date with the registry; regenerate it with "
        f"`{REGENERATE_COMMAND}` and commit the result"
    )


def test_space_type_allowlist_matches_the_design() -> None:
    catalog = SpaceTypeCatalog.load()
    registry = build_registry()
    shared = ["brand", "club", "family", "team", "practice"]
    for module in registry.modules():
        assert catalog.allows("personal", module)
    for space_type in shared:
        for module in ("me", "spaces", "calendar", "contacts", "notes"):
            assert catalog.allows(space_type, module), (space_type, module)
        for module in ("habits", "todo", "journal", "mood"):
            assert not catalog.allows(space_type, module), (space_type, module)
    assert [t for t in shared if catalog.allows(t, "missions")] == ["brand", "team"]


def test_bad_space_type_catalog_is_rejected_clearly(tmp_path: Path) -> None:
    path = tmp_path / "space-types.json"
    path.write_text(json.dumps({"spaceTypes": {"personal": {"modules": "*"}}}))
    with pytest.raises(ValidationFailed, match="missing: brand"):
        SpaceTypeCatalog.load(path)
    path.write_text(
        json.dumps(
            {
                "spaceTypes": {
                    t: {"modules": ["Bad Name"]}
                    for t in ["personal", "brand", "club", "family", "team", "practice"]
                }
            }
        )
    )
    with pytest.raises(ValidationFailed, match="invalid module names"):
        SpaceTypeCatalog.load(path)
    path.write_text("{not json")
    with pytest.raises(ValidationFailed, match="cannot read"):
        SpaceTypeCatalog.load(path)
