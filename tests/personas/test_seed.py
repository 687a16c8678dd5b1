"""Seeding is an idempotent upsert; cleanup deletes personas and their data, never humans."""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import pytest

from personas.catalog import PersonaCatalog
from personas.passwords import PersonaSecret, derive_password
from personas.seed import Seeder, cleanup
from tests.personas.conftest import small_catalog
from tests.personas.helpers import dump
from tool_registry.errors import ConflictError, PermissionDeniedError
from tool_registry.pipeline import Pipeline
from tool_registry.registry import Registry
from tool_registry.store import Accounts, Database
from tool_registry.store.connection import Conn
from tool_registry.testing import ToolKit

TRIO = ["lena.weber@mana.test", "jonas.weber@mana.test", "sam.lindqvist@mana.test"]


async def test_seed_creates_users_spaces_and_memberships(
    seeder: Seeder, catalog: PersonaCatalog, accounts: Accounts, db: Database, secret: PersonaSecret
) -> None:
    plan = await seeder.seed(catalog)
    assert not plan.empty and not plan.warnings
    personas = await accounts.list_users("persona")
    assert sorted(u.email for u in personas) == sorted(p.email for p in catalog.personas)
    for user in personas:
        spaces = await accounts.spaces_of(user.id)
        assert spaces[0].space.type == "personal"
        declared = {s.slug for s in catalog.spaces_of(user.email)}
        assert {a.space.slug for a in spaces if a.space.type != "personal"} == declared
    for shared in catalog.shared_spaces:
        space = await accounts.require_space(shared.slug)
        assert space.type == shared.type and space.name == shared.name
        members = {u.email: role for u, role in await accounts.members(space.id)}
        assert members == {m.email: m.role for m in shared.members}
    rows = await db.read(lambda c: c.execute("SELECT * FROM personas").fetchall())
    assert len(rows) == 10
    maya = await accounts.check_password(
        "maya.chen@mana.test", derive_password(secret.value, "maya.chen@mana.test")
    )
    assert maya is not None and maya.kind == "persona"


async def test_seed_twice_gives_an_identical_database(
    seeder: Seeder, catalog: PersonaCatalog, db: Database
) -> None:
    await seeder.seed(catalog)
    before = await dump(db)
    second = await seeder.seed(catalog)
    assert second.empty, second.lines()
    assert await dump(db) == before


async def test_editing_a_prompt_updates_only_that_persona(
    seeder: Seeder, raw_catalog: dict[str, Any], registry: Registry, db: Database
) -> None:
    await seeder.seed(small_catalog(raw_catalog, registry, TRIO))
    before = await dump(db)
    edited = copy.deepcopy(raw_catalog)
    for p in edited["personas"]:
        if p["email"] == "sam.lindqvist@mana.test":
            p["systemPrompt"] += " You now also write Rust on weekends."
            p["cadence"] = "daily"
    catalog = small_catalog(edited, registry, TRIO)
    plan = await seeder.plan(catalog)
    assert plan.lines() == ["update-persona  sam.lindqvist@mana.test  (systemPrompt, cadence)"]
    await seeder.apply(plan)
    row = await db.read(
        lambda c: c.execute(
            "SELECT p.system_prompt, p.cadence FROM personas p JOIN users u ON u.id = p.user_id "
            "WHERE u.email = 'sam.lindqvist@mana.test'"
        ).fetchone()
    )
    assert row["system_prompt"].endswith("write Rust on weekends.") and row["cadence"] == "daily"
    after = await dump(db)
    assert after["users"] == before["users"] and after["spaces"] == before["spaces"]
    assert (await seeder.plan(catalog)).empty


async def test_dry_run_lists_changes_and_writes_nothing(
    seeder: Seeder, raw_catalog: dict[str, Any], registry: Registry, db: Database
) -> None:
    catalog = small_catalog(raw_catalog, registry, TRIO)
    before = await dump(db)
    plan = await seeder.seed(catalog, dry_run=True)
    assert await dump(db) == before
    actions = [c.action for c in plan.changes]
    assert actions.count("create-user") == 3
    assert actions.count("create-space") == 2  # weber-family, lindqvist-dev
    assert any(
        "weber-family" in line and "jonas.weber@mana.test (member)" in line for line in plan.lines()
    )


async def test_seed_repairs_drift(
    seeder: Seeder,
    raw_catalog: dict[str, Any],
    registry: Registry,
    accounts: Accounts,
    db: Database,
) -> None:
    catalog = small_catalog(raw_catalog, registry, TRIO)
    await seeder.seed(catalog)
    jonas = await accounts.require_user("jonas.weber@mana.test")
    family = await accounts.require_space("weber-family")
    await db.write(
        lambda c: c.execute(
            "DELETE FROM memberships WHERE space_id = ? AND user_id = ?", (family.id, jonas.id)
        )
    )
    await accounts.set_password(jonas.id, "not-the-derived-one")
    plan = await seeder.plan(catalog)
    assert sorted(c.action for c in plan.changes) == ["add-member", "reset-password"]
    await seeder.apply(plan)
    assert (await seeder.plan(catalog)).empty


async def test_seed_refuses_to_turn_a_human_into_a_persona(
    seeder: Seeder, raw_catalog: dict[str, Any], registry: Registry, accounts: Accounts
) -> None:
    await accounts.create_user("jonas.weber@mana.test", name="Real Jonas", password="x" * 12)
    with pytest.raises(ConflictError, match="belongs to a human user"):
        await seeder.plan(small_catalog(raw_catalog, registry, TRIO))
    human = await accounts.require_user("jonas.weber@mana.test")
    assert human.kind == "human" and human.name == "Real Jonas"


async def test_seed_refuses_a_slug_taken_by_a_human_space(
    seeder: Seeder, raw_catalog: dict[str, Any], registry: Registry, accounts: Accounts
) -> None:
    human = await accounts.create_user("dev@example.com")
    await accounts.create_space(human.id, type_="practice", name="Mine", slug="lindqvist-dev")
    with pytest.raises(ConflictError, match="not created for personas"):
        await seeder.plan(small_catalog(raw_catalog, registry, TRIO))


async def test_seed_warns_about_personas_missing_from_the_catalog(
    seeder: Seeder, raw_catalog: dict[str, Any], registry: Registry
) -> None:
    await seeder.seed(small_catalog(raw_catalog, registry, TRIO))
    plan = await seeder.plan(small_catalog(raw_catalog, registry, TRIO[:2]))
    assert any("sam.lindqvist@mana.test" in w for w in plan.warnings)


# -- cleanup ----------------------------------------------------------------------------------------


async def _world(
    seeder: Seeder,
    raw_catalog: dict[str, Any],
    registry: Registry,
    db: Database,
    accounts: Accounts,
) -> tuple[PersonaCatalog, Pipeline, dict[str, str]]:
    """Seeded trio + a human with records in their own space and a shared space that a persona
    also writes in; returns record ids by label."""
    catalog = small_catalog(raw_catalog, registry, TRIO)
    await seeder.seed(catalog)
    kit = ToolKit(Pipeline(registry, db, accounts=accounts))
    human = await accounts.create_user("ana@example.com", password="hunter22hunter22")
    club = await accounts.create_space(human.id, type_="club", name="Chess club")
    jonas = await accounts.require_user("jonas.weber@mana.test")
    await accounts.add_member(club.id, jonas.id, "member")
    family = await accounts.require_space("weber-family")
    await accounts.add_member(family.id, human.id, "member")  # a human visiting a persona space
    ids = {
        "human-personal": (await kit.call_ok(human, None, "notes.create", {"title": "mine"}))["id"],
        "human-club": (await kit.call_ok(human, club, "notes.create", {"title": "club"}))["id"],
        "jonas-club": (await kit.call_ok(jonas, club, "notes.create", {"title": "by jonas"}))["id"],
        "jonas-family": (await kit.call_ok(jonas, family, "notes.create", {"title": "fam"}))["id"],
        "jonas-personal": (await kit.call_ok(jonas, None, "todo.create", {"title": "hw"}))["id"],
    }
    await kit.pipeline.aclose()
    return catalog, kit.pipeline, ids


async def _record_ids(db: Database) -> set[str]:
    rows = await db.read(lambda c: c.execute("SELECT id FROM records").fetchall())
    return {r["id"] for r in rows}


async def test_cleanup_deletes_personas_and_their_data_but_not_humans(
    seeder: Seeder,
    raw_catalog: dict[str, Any],
    registry: Registry,
    db: Database,
    accounts: Accounts,
) -> None:
    catalog, _, ids = await _world(seeder, raw_catalog, registry, db, accounts)
    result = await cleanup(db, accounts, catalog=catalog)
    assert result.users == sorted(TRIO)
    # weber-family has a human member (ana): it stays, and ana becomes its owner.
    assert result.spaces == [
        "jonas-weber-personal",
        "lena-weber-personal",
        "lindqvist-dev",
        "sam-lindqvist-personal",
    ]
    assert result.records == 3
    assert result.owners == ["ana@example.com becomes owner of weber-family"]
    assert await accounts.list_users("persona") == []
    assert [u.email for u in await accounts.list_users()] == ["ana@example.com"]
    assert await _record_ids(db) == {ids["human-personal"], ids["human-club"]}
    human = await accounts.require_user("ana@example.com")
    assert sorted((a.space.name, a.role) for a in await accounts.spaces_of(human.id)) == [
        ("Chess club", "owner"),
        ("Weber family", "owner"),
        ("ana (personal)", "owner"),
    ]
    tables = await dump(db)
    for table in ("personas", "persona_actions", "persona_feedback", "persona_ticks"):
        assert tables[table] == [], table
    audit = await db.read(lambda c: c.execute("SELECT DISTINCT user_id FROM audit_log").fetchall())
    assert {r["user_id"] for r in audit} == {human.id}


async def test_cleanup_refuses_a_humans_email_and_deletes_nothing(
    seeder: Seeder,
    raw_catalog: dict[str, Any],
    registry: Registry,
    db: Database,
    accounts: Accounts,
) -> None:
    await _world(seeder, raw_catalog, registry, db, accounts)
    before = await dump(db)
    with pytest.raises(
        PermissionDeniedError, match=r"refusing to delete ana@example\.com: it is a human"
    ):
        await cleanup(db, accounts, emails=["jonas.weber@mana.test", "ana@example.com"])
    assert await dump(db) == before


async def test_cleanup_by_email_deletes_only_that_persona(
    seeder: Seeder,
    raw_catalog: dict[str, Any],
    registry: Registry,
    db: Database,
    accounts: Accounts,
) -> None:
    _, _, ids = await _world(seeder, raw_catalog, registry, db, accounts)
    result = await cleanup(db, accounts, emails=["JONAS.weber@mana.test"])
    assert result.users == ["jonas.weber@mana.test"]
    assert result.spaces == ["jonas-weber-personal"]
    assert {u.email for u in await accounts.list_users("persona")} == set(TRIO) - {
        "jonas.weber@mana.test"
    }
    remaining = await _record_ids(db)
    assert not {ids["jonas-club"], ids["jonas-family"], ids["jonas-personal"]} & remaining
    assert {ids["human-personal"], ids["human-club"]} <= remaining
    assert await accounts.resolve_space("weber-family") is not None  # Lena's, stays


async def test_cleanup_warns_about_personas_not_in_the_catalog(
    seeder: Seeder,
    raw_catalog: dict[str, Any],
    registry: Registry,
    db: Database,
    accounts: Accounts,
) -> None:
    await seeder.seed(small_catalog(raw_catalog, registry, TRIO))
    result = await cleanup(
        db, accounts, catalog=small_catalog(raw_catalog, registry, TRIO[:1]), dry_run=True
    )
    assert result.dry_run and len(result.users) == 3
    assert any(
        "not in the catalog" in w and "jonas.weber@mana.test" in w and "sam" in w
        for w in result.warnings
    )
    assert len(await accounts.list_users("persona")) == 3  # dry run


async def _snapshot(db: Database) -> dict[str, Any]:
    """Users, memberships, spaces and record counts per space, as the cleanup report names them."""

    def work(conn: Conn) -> dict[str, Any]:
        return {
            "users": {r["email"] for r in conn.execute("SELECT email FROM users")},
            "memberships": {
                (r["email"], r["slug"]): r["role"]
                for r in conn.execute(
                    "SELECT u.email, s.slug, m.role FROM memberships m "
                    "JOIN users u ON u.id = m.user_id JOIN spaces s ON s.id = m.space_id"
                )
            },
            "spaces": {r["slug"] for r in conn.execute("SELECT slug FROM spaces")},
            "records": {
                r["slug"]: r["n"]
                for r in conn.execute(
                    "SELECT s.slug, count(*) AS n FROM records r "
                    "JOIN spaces s ON s.id = r.space_id GROUP BY s.slug"
                )
            },
        }

    return await db.read(work)


async def test_cleanup_keeps_a_shared_space_with_a_human_and_dry_run_lists_what_goes(
    seeder: Seeder,
    raw_catalog: dict[str, Any],
    registry: Registry,
    db: Database,
    accounts: Accounts,
) -> None:
    catalog, pipeline, ids = await _world(seeder, raw_catalog, registry, db, accounts)
    kit = ToolKit(pipeline)
    ana = await accounts.require_user("ana@example.com")
    family = await accounts.require_space("weber-family")  # created for personas, ana joined
    ids["human-family"] = (await kit.call_ok(ana, family, "notes.create", {"title": "ana"}))["id"]
    await pipeline.aclose()
    before_rows = await dump(db)
    before = await _snapshot(db)

    dry = await cleanup(db, accounts, catalog=catalog, dry_run=True)
    assert await dump(db) == before_rows  # a dry run deletes nothing
    real = await cleanup(db, accounts, catalog=catalog)
    after = await _snapshot(db)

    # The dry run's report is the cleanup's report, line for line.
    assert dataclasses.replace(dry, dry_run=False) == real
    worded = [
        line.replace("would delete", "deleted").replace("would make", "made")
        for line in dry.lines()
    ]
    assert worded == real.lines()

    # ... and it is exactly what went away.
    assert set(dry.users) == before["users"] - after["users"]
    gone = {k: role for k, role in before["memberships"].items() if k not in after["memberships"]}
    assert set(dry.memberships) == {f"{e} in {s} ({role})" for (e, s), role in gone.items()}
    assert set(dry.spaces) == before["spaces"] - after["spaces"]
    fewer = {
        slug: n - after["records"].get(slug, 0)
        for slug, n in before["records"].items()
        if n != after["records"].get(slug, 0)
    }
    assert dry.records_by_space == fewer
    promoted = {
        f"{e} becomes owner of {s}"
        for (e, s), role in after["memberships"].items()
        if role != before["memberships"][(e, s)]
    }
    assert set(dry.owners) == promoted

    # The human, the shared space and the human's records stay; persona-only spaces are gone.
    assert "ana@example.com" in after["users"] and "weber-family" in after["spaces"]
    assert after["memberships"][("ana@example.com", "weber-family")] == "owner"
    assert {"lindqvist-dev", "lena-weber-personal"}.isdisjoint(after["spaces"])
    assert await _record_ids(db) == {ids["human-personal"], ids["human-club"], ids["human-family"]}
    assert ids["jonas-family"] not in await _record_ids(db)
