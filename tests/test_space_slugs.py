"""Space slugs: one rule on every surface that creates a space (accounts, CLI, persona catalog),
valid derivation from names, and space references resolved id first, then slug."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from mana_cli.main import main
from personas.catalog import PERSONAS_CATALOG, PERSONAS_SCHEMA, CatalogError, parse_catalog
from tests.mcp.support import Installation
from tool_registry.errors import ConflictError, ValidationFailed
from tool_registry.modules import build_registry
from tool_registry.store.accounts import (
    SLUG_MAX_LENGTH,
    SLUG_PATTERN,
    slug_problem,
    slugify,
)
from tool_registry.testing import ToolKit

VALID = ["a", "7", "weber-family", "team-2026", "a" * SLUG_MAX_LENGTH, "x-y-z", "a--b"]
INVALID = [
    "",
    "Weber-Family",
    "weber_family",
    "weber family",
    "-leading",
    "trailing-",
    "a" * (SLUG_MAX_LENGTH + 1),
    "café",
    "ｗｅｂｅｒ",
    "team/1",
]


@pytest.mark.parametrize("slug", VALID)
def test_valid_slugs(slug: str) -> None:
    assert slug_problem(slug) is None


@pytest.mark.parametrize("slug", INVALID)
def test_invalid_slugs_are_named_with_the_rule(slug: str) -> None:
    problem = slug_problem(slug)
    assert problem is not None and repr(slug) in problem and "lower-case" in problem


async def test_a_slug_shaped_like_a_space_id_is_refused(mana_kit: ToolKit) -> None:
    owner = await mana_kit.user()
    other = await mana_kit.space(owner)
    assert other.id.startswith("spc_")
    for slug in (other.id, other.id.replace("_", "-"), "spc-" + "0" * 26):
        with pytest.raises(ValidationFailed, match="slug"):
            await mana_kit.accounts.create_space(owner.id, type_="team", name="T", slug=slug)


@pytest.mark.parametrize("slug", INVALID)
async def test_accounts_refuse_invalid_slugs(mana_kit: ToolKit, slug: str) -> None:
    owner = await mana_kit.user()
    with pytest.raises(ValidationFailed, match="slug"):
        await mana_kit.accounts.create_space(owner.id, type_="team", name="T", slug=slug)


async def test_slugs_are_unique(mana_kit: ToolKit) -> None:
    owner = await mana_kit.user()
    await mana_kit.accounts.create_space(owner.id, type_="team", name="A", slug="crew")
    with pytest.raises(ConflictError, match="crew"):
        await mana_kit.accounts.create_space(owner.id, type_="club", name="B", slug="crew")


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Weber Family", "weber-family"),
        ("  Café Noir!!  ", "cafe-noir"),
        ("Ärzte & Söhne GmbH", "arzte-sohne-gmbh"),
        ("家族", "space"),
        ("---", "space"),
        ("spc_01jc0000000000000000000000", "space-spc-01jc0000000000000000000000"),
    ],
)
def test_derived_slugs(name: str, expected: str) -> None:
    assert slugify(name) == expected
    assert slug_problem(expected) is None


def test_long_names_derive_valid_slugs() -> None:
    # The cut must not leave a trailing hyphen at character 48.
    name = "a" * 47 + " tail of a very long name"
    slug = slugify(name)
    assert slug == "a" * 47 and slug_problem(slug) is None


async def test_derived_slugs_stay_valid_on_collision(mana_kit: ToolKit) -> None:
    owner = await mana_kit.user()
    name = "The very long name of the neighbourhood gardening club of Springfield"
    slugs = [
        (await mana_kit.accounts.create_space(owner.id, type_="club", name=name)).slug
        for _ in range(12)
    ]
    assert len(set(slugs)) == 12
    for slug in slugs:
        assert slug_problem(slug) is None, slug
    assert slugs[1].endswith("-2") and slugs[11].endswith("-12")


# -- resolution: id first, then slug ------------------------------------------------------------


async def _legacy_space(kit: ToolKit, owner_id: str, slug: str) -> str:
    """A space row as an older database may hold it: its slug equals another space's id."""
    space_id = "spc_legacy00000000000000000000"

    def work(conn: Any) -> None:
        conn.execute(
            "INSERT INTO spaces (id, slug, name, type, created_by, created_at) "
            "VALUES (?, ?, 'Legacy', 'team', ?, '2020-01-01T00:00:00.000000Z')",
            (space_id, slug, owner_id),
        )
        conn.execute(
            "INSERT INTO memberships (space_id, user_id, role, created_at) "
            "VALUES (?, ?, 'owner', '2020-01-01T00:00:00.000000Z')",
            (space_id, owner_id),
        )

    await kit.db.write(work)
    return space_id


async def test_a_reference_is_an_id_first_then_a_slug(mana_kit: ToolKit) -> None:
    owner = await mana_kit.user()
    target = await mana_kit.accounts.create_space(owner.id, type_="team", name="Target")
    legacy = await _legacy_space(mana_kit, owner.id, slug=target.id)

    resolved = await mana_kit.accounts.resolve_space(target.id)
    assert resolved is not None and resolved.id == target.id
    access = await mana_kit.accounts.access(owner.id, target.id)
    assert access is not None and access.space.id == target.id
    # The slug still names its own space when no space has it as an id.
    by_slug = await mana_kit.accounts.resolve_space(target.slug)
    assert by_slug is not None and by_slug.id == target.id
    legacy_access = await mana_kit.accounts.access(owner.id, "spc_legacy00000000000000000000")
    assert legacy_access is not None and legacy_access.space.id == legacy

    # Through the pipeline (what MCP tools and the CLI use): the call acts in the id's space.
    created = await mana_kit.call_ok(owner, target.id, "notes.create", {"title": "here"})
    assert await mana_kit.record_space(created["id"]) == target.id


# -- surfaces -----------------------------------------------------------------------------------


def test_cli_refuses_an_invalid_slug_in_one_line(
    database_target: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    flags = Installation(tmp_path, database_target).flags()
    assert main([*flags, "init"]) == 0
    assert main([*flags, "users", "create", "--email", "ana@example.test"]) == 0
    capsys.readouterr()
    base = [*flags, "spaces", "create", "--as", "ana@example.test", "--type", "team"]
    assert main([*base, "--name", "Crew", "--slug", "Crew_One"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("mana: error: slug 'Crew_One' is not valid")
    assert main([*base, "--name", "Crew", "--slug", "spc-" + "1" * 26]) == 1
    assert "shaped like a space id" in capsys.readouterr().err
    assert main([*base, "--name", "Crew", "--slug", "crew-one"]) == 0
    assert "created team space crew-one" in capsys.readouterr().out
    assert main([*base, "--name", "Ärzte & Söhne"]) == 0
    assert "created team space arzte-sohne" in capsys.readouterr().out


def _catalog_with_slug(slug: str) -> dict[str, Any]:
    raw: dict[str, Any] = json.loads(PERSONAS_CATALOG.read_text(encoding="utf-8"))
    edited = copy.deepcopy(raw)
    edited["sharedSpaces"][0]["slug"] = slug
    return edited


@pytest.mark.parametrize(
    ("slug", "message"),
    [
        ("Weber_Family", "slug 'Weber_Family' is not valid"),
        ("w", None),
        ("spc-" + "2" * 26, "shaped like a space id"),
        ("trailing-", "is not valid"),
    ],
)
def test_persona_catalog_applies_the_slug_rule(slug: str, message: str | None) -> None:
    registry = build_registry()
    raw = _catalog_with_slug(slug)
    if message is None:
        assert parse_catalog(raw, registry).shared_spaces[0].slug == slug
        return
    with pytest.raises(CatalogError) as info:
        parse_catalog(raw, registry)
    [line] = [p for p in info.value.problems if "field slug" in p]
    assert message in line


def test_persona_schema_pattern_is_the_slug_pattern() -> None:
    schema = json.loads(PERSONAS_SCHEMA.read_text(encoding="utf-8"))
    pattern = schema["$defs"]["sharedSpace"]["properties"]["slug"]["pattern"]
    assert pattern == SLUG_PATTERN.pattern
