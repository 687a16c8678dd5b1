"""The persona catalog: the shipped file validates, and each kind of bad catalog is rejected with
a message naming the persona and the field."""

from __future__ import annotations

import copy
import json
import re
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from personas.catalog import (
    ARCHETYPES,
    FORBIDDEN_MODULES,
    PERSONAS_SCHEMA,
    CatalogError,
    PersonaCatalog,
    load_catalog,
    parse_catalog,
    persona_modules,
)
from tool_registry.modules import bundled_tools
from tool_registry.registry import Registry

Edit = Callable[[dict[str, Any]], None]


def test_schema_is_valid_json_schema() -> None:
    schema = json.loads(PERSONAS_SCHEMA.read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)


def test_shipped_catalog_validates(catalog: PersonaCatalog, registry: Registry) -> None:
    assert len(catalog.personas) == 10
    counts = Counter(p.archetype for p in catalog.personas)
    assert counts == {
        "adhd-student": 2,
        "ceo-busy": 2,
        "creative-parent": 2,
        "solo-dev": 1,
        "researcher": 1,
        "freelancer": 1,
        "overwhelmed-newbie": 1,
    }
    assert set(counts) == set(ARCHETYPES)
    usable = set(persona_modules(registry))
    for p in catalog.personas:
        assert p.email.endswith("@mana.test")
        assert p.cadence in ("daily", "weekdays", "hourly")
        assert set(p.module_mix) <= usable
        assert abs(sum(p.module_mix.values()) - 1) <= 0.01
        assert len(p.system_prompt) > 200, p.name


def test_shipped_catalog_declares_the_shared_spaces(catalog: PersonaCatalog) -> None:
    by_type = Counter(s.type for s in catalog.shared_spaces)
    assert by_type == {"family": 2, "team": 1, "practice": 1, "brand": 1}
    archetype = {p.email: p.archetype for p in catalog.personas}
    families = [s for s in catalog.shared_spaces if s.type == "family"]
    assert all(len(s.members) == 2 for s in families)
    members = [m.email for s in families for m in s.members]
    assert len(set(members)) == 4, "two different pairs"
    (team,) = [s for s in catalog.shared_spaces if s.type == "team"]
    assert sorted(archetype[m.email] for m in team.members) == ["ceo-busy", "ceo-busy"]
    (practice,) = [s for s in catalog.shared_spaces if s.type == "practice"]
    assert [archetype[m.email] for m in practice.members] == ["solo-dev"]
    (brand,) = [s for s in catalog.shared_spaces if s.type == "brand"]
    assert [archetype[m.email] for m in brand.members] == ["freelancer"]
    for s in catalog.shared_spaces:
        assert sum(1 for m in s.members if m.role == "owner") == 1


def test_catalog_holds_no_passwords(raw_catalog: dict[str, Any], registry: Registry) -> None:
    text = json.dumps(raw_catalog).lower()
    assert 'password"' not in text
    raw_catalog["personas"][0]["password"] = "hunter22hunter22"
    with pytest.raises(
        CatalogError, match=r'persona "Maya Chen" \(#1\): unknown field\(s\) password'
    ):
        parse_catalog(raw_catalog, registry)


def _set(index: int, key: str, value: Any) -> Edit:
    def edit(raw: dict[str, Any]) -> None:
        raw["personas"][index][key] = value

    return edit


def _duplicate_email(raw: dict[str, Any]) -> None:
    raw["personas"][4]["email"] = raw["personas"][1]["email"]


BAD: list[tuple[str, Edit, str]] = [
    (
        "wrong email domain",
        _set(0, "email", "maya.chen@gmail.com"),
        r'persona "Maya Chen" \(#1\): field email: .*must .*end.* in @mana\.test',
    ),
    (
        "unknown module",
        _set(2, "moduleMix", {"calendar": 0.5, "gardening": 0.5}),
        r"persona \"Priya Raman\" \(#3\): field moduleMix: unknown module 'gardening'",
    ),
    (
        "weights do not sum to 1",
        _set(2, "moduleMix", {"calendar": 0.5, "todo": 0.3}),
        r'persona "Priya Raman" \(#3\): field moduleMix: weights sum to 0\.80, expected 1 ± 0\.01',
    ),
    (
        "weights sum past the tolerance",
        _set(3, "moduleMix", {"calendar": 0.52, "notes": 0.5}),
        r'persona "Daniel Okafor" \(#4\): field moduleMix: weights sum to 1\.02',
    ),
    (
        "duplicate email",
        _duplicate_email,
        r'persona "Lena Weber" \(#5\): field email: duplicate email jonas\.weber@mana\.test '
        r'\(also used by persona "Jonas Weber" \(#2\)\)',
    ),
    (
        "bad cadence",
        _set(1, "cadence", "monthly"),
        r"persona \"Jonas Weber\" \(#2\): field cadence: 'monthly' is not one of daily, "
        r"weekdays, hourly",
    ),
    (
        "unknown archetype",
        _set(6, "archetype", "wizard"),
        r"persona \"Grace Silva\" \(#7\): field archetype: 'wizard' is not one of",
    ),
    (
        "missing field",
        lambda raw: raw["personas"][8].pop("systemPrompt"),
        r'persona "Amara Nwosu" \(#9\): field systemPrompt: missing',
    ),
    (
        "admin-only module",
        _set(9, "moduleMix", {"users": 0.5, "notes": 0.5}),
        r"persona \"Rosa Delgado\" \(#10\): field moduleMix: module 'users' has no tools",
    ),
    (
        "missions are never offered",
        _set(9, "moduleMix", {"missions": 0.5, "notes": 0.5}),
        r"persona \"Rosa Delgado\" \(#10\): field moduleMix: module 'missions' is never offered",
    ),
    (
        "shared space member outside the catalog",
        lambda raw: raw["sharedSpaces"][0]["members"].append(
            {"email": "stranger@mana.test", "role": "member"}
        ),
        r'shared space "weber-family" \(#1\): field members\.2\.email: stranger@mana\.test is '
        r"not a persona",
    ),
    (
        "shared space without an owner",
        lambda raw: raw["sharedSpaces"][2]["members"][0].update(role="admin"),
        r'shared space "northwind-leadership" \(#3\): field members: needs exactly one owner',
    ),
]


@pytest.mark.parametrize(("edit", "pattern"), [(e, p) for _, e, p in BAD], ids=[b[0] for b in BAD])
def test_bad_catalog_is_rejected_naming_persona_and_field(
    raw_catalog: dict[str, Any], registry: Registry, edit: Edit, pattern: str
) -> None:
    bad = copy.deepcopy(raw_catalog)
    edit(bad)
    with pytest.raises(CatalogError) as info:
        parse_catalog(bad, registry)
    assert any(re.search(pattern, line) for line in info.value.problems), info.value.problems


def test_every_problem_is_reported_at_once(raw_catalog: dict[str, Any], registry: Registry) -> None:
    _set(0, "email", "maya@example.com")(raw_catalog)
    _set(1, "cadence", "yearly")(raw_catalog)
    _set(2, "moduleMix", {"todo": 0.2})(raw_catalog)
    with pytest.raises(CatalogError) as info:
        parse_catalog(raw_catalog, registry)
    whos = [line.split(":")[0] for line in info.value.problems]
    assert whos == [
        'persona "Maya Chen" (#1)',
        'persona "Jonas Weber" (#2)',
        'persona "Priya Raman" (#3)',
    ]
    assert "invalid persona catalog" in str(info.value)


def test_modules_are_checked_against_the_registry_passed_in(raw_catalog: dict[str, Any]) -> None:
    without_todo = Registry([s for s in bundled_tools() if s.module != "todo"])
    with pytest.raises(CatalogError, match="unknown module 'todo'"):
        parse_catalog(raw_catalog, without_todo)


def test_forbidden_modules_are_never_persona_modules(registry: Registry) -> None:
    assert not FORBIDDEN_MODULES & set(persona_modules(registry))
    assert "users" not in persona_modules(registry)  # admin tools only


def test_load_catalog_reports_bad_json(tmp_path: Path, registry: Registry) -> None:
    path = tmp_path / "personas.json"
    path.write_text("{not json", encoding="utf-8")
    with pytest.raises(CatalogError, match="not valid JSON"):
        load_catalog(registry, path)
