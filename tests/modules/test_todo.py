"""todo module, through the real pipeline and SQLite store."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest_asyncio

from tool_registry.clock import FixedClock
from tool_registry.store import Space, User
from tool_registry.testing import ToolKit, assert_space_isolated, tool_kit

START = datetime(2030, 5, 1, 12, 0, tzinfo=UTC)


@pytest_asyncio.fixture
async def clocked(tmp_path: Path) -> AsyncIterator[tuple[ToolKit, FixedClock]]:
    """A kit whose clock only moves when the test moves it."""
    clock = FixedClock(START)
    async with tool_kit(tmp_path / "clocked.db", clock=clock) as kit:
        yield kit, clock


async def _seed(kit: ToolKit, user: User, space: Space) -> None:
    await kit.call_ok(user, space, "todo.create", {"title": "Pay rent", "dueDate": "2030-06-01"})
    await kit.call_ok(user, space, "todo.create", {"title": "Call mum"})


async def _invalid_fields(kit: ToolKit, user: User, tool: str, args: dict[str, Any]) -> list[str]:
    outcome = await kit.call_as(user, None, tool, args)
    assert outcome.status == "invalid-input", outcome.public()
    assert outcome.error is not None
    return [f.field for f in outcome.error.fields]


async def _titles(kit: ToolKit, user: User, args: dict[str, Any] | None = None) -> list[str]:
    listed = await kit.call_ok(user, None, "todo.list", args)
    return [t["title"] for t in listed["todos"]]


async def test_create_complete_roundtrip(clocked: tuple[ToolKit, FixedClock]) -> None:
    kit, clock = clocked
    alice = await kit.user()
    todo = await kit.call_ok(
        alice,
        None,
        "todo.create",
        {"title": "  File taxes ", "dueDate": "2030-05-31", "priority": "high", "notes": "Form"},
    )
    assert todo["title"] == "File taxes"
    assert todo["dueDate"] == "2030-05-31"
    assert todo["priority"] == "high"
    assert todo["done"] is False
    assert todo["completedAt"] is None
    default = await kit.call_ok(alice, None, "todo.create", {"title": "Water plants"})
    assert default["priority"] == "normal"
    assert default["dueDate"] is None

    clock.advance(hours=1)
    done = await kit.call_ok(alice, None, "todo.complete", {"id": todo["id"]})
    assert done["done"] is True
    assert done["completedAt"] == "2030-05-01T13:00:00.000000Z"
    assert await _titles(kit, alice) == ["Water plants"]
    assert await _titles(kit, alice, {"status": "done"}) == ["File taxes"]
    assert sorted(await _titles(kit, alice, {"status": "all"})) == ["File taxes", "Water plants"]

    clock.advance(hours=1)
    again = await kit.call_ok(alice, None, "todo.complete", {"id": todo["id"]})
    assert again["completedAt"] == done["completedAt"]
    assert again["updatedAt"] == done["updatedAt"]


async def test_reopen_roundtrip(clocked: tuple[ToolKit, FixedClock]) -> None:
    kit, clock = clocked
    alice = await kit.user()
    todo = await kit.call_ok(
        alice, None, "todo.create", {"title": "Renew passport", "dueDate": "2030-06-01"}
    )
    clock.advance(hours=1)
    done = await kit.call_ok(alice, None, "todo.complete", {"id": todo["id"]})
    assert done["done"] is True

    clock.advance(hours=1)
    reopened = await kit.call_ok(alice, None, "todo.reopen", {"id": todo["id"]})
    assert reopened["done"] is False
    assert reopened["completedAt"] is None
    assert reopened["updatedAt"] == "2030-05-01T14:00:00.000000Z"
    assert {k: v for k, v in reopened.items() if k != "updatedAt"} == {
        k: v for k, v in todo.items() if k != "updatedAt"
    }
    assert await _titles(kit, alice) == ["Renew passport"]
    assert await _titles(kit, alice, {"status": "done"}) == []

    # Reopening an open todo is a no-op that returns it unchanged.
    clock.advance(hours=1)
    again = await kit.call_ok(alice, None, "todo.reopen", {"id": todo["id"]})
    assert again == reopened
    fresh = await kit.call_ok(alice, None, "todo.create", {"title": "Never done"})
    assert await kit.call_ok(alice, None, "todo.reopen", {"id": fresh["id"]}) == fresh

    # And it can be completed again, with a new completion time.
    clock.advance(hours=1)
    redone = await kit.call_ok(alice, None, "todo.complete", {"id": todo["id"]})
    assert redone["done"] is True
    assert redone["completedAt"] == "2030-05-01T16:00:00.000000Z"


async def test_list_orders_by_due_date_then_creation(clocked: tuple[ToolKit, FixedClock]) -> None:
    kit, clock = clocked
    alice = await kit.user()
    for title, due in [
        ("undated first", None),
        ("due second", "2030-05-03"),
        ("due first", "2030-05-02"),
        ("undated second", None),
        ("due second too", "2030-05-03"),
    ]:
        await kit.call_ok(alice, None, "todo.create", {"title": title, "dueDate": due})
        clock.advance(minutes=1)
    assert await _titles(kit, alice) == [
        "due first",
        "due second",
        "due second too",
        "undated first",
        "undated second",
    ]
    assert await _titles(kit, alice, {"limit": 4}) == [
        "due first",
        "due second",
        "due second too",
        "undated first",
    ]
    assert await _titles(kit, alice, {"limit": 1}) == ["due first"]
    assert await _titles(kit, alice, {"dueBefore": "2030-05-03"}) == ["due first"]


async def test_update_changes_only_given_fields(mana_kit: ToolKit) -> None:
    alice = await mana_kit.user()
    todo = await mana_kit.call_ok(
        alice, None, "todo.create", {"title": "Book flights", "notes": "Lisbon", "priority": "low"}
    )
    updated = await mana_kit.call_ok(
        alice, None, "todo.update", {"id": todo["id"], "dueDate": "2030-07-01", "priority": None}
    )
    assert updated["dueDate"] == "2030-07-01"
    assert updated["title"] == "Book flights"
    assert updated["notes"] == "Lisbon"
    assert updated["priority"] == "low"
    renamed = await mana_kit.call_ok(
        alice, None, "todo.update", {"id": todo["id"], "title": "Book trains"}
    )
    assert renamed["title"] == "Book trains"
    assert renamed["dueDate"] == "2030-07-01"


async def test_update_with_null_fields_and_null_clear_changes_nothing(
    clocked: tuple[ToolKit, FixedClock],
) -> None:
    kit, clock = clocked
    alice = await kit.user()
    todo = await kit.call_ok(
        alice, None, "todo.create", {"title": "Pay rent", "dueDate": "2030-06-01", "notes": "IBAN"}
    )
    clock.advance(hours=1)
    no_change: list[dict[str, Any]] = [
        {"dueDate": None, "notes": None, "title": None, "priority": None},
        {"clear": None},
        {"clear": []},
        {},
    ]
    for args in no_change:
        same = await kit.call_ok(alice, None, "todo.update", {"id": todo["id"], **args})
        assert same == todo, args


async def test_clear_removes_due_date_and_notes(clocked: tuple[ToolKit, FixedClock]) -> None:
    kit, clock = clocked
    alice = await kit.user()
    todo = await kit.call_ok(
        alice,
        None,
        "todo.create",
        {"title": "Renew passport", "dueDate": "2030-06-01", "notes": "Bring photos"},
    )
    later = await kit.call_ok(alice, None, "todo.create", {"title": "Later"})
    assert await _titles(kit, alice) == ["Renew passport", "Later"]

    clock.advance(hours=1)
    undated = await kit.call_ok(
        alice, None, "todo.update", {"id": todo["id"], "clear": ["dueDate"]}
    )
    assert undated["dueDate"] is None
    assert undated["notes"] == "Bring photos"
    assert undated["updatedAt"] == "2030-05-01T13:00:00.000000Z"
    # The list shows it without a due date: now among the undated todos, oldest first ...
    listed = await kit.call_ok(alice, None, "todo.list")
    assert [(t["title"], t["dueDate"]) for t in listed["todos"]] == [
        ("Renew passport", None),
        ("Later", None),
    ]
    # ... and no longer due before anything.
    assert await _titles(kit, alice, {"dueBefore": "2031-01-01"}) == []

    # Clearing one field while setting another in the same call.
    clock.advance(hours=1)
    plain = await kit.call_ok(
        alice, None, "todo.update", {"id": todo["id"], "title": "Passport", "clear": ["notes"]}
    )
    assert (plain["title"], plain["notes"], plain["dueDate"]) == ("Passport", None, None)
    listed = await kit.call_ok(alice, None, "todo.list")
    assert listed["todos"][0] == plain

    # Clearing what is already empty is a no-op success: nothing is rewritten.
    clock.advance(hours=1)
    again = await kit.call_ok(
        alice, None, "todo.update", {"id": todo["id"], "clear": ["dueDate", "notes"]}
    )
    assert again == plain
    # A cleared due date can be set again.
    redated = await kit.call_ok(
        alice, None, "todo.update", {"id": todo["id"], "dueDate": "2030-07-01"}
    )
    assert redated["dueDate"] == "2030-07-01"
    assert await _titles(kit, alice) == ["Passport", "Later"]
    assert later["dueDate"] is None


async def test_clear_is_stamped_so_a_stale_update_cannot_bring_the_value_back(
    clocked: tuple[ToolKit, FixedClock],
) -> None:
    kit, clock = clocked
    alice = await kit.user()
    todo = await kit.call_ok(alice, None, "todo.create", {"title": "Gym", "dueDate": "2030-06-01"})
    clock.advance(hours=2)
    cleared = await kit.call_ok(
        alice, None, "todo.update", {"id": todo["id"], "clear": ["dueDate"]}
    )
    # A write stamped earlier than the clear (a late, stale update) loses on that field ...
    clock.set(START + timedelta(hours=1))
    stale = await kit.call_ok(
        alice, None, "todo.update", {"id": todo["id"], "dueDate": "2030-09-09", "notes": "n"}
    )
    assert stale["dueDate"] is None
    # ... while a field last written before it (notes, at creation) still takes it.
    assert stale["notes"] == "n"
    assert cleared["dueDate"] is None


async def test_set_and_clear_of_one_field_is_invalid(mana_kit: ToolKit) -> None:
    alice = await mana_kit.user()
    todo = await mana_kit.call_ok(
        alice, None, "todo.create", {"title": "Call bank", "dueDate": "2030-06-01"}
    )
    args = {"id": todo["id"], "dueDate": "2030-06-02", "clear": ["dueDate"]}
    outcome = await mana_kit.call_as(alice, None, "todo.update", args)
    assert outcome.status == "invalid-input", outcome.public()
    assert outcome.error is not None
    assert [f.field for f in outcome.error.fields] == ["clear"]
    assert "'dueDate' is given a value and listed in clear" in outcome.error.message
    listed = await mana_kit.call_ok(alice, None, "todo.list")
    assert listed["todos"] == [todo]


async def test_clear_names_only_optional_fields(mana_kit: ToolKit) -> None:
    alice = await mana_kit.user()
    update = "todo.update"
    for name in ("title", "priority", "done", "completedAt", "due_date", "id", "colour"):
        assert await _invalid_fields(mana_kit, alice, update, {"id": "t1", "clear": [name]}) == [
            "clear.0"
        ], name
    assert await _invalid_fields(
        mana_kit, alice, update, {"id": "t1", "clear": ["notes", "notes"]}
    ) == ["clear"]
    assert await _invalid_fields(mana_kit, alice, update, {"id": "t1", "clear": "notes"}) == [
        "clear"
    ]


async def test_validation_errors_name_the_field(mana_kit: ToolKit) -> None:
    alice = await mana_kit.user()
    assert await _invalid_fields(mana_kit, alice, "todo.create", {"title": ""}) == ["title"]
    assert await _invalid_fields(mana_kit, alice, "todo.create", {"title": "x" * 201}) == ["title"]
    assert await _invalid_fields(
        mana_kit, alice, "todo.create", {"title": "a", "priority": "urgent"}
    ) == ["priority"]
    assert await _invalid_fields(
        mana_kit, alice, "todo.create", {"title": "a", "dueDate": "next friday"}
    ) == ["dueDate"]
    assert await _invalid_fields(
        mana_kit, alice, "todo.create", {"title": "a", "notes": "n" * 5001}
    ) == ["notes"]
    assert await _invalid_fields(
        mana_kit, alice, "todo.create", {"title": "a", "colour": "red"}
    ) == ["colour"]
    assert await _invalid_fields(mana_kit, alice, "todo.list", {"status": "closed"}) == ["status"]
    assert await _invalid_fields(mana_kit, alice, "todo.list", {"limit": 201}) == ["limit"]
    assert await _invalid_fields(mana_kit, alice, "todo.complete", {"id": "no spaces"}) == ["id"]
    assert await _invalid_fields(mana_kit, alice, "todo.reopen", {}) == ["id"]
    assert await _invalid_fields(mana_kit, alice, "todo.reopen", {"id": "x", "done": False}) == [
        "done"
    ]


async def test_unknown_id_is_not_found(mana_kit: ToolKit) -> None:
    alice = await mana_kit.user()
    for tool, args in [
        ("todo.complete", {"id": "tod_missing"}),
        ("todo.reopen", {"id": "tod_missing"}),
        ("todo.update", {"id": "tod_missing", "title": "x"}),
        ("todo.delete", {"id": "tod_missing"}),
    ]:
        outcome = await mana_kit.call_as(alice, None, tool, args)
        assert outcome.status == "error", outcome.public()
        assert outcome.error is not None
        assert outcome.error.reason == "not-found"
        assert "'tod_missing'" in outcome.error.message


async def test_deleted_todo_vanishes(mana_kit: ToolKit) -> None:
    alice = await mana_kit.user()
    keep = await mana_kit.call_ok(alice, None, "todo.create", {"title": "Keep"})
    drop = await mana_kit.call_ok(alice, None, "todo.create", {"title": "Drop"})
    deleted = await mana_kit.call_ok(alice, None, "todo.delete", {"id": drop["id"]})
    assert deleted["id"] == drop["id"]
    assert deleted["deletedAt"]
    listed = await mana_kit.call_ok(alice, None, "todo.list", {"status": "all"})
    assert [t["id"] for t in listed["todos"]] == [keep["id"]]
    for tool in ("todo.complete", "todo.reopen"):
        outcome = await mana_kit.call_as(alice, None, tool, {"id": drop["id"]})
        assert outcome.error is not None
        assert outcome.error.reason == "not-found"


async def test_a_non_member_cannot_reopen_another_spaces_todo(mana_kit: ToolKit) -> None:
    alice, mallory = await mana_kit.user(), await mana_kit.user()
    todo = await mana_kit.call_ok(alice, None, "todo.create", {"title": "Alice's task"})
    done = await mana_kit.call_ok(alice, None, "todo.complete", {"id": todo["id"]})
    home = await mana_kit.personal(alice)
    outcome = await mana_kit.call_as(mallory, home, "todo.reopen", {"id": todo["id"]})
    assert outcome.status == "denied", outcome.public()
    assert outcome.error is not None
    assert outcome.error.reason == "not-a-member"
    outcome = await mana_kit.call_as(mallory, None, "todo.reopen", {"id": todo["id"]})
    assert outcome.status == "error", outcome.public()
    assert outcome.error is not None
    assert outcome.error.reason == "not-found"
    listed = await mana_kit.call_ok(alice, None, "todo.list", {"status": "done"})
    assert listed["todos"] == [done]


async def test_list_is_space_isolated(mana_kit: ToolKit) -> None:
    await assert_space_isolated(mana_kit, "todo.list", {"status": "all"}, _seed)


async def test_todo_not_allowed_in_family_space(mana_kit: ToolKit) -> None:
    alice = await mana_kit.user()
    family = await mana_kit.space(alice, "family")
    for tool, args in [
        ("todo.create", {"title": "Groceries"}),
        ("todo.list", {}),
        ("todo.reopen", {"id": "tod_any"}),
    ]:
        outcome = await mana_kit.call_as(alice, family, tool, args)
        assert outcome.status == "denied", outcome.public()
        assert outcome.error is not None
        assert outcome.error.reason == "module-not-allowed"
