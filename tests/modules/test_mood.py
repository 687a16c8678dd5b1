"""mood module, through the real pipeline and SQLite store."""

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
    """A kit whose clock only moves when the test moves it."""
    clock = FixedClock(datetime(2030, 5, 1, 12, 0, tzinfo=UTC))
    async with tool_kit(tmp_path / "clocked.db", clock=clock) as kit:
        yield kit, clock


async def _seed(kit: ToolKit, user: User, space: Space) -> None:
    await kit.call_ok(user, space, "mood.log", {"score": 4, "at": "2030-04-01T10:00:00Z"})


async def _invalid_fields(kit: ToolKit, user: User, tool: str, args: dict[str, Any]) -> list[str]:
    outcome = await kit.call_as(user, None, tool, args)
    assert outcome.status == "invalid-input", outcome.public()
    assert outcome.error is not None
    return [f.field for f in outcome.error.fields]


async def test_log_defaults_to_now_and_stores_utc(clocked: tuple[ToolKit, FixedClock]) -> None:
    kit, _ = clocked
    alice = await kit.user()
    now = await kit.call_ok(alice, None, "mood.log", {"score": 3})
    assert now["at"] == "2030-05-01T12:00:00.000000Z"
    assert now["score"] == 3
    assert now["note"] is None
    earlier = await kit.call_ok(
        alice,
        None,
        "mood.log",
        {"score": 5, "note": "Sunny walk", "at": "2030-05-01T09:15:00+02:00"},
    )
    assert earlier["at"] == "2030-05-01T07:15:00.000000Z"
    assert earlier["note"] == "Sunny walk"


async def test_list_newest_first_with_average(mana_kit: ToolKit) -> None:
    alice = await mana_kit.user()
    for score, at in [
        (2, "2030-03-01T23:59:00Z"),
        (5, "2030-03-03T08:00:00Z"),
        (4, "2030-03-02T00:00:00Z"),
        (1, "2030-03-02T23:30:00-02:00"),
    ]:
        await mana_kit.call_ok(alice, None, "mood.log", {"score": score, "at": at})
    everything = await mana_kit.call_ok(alice, None, "mood.list", {})
    assert [e["score"] for e in everything["entries"]] == [5, 1, 4, 2]
    assert everything["average"] == 3.0
    # The -02:00 entry is 2030-03-03T01:30Z, so 2030-03-02 (UTC) holds only the score 4.
    one_day = await mana_kit.call_ok(
        alice, None, "mood.list", {"from": "2030-03-02", "to": "2030-03-02"}
    )
    assert [e["score"] for e in one_day["entries"]] == [4]
    assert one_day["average"] == 4.0
    window = await mana_kit.call_ok(
        alice, None, "mood.list", {"from": "2030-03-01", "to": "2030-03-02"}
    )
    assert [e["score"] for e in window["entries"]] == [4, 2]
    assert window["average"] == 3.0
    limited = await mana_kit.call_ok(alice, None, "mood.list", {"limit": 3})
    assert limited["average"] == 3.33
    empty = await mana_kit.call_ok(alice, None, "mood.list", {"from": "2031-01-01"})
    assert empty == {"entries": [], "average": None}


async def test_from_after_to_is_rejected(mana_kit: ToolKit) -> None:
    alice = await mana_kit.user()
    outcome = await mana_kit.call_as(
        alice, None, "mood.list", {"from": "2030-03-05", "to": "2030-03-01"}
    )
    assert outcome.status == "error", outcome.public()
    assert outcome.error is not None
    assert outcome.error.reason == "invalid-range"


async def test_validation_errors_name_the_field(mana_kit: ToolKit) -> None:
    alice = await mana_kit.user()
    assert await _invalid_fields(mana_kit, alice, "mood.log", {}) == ["score"]
    assert await _invalid_fields(mana_kit, alice, "mood.log", {"score": 0}) == ["score"]
    assert await _invalid_fields(mana_kit, alice, "mood.log", {"score": 6}) == ["score"]
    assert await _invalid_fields(mana_kit, alice, "mood.log", {"score": 3, "note": "n" * 501}) == [
        "note"
    ]
    naive = await mana_kit.call_as(
        alice, None, "mood.log", {"score": 3, "at": "2030-05-01T09:00:00"}
    )
    assert naive.status == "invalid-input"
    assert naive.error is not None
    assert [f.field for f in naive.error.fields] == ["at"]
    assert "timezone offset" in naive.error.fields[0].message
    assert await _invalid_fields(mana_kit, alice, "mood.list", {"to": "03/01/2030"}) == ["to"]
    assert await _invalid_fields(mana_kit, alice, "mood.update", {"id": "moo_x", "score": 0}) == [
        "score"
    ]
    assert await _invalid_fields(mana_kit, alice, "mood.update", {"id": "moo_x", "score": 6}) == [
        "score"
    ]
    assert await _invalid_fields(
        mana_kit, alice, "mood.update", {"id": "moo_x", "note": "n" * 501}
    ) == ["note"]
    assert await _invalid_fields(
        mana_kit, alice, "mood.update", {"id": "moo_x", "at": "2030-05-01T09:00:00Z"}
    ) == ["at"]
    assert await _invalid_fields(mana_kit, alice, "mood.delete", {}) == ["id"]


async def test_update_changes_only_given_fields(clocked: tuple[ToolKit, FixedClock]) -> None:
    kit, clock = clocked
    alice = await kit.user()
    entry = await kit.call_ok(
        alice, None, "mood.log", {"score": 2, "note": "Tired", "at": "2030-05-01T08:00:00Z"}
    )
    clock.advance(minutes=10)
    rescored = await kit.call_ok(alice, None, "mood.update", {"id": entry["id"], "score": 3})
    assert rescored["score"] == 3
    assert rescored["note"] == "Tired"
    assert rescored["at"] == entry["at"]
    assert rescored["createdAt"] == entry["createdAt"]
    assert rescored["updatedAt"] == "2030-05-01T12:10:00.000000Z"
    renoted = await kit.call_ok(
        alice, None, "mood.update", {"id": entry["id"], "note": "Tired, better after lunch"}
    )
    assert renoted["note"] == "Tired, better after lunch"
    assert renoted["score"] == 3
    kept = await kit.call_ok(
        alice, None, "mood.update", {"id": entry["id"], "score": None, "note": None}
    )
    assert kept == renoted
    listed = await kit.call_ok(alice, None, "mood.list", {})
    assert listed["entries"] == [renoted]
    assert listed["average"] == 3.0


async def test_clear_removes_the_note(clocked: tuple[ToolKit, FixedClock]) -> None:
    kit, clock = clocked
    alice = await kit.user()
    entry = await kit.call_ok(
        alice, None, "mood.log", {"score": 2, "note": "Tired", "at": "2030-05-01T08:00:00Z"}
    )
    clock.advance(minutes=10)
    plain = await kit.call_ok(alice, None, "mood.update", {"id": entry["id"], "clear": ["note"]})
    assert plain["note"] is None
    assert plain["score"] == 2
    assert plain["updatedAt"] == "2030-05-01T12:10:00.000000Z"
    listed = await kit.call_ok(alice, None, "mood.list", {})
    assert listed["entries"] == [plain]
    conflict = {"id": entry["id"], "note": "x", "clear": ["note"]}
    assert await _invalid_fields(kit, alice, "mood.update", conflict) == ["clear"]
    for name in ("score", "at"):
        args = {"id": entry["id"], "clear": [name]}
        assert await _invalid_fields(kit, alice, "mood.update", args) == ["clear.0"], name


async def test_delete_is_soft_idempotent_and_drops_it_from_the_average(mana_kit: ToolKit) -> None:
    alice = await mana_kit.user()
    keep = await mana_kit.call_ok(alice, None, "mood.log", {"score": 4})
    drop = await mana_kit.call_ok(alice, None, "mood.log", {"score": 1})
    deleted = await mana_kit.call_ok(alice, None, "mood.delete", {"id": drop["id"]})
    assert set(deleted) == {"id", "deletedAt"}
    assert deleted["id"] == drop["id"]
    again = await mana_kit.call_ok(alice, None, "mood.delete", {"id": drop["id"]})
    assert again == deleted
    listed = await mana_kit.call_ok(alice, None, "mood.list", {})
    assert [e["id"] for e in listed["entries"]] == [keep["id"]]
    assert listed["average"] == 4.0
    row = await mana_kit.db.read(
        lambda c: c.execute("SELECT deleted_at FROM records WHERE id = ?", (drop["id"],)).fetchone()
    )
    assert row["deleted_at"] == deleted["deletedAt"]
    gone = await mana_kit.call_as(alice, None, "mood.update", {"id": drop["id"], "score": 5})
    assert gone.error is not None
    assert gone.error.reason == "not-found"


async def test_unknown_id_is_not_found(mana_kit: ToolKit) -> None:
    alice = await mana_kit.user()
    calls: list[tuple[str, dict[str, Any]]] = [
        ("mood.update", {"id": "moo_missing", "score": 3}),
        ("mood.delete", {"id": "moo_missing"}),
    ]
    for tool, args in calls:
        outcome = await mana_kit.call_as(alice, None, tool, args)
        assert outcome.status == "error", outcome.public()
        assert outcome.error is not None
        assert outcome.error.reason == "not-found"
        assert "moo_missing" in outcome.error.message


async def test_delete_is_denied_until_allowed_in_the_space(tmp_path: Path) -> None:
    async with policy_kit(tmp_path / "db") as pk:
        alice = await pk.kit.user()
        entry = await pk.kit.call_ok(alice, None, "mood.log", {"score": 2})
        denied = await pk.kit.call_as(alice, None, "mood.delete", {"id": entry["id"]})
        assert denied.status == "denied", denied.public()
        assert denied.reason == "destructive-not-allowed"
        assert denied.reminder is not None
        assert "mood.update" in denied.reminder
        listed = await pk.kit.call_ok(alice, None, "mood.list", {})
        assert [e["id"] for e in listed["entries"]] == [entry["id"]]

        await pk.allowlist.allow(alice.id, None, ["mood.delete"], acknowledge=True)
        await pk.kit.call_ok(alice, None, "mood.delete", {"id": entry["id"]})
        assert (await pk.kit.call_ok(alice, None, "mood.list", {}))["entries"] == []


async def test_a_non_member_cannot_touch_another_spaces_entries(mana_kit: ToolKit) -> None:
    alice, mallory = await mana_kit.user(), await mana_kit.user()
    entry = await mana_kit.call_ok(alice, None, "mood.log", {"score": 5, "note": "Great day"})
    home = await mana_kit.personal(alice)
    for tool, args in [
        ("mood.update", {"id": entry["id"], "score": 1}),
        ("mood.delete", {"id": entry["id"]}),
    ]:
        outcome = await mana_kit.call_as(mallory, home, tool, args)
        assert outcome.status == "denied", outcome.public()
        assert outcome.error is not None
        assert outcome.error.reason == "not-a-member"
        outcome = await mana_kit.call_as(mallory, None, tool, args)
        assert outcome.status == "error", outcome.public()
        assert outcome.error is not None
        assert outcome.error.reason == "not-found"
    listed = await mana_kit.call_ok(alice, None, "mood.list", {})
    assert listed["entries"] == [entry]


async def test_deleted_entries_vanish_from_list(mana_kit: ToolKit) -> None:
    """Rows soft-deleted outside mood.delete (e.g. by sync) must not show either."""
    alice = await mana_kit.user()
    keep = await mana_kit.call_ok(alice, None, "mood.log", {"score": 2})
    drop = await mana_kit.call_ok(alice, None, "mood.log", {"score": 5})
    await mana_kit.db.write(
        lambda c: c.execute(
            "UPDATE records SET deleted_at = updated_at WHERE id = ?", (drop["id"],)
        )
    )
    listed = await mana_kit.call_ok(alice, None, "mood.list", {})
    assert [e["id"] for e in listed["entries"]] == [keep["id"]]
    assert listed["average"] == 2.0


async def test_list_is_space_isolated(mana_kit: ToolKit) -> None:
    await assert_space_isolated(mana_kit, "mood.list", {}, _seed)
    await assert_space_isolated(mana_kit, "mood.list", {"from": "2030-04-01"}, _seed)


async def test_mood_not_allowed_in_family_space(mana_kit: ToolKit) -> None:
    alice = await mana_kit.user()
    family = await mana_kit.space(alice, "family")
    calls: list[tuple[str, dict[str, Any]]] = [
        ("mood.log", {"score": 4}),
        ("mood.list", {}),
        ("mood.update", {"id": "moo_any", "score": 4}),
        ("mood.delete", {"id": "moo_any"}),
    ]
    for tool, args in calls:
        outcome = await mana_kit.call_as(alice, family, tool, args)
        assert outcome.status == "denied", outcome.public()
        assert outcome.error is not None
        assert outcome.error.reason == "module-not-allowed"
