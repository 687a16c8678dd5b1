"""Tool specs, the registry, the exported catalog and the space-type allowlist."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import pytest
from jsonschema import Draft202012Validator
from pydantic import ValidationError

from mana_cli.runtime import build_runtime_registry
from tool_registry.catalog import REGENERATE_COMMAND, TOOLS_CATALOG, render_tools_catalog
from tool_registry.context import ToolContext
from tool_registry.errors import ValidationFailed
from tool_registry.models import Clear, ToolInput, ToolOutput, UpdateInput
from tool_registry.modules import build_registry
from tool_registry.registry import DuplicateToolError, Registry
from tool_registry.space_types import SpaceTypeCatalog
from tool_registry.spec import ToolSpec, ToolSpecError


class In(ToolInput):
    pass


class Out(ToolOutput):
    ok: bool


class Edit(UpdateInput):
    """An update input with two clearable optional fields and a required one."""

    id: str
    title: str | None = None
    due_on: str | None = None
    note: str | None = None
    clear: Clear[Literal["dueOn", "note"]] = None


class EditOne(UpdateInput):
    id: str
    note: str | None = None
    clear: Clear[Literal["note"]] = None


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


# -- UpdateInput / Clear: the shared `clear` convention of update tools -------------------------


def _errors(args: dict[str, Any]) -> list[tuple[str, str]]:
    with pytest.raises(ValidationError) as caught:
        Edit.model_validate(args)
    return [
        (".".join(str(p) for p in e["loc"]), e["msg"])
        for e in caught.value.errors(include_url=False)
    ]


def test_update_input_changes_merge_given_and_cleared_fields() -> None:
    assert Edit.clearable == ("dueOn", "note")
    both = Edit.model_validate({"id": "r1", "title": "T", "clear": ["note"]})
    assert both.changes() == {"title": "T", "note": None}
    only_clear = Edit.model_validate({"id": "r1", "clear": ["dueOn", "note"]})
    assert only_clear.changes() == {"dueOn": None, "note": None}
    # Omitted and null fields, and a null or empty clear, change nothing.
    for args in (
        {"id": "r1"},
        {"id": "r1", "title": None, "dueOn": None, "note": None, "clear": None},
        {"id": "r1", "clear": []},
    ):
        assert Edit.model_validate(args).changes() == {}, args
    assert Edit.model_validate({"id": "r1", "dueOn": "2030-01-01"}).changes() == {
        "dueOn": "2030-01-01"
    }


def test_a_field_cannot_be_set_and_cleared_at_once() -> None:
    errors = _errors({"id": "r1", "dueOn": "2030-01-01", "note": "n", "clear": ["dueOn", "note"]})
    assert [loc for loc, _ in errors] == ["clear", "clear"]
    assert "'dueOn' is given a value and listed in clear" in errors[0][1]
    assert "'note' is given a value and listed in clear" in errors[1][1]
    # A null value next to the same name in clear is not a conflict: null means "unchanged".
    assert Edit.model_validate({"id": "r1", "note": None, "clear": ["note"]}).changes() == {
        "note": None
    }


@pytest.mark.parametrize(
    ("clear", "loc"),
    [
        (["title"], "clear.0"),  # not clearable (required in the record)
        (["id"], "clear.0"),
        (["due_on"], "clear.0"),  # python name, not the wire name
        (["note", "colour"], "clear.1"),
        ("note", "clear"),  # not a list
        (["note", "note"], "clear"),  # each name once
    ],
)
def test_clear_accepts_only_the_declared_names_once(clear: Any, loc: str) -> None:
    assert [where for where, _ in _errors({"id": "r1", "clear": clear})] == [loc]


def test_clear_schema_is_a_unique_enum_list_with_a_how_to() -> None:
    for model, names in ((Edit, ["dueOn", "note"]), (EditOne, ["note"])):
        schema = model.model_json_schema(by_alias=True, mode="validation")
        Draft202012Validator.check_schema(schema)
        prop = schema["properties"]["clear"]
        array = next(b for b in prop["anyOf"] if b.get("type") == "array")
        assert array["items"] == {"enum": names, "type": "string"}  # never `const`
        assert array["uniqueItems"] is True
        assert {"type": "null"} in prop["anyOf"]
        assert "clear" not in schema.get("required", [])
        assert f'e.g. ["{names[0]}"]' in prop["description"]
        assert "left unchanged" in prop["description"]
        validator = Draft202012Validator(schema)
        assert validator.is_valid({"id": "r", "clear": names})
        assert not validator.is_valid({"id": "r", "clear": [names[0], names[0]]})
        assert not validator.is_valid({"id": "r", "clear": ["title"]})


def test_clear_must_name_fields_of_the_model() -> None:
    with pytest.raises(TypeError, match=r"Broken\.clear must list fields.*'colour'"):

        class Broken(UpdateInput):
            id: str
            color: str | None = None
            clear: Clear[Literal["colour"]] = None


def _nullable_optional(schema: dict[str, Any], name: str) -> bool:
    prop = schema["properties"].get(name)
    if prop is None or name in schema.get("required", []):
        return False
    kinds = [b.get("type") for b in prop.get("anyOf", [prop])]
    return "null" in kinds or (isinstance(prop.get("type"), list) and "null" in prop["type"])


def test_update_tools_clear_exactly_their_records_optional_fields() -> None:
    """Every `*.update` tool can clear each field it can set that the record may hold as null,
    and nothing else (required fields never); and its description says how."""
    updates = [s for s in build_registry().exposable() if s.verb == "update"]
    assert {s.name for s in updates} >= {
        "calendar.update",
        "contacts.update",
        "habits.update",
        "journal.update",
        "mood.update",
        "notes.update",
        "todo.update",
    }
    clearable: dict[str, list[str]] = {}
    for spec in updates:
        inp, out = spec.input_schema(), spec.output_schema()
        settable = [n for n in inp["properties"] if n not in ("id", "clear")]
        expected = [n for n in settable if _nullable_optional(out, n)]
        clear = inp["properties"].get("clear")
        names = [] if clear is None else clear["anyOf"][0]["items"]["enum"]
        assert sorted(names) == sorted(expected), spec.name
        if names:
            # The description shows a call that clears one of the tool's own fields.
            assert any(f'clear: ["{n}"]' in spec.description for n in names), spec.name
            assert "null fields keep their value" in spec.description, spec.name
            clearable[spec.name] = names
    assert clearable == {
        "calendar.update": ["location", "notes"],
        "contacts.update": ["email", "phone", "notes", "birthday"],
        "habits.update": ["description", "color"],
        "journal.update": ["moodTag"],
        "mood.update": ["note"],
        "todo.update": ["dueDate", "notes"],
    }
