"""journal module, through the real pipeline and SQLite store."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest_asyncio

from tests.policy.policy_helpers import policy_kit
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
    assert await _invalid_fields(
        mana_kit, alice, "journal.update", {"id": "jou_x", "text": ""}
    ) == ["text"]
    assert await _invalid_fields(
        mana_kit, alice, "journal.update", {"id": "jou_x", "moodTag": "meh"}
    ) == ["moodTag"]
    assert await _invalid_fields(
        mana_kit, alice, "journal.update", {"id": "jou_x", "date": "2030-02-30"}
    ) == ["date"]
    assert await _invalid_fields(mana_kit, alice, "journal.update", {"text": "no id"}) == ["id"]
    assert await _invalid_fields(mana_kit, alice, "journal.delete", {"id": "bad id!"}) == ["id"]


async def test_update_changes_only_given_fields(clocked: tuple[ToolKit, FixedClock]) -> None:
    kit, clock = clocked
    alice = await kit.user()
    entry = await kit.call_ok(
        alice, None, "journal.add", {"text": "Rainy.", "moodTag": "low", "date": "2030-04-30"}
    )
    clock.advance(minutes=5)
    retagged = await kit.call_ok(
        alice, None, "journal.update", {"id": entry["id"], "moodTag": "okay", "text": None}
    )
    assert retagged["moodTag"] == "okay"
    assert retagged["text"] == "Rainy."
    assert retagged["date"] == "2030-04-30"
    assert retagged["createdAt"] == entry["createdAt"]
    assert retagged["updatedAt"] == "2030-05-01T23:35:00.000000Z"
    moved = await kit.call_ok(
        alice,
        None,
        "journal.update",
        {"id": entry["id"], "text": "Rainy, then sunny.", "date": "2030-04-29"},
    )
    assert moved["text"] == "Rainy, then sunny."
    assert moved["date"] == "2030-04-29"
    assert moved["moodTag"] == "okay"
    listed = await kit.call_ok(alice, None, "journal.list", {"to": "2030-04-29"})
    assert listed["entries"] == [moved]
    # Nothing to change: the entry comes back as is.
    same = await kit.call_ok(alice, None, "journal.update", {"id": entry["id"]})
    assert same == moved


async def test_clear_removes_the_mood_tag(mana_kit: ToolKit) -> None:
    alice = await mana_kit.user()
    entry = await mana_kit.call_ok(
        alice, None, "journal.add", {"text": "Long walk.", "moodTag": "great", "date": "2030-04-28"}
    )
    untagged = await mana_kit.call_ok(
        alice, None, "journal.update", {"id": entry["id"], "clear": ["moodTag"]}
    )
    assert untagged["moodTag"] is None
    assert (untagged["text"], untagged["date"]) == ("Long walk.", "2030-04-28")
    listed = await mana_kit.call_ok(alice, None, "journal.list", {})
    assert listed["entries"] == [untagged]
    kept = await mana_kit.call_ok(
        alice, None, "journal.update", {"id": entry["id"], "moodTag": None, "clear": None}
    )
    assert kept == untagged
    conflict = {"id": entry["id"], "moodTag": "good", "clear": ["moodTag"]}
    assert await _invalid_fields(mana_kit, alice, "journal.update", conflict) == ["clear"]
    for name in ("text", "date", "mood_tag"):
        args = {"id": entry["id"], "clear": [name]}
        assert await _invalid_fields(mana_kit, alice, "journal.update", args) == ["clear.0"], name


async def test_delete_is_soft_idempotent_and_hides_the_entry(mana_kit: ToolKit) -> None:
    alice = await mana_kit.user()
    keep = await mana_kit.call_ok(alice, None, "journal.add", {"text": "keep"})
    drop = await mana_kit.call_ok(alice, None, "journal.add", {"text": "drop"})
    deleted = await mana_kit.call_ok(alice, None, "journal.delete", {"id": drop["id"]})
    assert set(deleted) == {"id", "deletedAt"}
    assert deleted["id"] == drop["id"]
    assert deleted["deletedAt"]
    again = await mana_kit.call_ok(alice, None, "journal.delete", {"id": drop["id"]})
    assert again == deleted
    listed = await mana_kit.call_ok(alice, None, "journal.list", {})
    assert [e["id"] for e in listed["entries"]] == [keep["id"]]
    # Soft: the row is still stored, stamped deleted.
    row = await mana_kit.db.read(
        lambda c: c.execute(
            "SELECT deleted_at, data FROM records WHERE id = ?", (drop["id"],)
        ).fetchone()
    )
    assert row["deleted_at"] == deleted["deletedAt"]
    assert "drop" in row["data"]
    gone = await mana_kit.call_as(alice, None, "journal.update", {"id": drop["id"], "text": "x"})
    assert gone.error is not None
    assert gone.error.reason == "not-found"


async def test_unknown_id_is_not_found(mana_kit: ToolKit) -> None:
    alice = await mana_kit.user()
    for tool, args in [
        ("journal.update", {"id": "jou_missing", "text": "x"}),
        ("journal.delete", {"id": "jou_missing"}),
    ]:
        outcome = await mana_kit.call_as(alice, None, tool, args)
        assert outcome.status == "error", outcome.public()
        assert outcome.error is not None
        assert outcome.error.reason == "not-found"
        assert "jou_missing" in outcome.error.message


async def test_delete_is_denied_until_allowed_in_the_space(tmp_path: Path) -> None:
    async with policy_kit(tmp_path / "db") as pk:
        alice = await pk.kit.user()
        entry = await pk.kit.call_ok(alice, None, "journal.add", {"text": "Private."})
        denied = await pk.kit.call_as(alice, None, "journal.delete", {"id": entry["id"]})
        assert denied.status == "denied", denied.public()
        assert denied.reason == "destructive-not-allowed"
        assert denied.reminder is not None
        assert "journal.update" in denied.reminder
        listed = await pk.kit.call_ok(alice, None, "journal.list", {})
        assert [e["id"] for e in listed["entries"]] == [entry["id"]]

        await pk.allowlist.allow(alice.id, None, ["journal.delete"], acknowledge=True)
        await pk.kit.call_ok(alice, None, "journal.delete", {"id": entry["id"]})
        assert (await pk.kit.call_ok(alice, None, "journal.list", {}))["entries"] == []


async def test_a_non_member_cannot_touch_another_spaces_entries(mana_kit: ToolKit) -> None:
    alice, mallory = await mana_kit.user(), await mana_kit.user()
    entry = await mana_kit.call_ok(alice, None, "journal.add", {"text": "Secret."})
    home = await mana_kit.personal(alice)
    for tool, args in [
        ("journal.update", {"id": entry["id"], "text": "Hacked."}),
        ("journal.delete", {"id": entry["id"]}),
    ]:
        # In alice's space: not a member.
        outcome = await mana_kit.call_as(mallory, home, tool, args)
        assert outcome.status == "denied", outcome.public()
        assert outcome.error is not None
        assert outcome.error.reason == "not-a-member"
        # In mallory's own space: alice's id does not exist there.
        outcome = await mana_kit.call_as(mallory, None, tool, args)
        assert outcome.status == "error", outcome.public()
        assert outcome.error is not None
        assert outcome.error.reason == "not-found"
    listed = await mana_kit.call_ok(alice, None, "journal.list", {})
    assert listed["entries"] == [entry]


async def test_deleted_entries_vanish_from_list(mana_kit: ToolKit) -> None:
    """Rows soft-deleted outside journal.delete (e.g. by sync) must not show either."""
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
    for tool, args in [
        ("journal.add", {"text": "Dear diary"}),
        ("journal.list", {}),
        ("journal.update", {"id": "jou_any", "text": "Dear diary"}),
        ("journal.delete", {"id": "jou_any"}),
    ]:
        outcome = await mana_kit.call_as(alice, family, tool, args)
        assert outcome.status == "denied", outcome.public()
        assert outcome.error is not None
        assert outcome.error.reason == "module-not-allowed"
