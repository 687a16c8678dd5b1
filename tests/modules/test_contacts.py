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
