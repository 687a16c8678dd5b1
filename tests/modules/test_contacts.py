"""contacts module, through the real pipeline and SQLite store."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest_asyncio

from tool_registry.clock import FixedClock
from tool_registry.store import Space, User
from tool_registry.testing import ToolKit, assert_space_isolated, tool_kit


@pytest_asyncio.fixture
async def clocked(tmp_path: Path) -> AsyncIterator[tuple[ToolKit, FixedClock]]:
    """A kit whose clock only moves when the test moves it."""
    clock = FixedClock(datetime(2030, 5, 1, 12, 0, tzinfo=UTC))
    async with tool_kit(tmp_path / "clocked.db", clock=clock) as kit:
        yield kit, clock


async def _seed(kit: ToolKit, user: User, space: Space) -> None:
    await kit.call_ok(
        user, space, "contacts.create", {"name": "Ada Lovelace", "email": "ada@example.org"}
    )


async def _invalid_fields(kit: ToolKit, user: User, tool: str, args: dict[str, Any]) -> list[str]:
    outcome = await kit.call_as(user, None, tool, args)
    assert outcome.status == "invalid-input", outcome.public()
    assert outcome.error is not None
    return [f.field for f in outcome.error.fields]


async def _search_names(
    kit: ToolKit, user: User, args: dict[str, Any], space: Space | None = None
) -> list[str]:
    found = await kit.call_ok(user, space, "contacts.search", args)
    return [c["name"] for c in found["contacts"]]


async def _error_reason(kit: ToolKit, user: User, tool: str, args: dict[str, Any]) -> str:
    outcome = await kit.call_as(user, None, tool, args)
    assert outcome.status == "error", outcome.public()
    assert outcome.error is not None
    return outcome.error.reason


async def test_create_and_search(mana_kit: ToolKit) -> None:
    alice = await mana_kit.user()
    contact = await mana_kit.call_ok(
        alice,
        None,
        "contacts.create",
        {
            "name": "Grace Hopper",
            "email": "grace@navy.example",
            "phone": "+1 (555) 010-2030",
            "notes": "Met at the COBOL meetup",
            "birthday": "1906-12-09",
        },
    )
    assert contact["name"] == "Grace Hopper"
    assert contact["phone"] == "+1 (555) 010-2030"
    assert contact["birthday"] == "1906-12-09"
    minimal = await mana_kit.call_ok(alice, None, "contacts.create", {"name": "Bob"})
    assert minimal["email"] is None
    assert minimal["birthday"] is None

    found = await mana_kit.call_ok(alice, None, "contacts.search", {"query": "NAVY"})
    assert found["contacts"] == [contact]
    assert await _search_names(mana_kit, alice, {"query": "cobol"}) == ["Grace Hopper"]
    assert await _search_names(mana_kit, alice, {"query": "nobody"}) == []


async def test_search_ranks_name_before_email_before_notes(mana_kit: ToolKit) -> None:
    alice = await mana_kit.user()
    # Created best match first, so the newest-first tie-break cannot produce the expected order.
    for args in [
        {"name": "Kim Park"},
        {"name": "Dan", "email": "fan.of.kim@example.org"},
        {"name": "Carol", "notes": "Knows Kim from school"},
    ]:
        await mana_kit.call_ok(alice, None, "contacts.create", args)
    assert await _search_names(mana_kit, alice, {"query": "kim"}) == ["Kim Park", "Dan", "Carol"]
    assert await _search_names(mana_kit, alice, {"query": "kim", "limit": 1}) == ["Kim Park"]


async def test_search_without_query_is_most_recently_updated(
    clocked: tuple[ToolKit, FixedClock],
) -> None:
    kit, clock = clocked
    alice = await kit.user()
    first = await kit.call_ok(alice, None, "contacts.create", {"name": "First"})
    clock.advance(minutes=1)
    await kit.call_ok(alice, None, "contacts.create", {"name": "Second"})
    assert await _search_names(kit, alice, {}) == ["Second", "First"]
    clock.advance(minutes=1)
    await kit.call_ok(alice, None, "contacts.update", {"id": first["id"], "phone": "030 123"})
    assert await _search_names(kit, alice, {}) == ["First", "Second"]


async def test_update_changes_only_given_fields(mana_kit: ToolKit) -> None:
    alice = await mana_kit.user()
    contact = await mana_kit.call_ok(
        alice, None, "contacts.create", {"name": "Eve", "email": "eve@example.org"}
    )
    updated = await mana_kit.call_ok(
        alice, None, "contacts.update", {"id": contact["id"], "birthday": "1990-02-03"}
    )
    assert updated["birthday"] == "1990-02-03"
    assert updated["email"] == "eve@example.org"
    assert updated["name"] == "Eve"
    renamed = await mana_kit.call_ok(
        alice, None, "contacts.update", {"id": contact["id"], "name": "Eve Adams"}
    )
    assert renamed["name"] == "Eve Adams"
    assert renamed["birthday"] == "1990-02-03"


async def test_clear_removes_contact_details(clocked: tuple[ToolKit, FixedClock]) -> None:
    kit, clock = clocked
    alice = await kit.user()
    full = {
        "name": "Linus",
        "email": "linus@example.org",
        "phone": "+1 555 0100",
        "notes": "met at the kernel summit",
        "birthday": "1969-12-28",
    }
    contact = await kit.call_ok(alice, None, "contacts.create", full)
    clock.advance(minutes=1)
    no_phone = await kit.call_ok(
        alice, None, "contacts.update", {"id": contact["id"], "clear": ["phone"]}
    )
    assert no_phone["phone"] is None
    assert no_phone["email"] == "linus@example.org"
    assert no_phone["updatedAt"] > contact["updatedAt"]
    found = await kit.call_ok(alice, None, "contacts.search", {"query": "Linus"})
    assert found["contacts"] == [no_phone]

    clock.advance(minutes=1)
    bare = await kit.call_ok(
        alice,
        None,
        "contacts.update",
        {"id": contact["id"], "clear": ["email", "notes", "birthday"]},
    )
    assert {k: bare[k] for k in ("name", "email", "phone", "notes", "birthday")} == {
        "name": "Linus",
        "email": None,
        "phone": None,
        "notes": None,
        "birthday": None,
    }
    # Cleared text is no longer searchable; the contact is listed with nulls.
    assert await _search_names(kit, alice, {"query": "kernel"}) == []
    assert await _search_names(kit, alice, {"query": "linus@"}) == []
    listed = await kit.call_ok(alice, None, "contacts.search", {})
    assert listed["contacts"] == [bare]
    # Clearing what is already empty succeeds and rewrites nothing.
    clock.advance(minutes=1)
    again = await kit.call_ok(
        alice, None, "contacts.update", {"id": contact["id"], "clear": ["phone", "email"]}
    )
    assert again == bare


async def test_null_fields_and_null_clear_keep_contact_details(mana_kit: ToolKit) -> None:
    alice = await mana_kit.user()
    contact = await mana_kit.call_ok(
        alice,
        None,
        "contacts.create",
        {"name": "Ken", "email": "ken@example.org", "phone": "555 0101", "birthday": "1943-02-04"},
    )
    nulls = {"email": None, "phone": None, "notes": None, "birthday": None, "clear": None}
    same = await mana_kit.call_ok(alice, None, "contacts.update", {"id": contact["id"], **nulls})
    assert same == contact


async def test_clear_conflicts_and_required_names_are_invalid(mana_kit: ToolKit) -> None:
    alice = await mana_kit.user()
    contact = await mana_kit.call_ok(
        alice, None, "contacts.create", {"name": "Barbara", "email": "b@example.org"}
    )
    update = "contacts.update"
    conflict = {"id": contact["id"], "email": "new@example.org", "clear": ["email", "phone"]}
    outcome = await mana_kit.call_as(alice, None, update, conflict)
    assert outcome.status == "invalid-input" and outcome.error is not None, outcome.public()
    assert [f.field for f in outcome.error.fields] == ["clear"]
    assert "'email'" in outcome.error.message and "'phone'" not in outcome.error.message
    for name in ("name", "id", "createdAt", "address"):
        assert await _invalid_fields(
            mana_kit, alice, update, {"id": contact["id"], "clear": [name]}
        ) == ["clear.0"], name
    assert await _search_names(mana_kit, alice, {"query": "b@example"}) == ["Barbara"]


async def test_validation_errors_name_the_field(mana_kit: ToolKit) -> None:
    alice = await mana_kit.user()
    create = "contacts.create"
    assert await _invalid_fields(mana_kit, alice, create, {"name": ""}) == ["name"]
    assert await _invalid_fields(mana_kit, alice, create, {"name": "n" * 121}) == ["name"]
    for email in ["not-an-email", "a@b", "two words@example.org"]:
        assert await _invalid_fields(mana_kit, alice, create, {"name": "A", "email": email}) == [
            "email"
        ]
    for phone in ["call me", "---", "12", "+49 30 123 ext. 4"]:
        assert await _invalid_fields(mana_kit, alice, create, {"name": "A", "phone": phone}) == [
            "phone"
        ]
    assert await _invalid_fields(
        mana_kit, alice, create, {"name": "A", "birthday": "1800-01-01"}
    ) == ["birthday"]
    assert await _invalid_fields(mana_kit, alice, "contacts.search", {"limit": 0}) == ["limit"]
    assert await _invalid_fields(
        mana_kit, alice, "contacts.update", {"id": "con_1", "email": "nope"}
    ) == ["email"]


async def test_unknown_id_is_not_found(mana_kit: ToolKit) -> None:
    alice = await mana_kit.user()
    update = {"id": "con_missing", "name": "x"}
    assert await _error_reason(mana_kit, alice, "contacts.update", update) == "not-found"
    delete = {"id": "con_missing"}
    assert await _error_reason(mana_kit, alice, "contacts.delete", delete) == "not-found"


async def test_deleted_contact_vanishes_from_search(mana_kit: ToolKit) -> None:
    alice = await mana_kit.user()
    await mana_kit.call_ok(alice, None, "contacts.create", {"name": "Keep Smith"})
    drop = await mana_kit.call_ok(alice, None, "contacts.create", {"name": "Drop Smith"})
    deleted = await mana_kit.call_ok(alice, None, "contacts.delete", {"id": drop["id"]})
    assert deleted["id"] == drop["id"]
    assert await _search_names(mana_kit, alice, {"query": "smith"}) == ["Keep Smith"]
    assert await _search_names(mana_kit, alice, {}) == ["Keep Smith"]
    again = {"id": drop["id"], "name": "Back"}
    assert await _error_reason(mana_kit, alice, "contacts.update", again) == "not-found"


async def test_search_is_space_isolated(mana_kit: ToolKit) -> None:
    await assert_space_isolated(mana_kit, "contacts.search", {}, _seed)
    await assert_space_isolated(mana_kit, "contacts.search", {"query": "ada"}, _seed)
    await assert_space_isolated(
        mana_kit, "contacts.search", {"query": "example"}, _seed, space_type="family"
    )


async def test_contacts_are_shared_in_a_family_space(mana_kit: ToolKit) -> None:
    alice, bob = await mana_kit.user(), await mana_kit.user()
    family = await mana_kit.space(alice, "family")
    await mana_kit.add_member(family, bob)
    plumber = await mana_kit.call_ok(
        alice, family, "contacts.create", {"name": "Plumber Joe", "phone": "0171 555 123"}
    )
    assert await mana_kit.record_space(plumber["id"]) == family.id
    assert await _search_names(mana_kit, bob, {"query": "plumber"}, family) == ["Plumber Joe"]
    await mana_kit.call_ok(bob, family, "contacts.delete", {"id": plumber["id"]})
    assert await _search_names(mana_kit, alice, {"query": "plumber"}, family) == []
    assert await _search_names(mana_kit, alice, {"query": "plumber"}) == []
