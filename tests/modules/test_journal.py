"""journal module, through the real pipeline and SQLite store."""

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
    """A kit whose clock only moves when the test moves it: late evening in UTC."""
    clock = FixedClock(datetime(2030, 5, 1, 23, 30, tzinfo=UTC))
    async with tool_kit(tmp_path / "clocked.db", clock=clock) as kit:
        yield kit, clock


async def _seed(kit: ToolKit, user: User, space: Space) -> None:
    await kit.call_ok(user, space, "journal.add", {"text": "A quiet day.", "date": "2030-04-01"})


async def _invalid_fields(kit: ToolKit, user: User, tool: str, args: dict[str, Any]) -> list[str]:
    outcome = await kit.call_as(user, None, tool, args)
    assert outcome.status == "invalid-input", outcome.public()
    assert outcome.error is not None
    return [f.field for f in outcome.error.fields]


async def _dates(kit: ToolKit, user: User, args: dict[str, Any]) -> list[str]:
    listed = await kit.call_ok(user, None, "journal.list", args)
    return [e["date"] for e in listed["entries"]]


async def test_add_defaults_to_today_in_utc(clocked: tuple[ToolKit, FixedClock]) -> None:
    kit, _ = clocked
    alice = await kit.user()
    entry = await kit.call_ok(alice, None, "journal.add", {"text": "Long day at work."})
    assert entry["date"] == "2030-05-01"
    assert entry["text"] == "Long day at work."
    assert entry["moodTag"] is None
    tagged = await kit.call_ok(
        alice, None, "journal.add", {"text": "Hike!", "moodTag": "great", "date": "2030-04-20"}
    )
    assert tagged["moodTag"] == "great"
    assert tagged["date"] == "2030-04-20"


async def test_list_is_newest_first_and_filters_inclusive_range(mana_kit: ToolKit) -> None:
    alice = await mana_kit.user()
    for day in ["2030-03-02", "2030-03-05", "2030-03-01", "2030-03-04"]:
        await mana_kit.call_ok(alice, None, "journal.add", {"text": f"Entry {day}", "date": day})
    assert await _dates(mana_kit, alice, {}) == [
        "2030-03-05",
        "2030-03-04",
        "2030-03-02",
        "2030-03-01",
    ]
    assert await _dates(mana_kit, alice, {"from": "2030-03-02", "to": "2030-03-04"}) == [
        "2030-03-04",
        "2030-03-02",
    ]
    assert await _dates(mana_kit, alice, {"from": "2030-03-04"}) == ["2030-03-05", "2030-03-04"]
    assert await _dates(mana_kit, alice, {"to": "2030-03-01"}) == ["2030-03-01"]
    assert await _dates(mana_kit, alice, {"limit": 2}) == ["2030-03-05", "2030-03-04"]


async def test_from_after_to_is_rejected(mana_kit: ToolKit) -> None:
    alice = await mana_kit.user()
    outcome = await mana_kit.call_as(
        alice, None, "journal.list", {"from": "2030-03-05", "to": "2030-03-01"}
    )
    assert outcome.status == "error", outcome.public()
    assert outcome.error is not None
    assert outcome.error.reason == "invalid-range"
    assert "'from'" in outcome.error.message
    assert "'to'" in outcome.error.message


async def test_validation_errors_name_the_field(mana_kit: ToolKit) -> None:
    alice = await mana_kit.user()
    assert await _invalid_fields(mana_kit, alice, "journal.add", {"text": "  "}) == ["text"]
    assert await _invalid_fields(mana_kit, alice, "journal.add", {"text": "t" * 20_001}) == ["text"]
    assert await _invalid_fields(
        mana_kit, alice, "journal.add", {"text": "ok", "moodTag": "ecstatic"}
    ) == ["moodTag"]
    assert await _invalid_fields(
        mana_kit, alice, "journal.add", {"text": "ok", "date": "2030-13-01"}
    ) == ["date"]
    assert await _invalid_fields(
        mana_kit, alice, "journal.add", {"text": "ok", "date": "1850-01-01"}
    ) == ["date"]
    assert await _invalid_fields(mana_kit, alice, "journal.list", {"from": "yesterday"}) == ["from"]
    assert await _invalid_fields(mana_kit, alice, "journal.list", {"limit": 0}) == ["limit"]


async def test_deleted_entries_vanish_from_list(mana_kit: ToolKit) -> None:
    """journal has no delete tool; rows soft-deleted elsewhere (e.g. by sync) must not show."""
    alice = await mana_kit.user()
    keep = await mana_kit.call_ok(alice, None, "journal.add", {"text": "keep"})
    drop = await mana_kit.call_ok(alice, None, "journal.add", {"text": "drop"})
    await mana_kit.db.write(
        lambda c: c.execute(
            "UPDATE records SET deleted_at = updated_at WHERE id = ?", (drop["id"],)
        )
    )
    listed = await mana_kit.call_ok(alice, None, "journal.list", {})
    assert [e["id"] for e in listed["entries"]] == [keep["id"]]


async def test_list_is_space_isolated(mana_kit: ToolKit) -> None:
    await assert_space_isolated(mana_kit, "journal.list", {}, _seed)
    await assert_space_isolated(
        mana_kit, "journal.list", {"from": "2030-04-01", "to": "2030-04-01"}, _seed
    )


async def test_journal_not_allowed_in_family_space(mana_kit: ToolKit) -> None:
    alice = await mana_kit.user()
    family = await mana_kit.space(alice, "family")
    for tool, args in [("journal.add", {"text": "Dear diary"}), ("journal.list", {})]:
        outcome = await mana_kit.call_as(alice, family, tool, args)
        assert outcome.status == "denied", outcome.public()
        assert outcome.error is not None
        assert outcome.error.reason == "module-not-allowed"
