"""calendar module, through the real pipeline and SQLite store."""

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


def _event(title: str, start: str, end: str, **extra: str) -> dict[str, Any]:
    return {"title": title, "start": start, "end": end, **extra}


async def _seed(kit: ToolKit, user: User, space: Space) -> None:
    await kit.call_ok(
        user,
        space,
        "calendar.create",
        _event("Dentist", "2030-06-01T09:00:00+02:00", "2030-06-01T10:00:00+02:00"),
    )


async def _invalid_fields(kit: ToolKit, user: User, tool: str, args: dict[str, Any]) -> list[str]:
    outcome = await kit.call_as(user, None, tool, args)
    assert outcome.status == "invalid-input", outcome.public()
    assert outcome.error is not None
    return [f.field for f in outcome.error.fields]


async def _titles(
    kit: ToolKit, user: User, args: dict[str, Any], space: Space | None = None
) -> list[str]:
    listed = await kit.call_ok(user, space, "calendar.list", args)
    return [e["title"] for e in listed["events"]]


async def _error_reason(kit: ToolKit, user: User, tool: str, args: dict[str, Any]) -> str:
    outcome = await kit.call_as(user, None, tool, args)
    assert outcome.status == "error", outcome.public()
    assert outcome.error is not None
    return outcome.error.reason


async def test_create_stores_utc(mana_kit: ToolKit) -> None:
    alice = await mana_kit.user()
    event = await mana_kit.call_ok(
        alice,
        None,
        "calendar.create",
        _event(
            "Dinner",
            "2030-06-01T19:30:00+02:00",
            "2030-06-01T21:00:00+02:00",
            location="Luigi's",
            notes="Table for 4",
        ),
    )
    assert event["start"] == "2030-06-01T17:30:00.000000Z"
    assert event["end"] == "2030-06-01T19:00:00.000000Z"
    assert event["location"] == "Luigi's"
    assert event["notes"] == "Table for 4"
    point = await mana_kit.call_ok(
        alice,
        None,
        "calendar.create",
        _event("Reminder", "2030-06-02T08:00:00Z", "2030-06-02T08:00:00Z"),
    )
    assert point["start"] == point["end"]


async def test_end_before_start_is_invalid_range(mana_kit: ToolKit) -> None:
    alice = await mana_kit.user()
    args = _event("Backwards", "2030-06-01T10:00:00+00:00", "2030-06-01T11:30:00+02:00")
    assert await _error_reason(mana_kit, alice, "calendar.create", args) == "invalid-range"
    assert (await mana_kit.call_ok(alice, None, "calendar.list", {"from": "2030-01-01T00:00:00Z"}))[
        "events"
    ] == []


async def test_naive_datetimes_are_rejected(mana_kit: ToolKit) -> None:
    alice = await mana_kit.user()
    outcome = await mana_kit.call_as(
        alice, None, "calendar.create", _event("Naive", "2030-06-01T10:00:00", "2030-06-01T11:00Z")
    )
    assert outcome.status == "invalid-input"
    assert outcome.error is not None
    assert [f.field for f in outcome.error.fields] == ["start"]
    assert "timezone offset" in outcome.error.fields[0].message
    assert await _invalid_fields(mana_kit, alice, "calendar.list", {"to": "2030-06-01T10:00"}) == [
        "to"
    ]


async def test_list_returns_events_overlapping_the_range(mana_kit: ToolKit) -> None:
    alice = await mana_kit.user()
    for args in [
        _event("ends at from", "2030-06-01T09:00:00Z", "2030-06-01T10:00:00Z"),
        _event("starts at to", "2030-06-01T11:30:00Z", "2030-06-01T12:00:00Z"),
        _event("inside", "2030-06-01T12:30:00+02:00", "2030-06-01T12:45:00+02:00"),
        _event("spanning", "2030-06-01T08:00:00Z", "2030-06-01T13:00:00Z"),
        _event("instant at from", "2030-06-01T10:00:00Z", "2030-06-01T10:00:00Z"),
        _event("starts inside", "2030-06-01T11:00:00Z", "2030-06-01T15:00:00Z"),
        _event("next day", "2030-06-02T10:00:00Z", "2030-06-02T11:00:00Z"),
    ]:
        await mana_kit.call_ok(alice, None, "calendar.create", args)
    window = {"from": "2030-06-01T10:00:00Z", "to": "2030-06-01T13:30:00+02:00"}
    assert await _titles(mana_kit, alice, window) == [
        "spanning",
        "instant at from",
        "inside",
        "starts inside",
    ]
    assert await _titles(mana_kit, alice, {**window, "limit": 2}) == ["spanning", "instant at from"]
    listed = await mana_kit.call_ok(alice, None, "calendar.list", window)
    assert listed["from"] == "2030-06-01T10:00:00.000000Z"
    assert listed["to"] == "2030-06-01T11:30:00.000000Z"


async def test_list_defaults_to_the_next_30_days(clocked: tuple[ToolKit, FixedClock]) -> None:
    kit, _ = clocked
    alice = await kit.user()
    for args in [
        _event("past", "2030-04-30T09:00:00Z", "2030-04-30T10:00:00Z"),
        _event("soon", "2030-05-02T09:00:00Z", "2030-05-02T10:00:00Z"),
        _event("in six weeks", "2030-06-12T09:00:00Z", "2030-06-12T10:00:00Z"),
    ]:
        await kit.call_ok(alice, None, "calendar.create", args)
    listed = await kit.call_ok(alice, None, "calendar.list", {})
    assert listed["from"] == "2030-05-01T12:00:00.000000Z"
    assert listed["to"] == "2030-05-31T12:00:00.000000Z"
    assert [e["title"] for e in listed["events"]] == ["soon"]


async def test_list_to_before_from_is_invalid_range(mana_kit: ToolKit) -> None:
    alice = await mana_kit.user()
    args = {"from": "2030-06-02T00:00:00Z", "to": "2030-06-01T00:00:00Z"}
    assert await _error_reason(mana_kit, alice, "calendar.list", args) == "invalid-range"


async def test_update_rechecks_order_against_stored_times(mana_kit: ToolKit) -> None:
    alice = await mana_kit.user()
    event = await mana_kit.call_ok(
        alice,
        None,
        "calendar.create",
        _event("Standup", "2030-06-03T09:00:00Z", "2030-06-03T09:15:00Z", location="Room 1"),
    )
    eid = event["id"]
    too_late = {"id": eid, "start": "2030-06-03T10:00:00Z"}
    assert await _error_reason(mana_kit, alice, "calendar.update", too_late) == "invalid-range"
    too_early = {"id": eid, "end": "2030-06-03T08:00:00Z"}
    assert await _error_reason(mana_kit, alice, "calendar.update", too_early) == "invalid-range"
    moved = await mana_kit.call_ok(
        alice,
        None,
        "calendar.update",
        {"id": eid, "start": "2030-06-03T10:00:00Z", "end": "2030-06-03T10:15:00Z"},
    )
    assert moved["start"] == "2030-06-03T10:00:00.000000Z"
    assert moved["location"] == "Room 1"
    renamed = await mana_kit.call_ok(alice, None, "calendar.update", {"id": eid, "title": "Sync"})
    assert renamed["title"] == "Sync"
    assert renamed["end"] == "2030-06-03T10:15:00.000000Z"


async def test_clear_removes_location_and_notes(mana_kit: ToolKit) -> None:
    alice = await mana_kit.user()
    event = await mana_kit.call_ok(
        alice,
        None,
        "calendar.create",
        _event(
            "Review",
            "2030-06-04T09:00:00Z",
            "2030-06-04T10:00:00Z",
            location="Room 2",
            notes="Bring slides",
        ),
    )
    window = {"from": "2030-06-04T00:00:00Z", "to": "2030-06-05T00:00:00Z"}
    online = await mana_kit.call_ok(
        alice, None, "calendar.update", {"id": event["id"], "clear": ["location"]}
    )
    assert online["location"] is None
    assert online["notes"] == "Bring slides"
    assert (online["start"], online["end"]) == (event["start"], event["end"])
    listed = await mana_kit.call_ok(alice, None, "calendar.list", window)
    assert listed["events"] == [online]

    moved = await mana_kit.call_ok(
        alice,
        None,
        "calendar.update",
        {"id": event["id"], "start": "2030-06-04T09:30:00Z", "clear": ["notes", "location"]},
    )
    assert (moved["location"], moved["notes"]) == (None, None)
    assert moved["start"] == "2030-06-04T09:30:00.000000Z"
    listed = await mana_kit.call_ok(alice, None, "calendar.list", window)
    assert listed["events"] == [moved]
    # Clearing fields that are already empty is a no-op success.
    again = await mana_kit.call_ok(
        alice, None, "calendar.update", {"id": event["id"], "clear": ["notes"]}
    )
    assert again == moved


async def test_null_fields_and_null_clear_keep_event_details(mana_kit: ToolKit) -> None:
    alice = await mana_kit.user()
    event = await mana_kit.call_ok(
        alice,
        None,
        "calendar.create",
        _event("Lunch", "2030-06-05T12:00:00Z", "2030-06-05T13:00:00Z", location="Cafe"),
    )
    nulls = {"title": None, "start": None, "end": None, "location": None, "notes": None}
    same = await mana_kit.call_ok(
        alice, None, "calendar.update", {"id": event["id"], **nulls, "clear": None}
    )
    assert same == event


async def test_clear_conflicts_and_required_names_are_invalid(mana_kit: ToolKit) -> None:
    alice = await mana_kit.user()
    event = await mana_kit.call_ok(
        alice,
        None,
        "calendar.create",
        _event("Gig", "2030-06-06T20:00:00Z", "2030-06-06T23:00:00Z", location="Hall"),
    )
    conflict = {"id": event["id"], "location": "Club", "clear": ["location"]}
    outcome = await mana_kit.call_as(alice, None, "calendar.update", conflict)
    assert outcome.status == "invalid-input" and outcome.error is not None, outcome.public()
    assert [f.field for f in outcome.error.fields] == ["clear"]
    assert "'location'" in outcome.error.message
    for name in ("title", "start", "end", "place"):
        assert await _invalid_fields(
            mana_kit, alice, "calendar.update", {"id": event["id"], "clear": [name]}
        ) == ["clear.0"], name
    listed = await mana_kit.call_ok(alice, None, "calendar.list", {"from": "2030-06-06T00:00:00Z"})
    assert listed["events"] == [event]


async def test_validation_errors_name_the_field(mana_kit: ToolKit) -> None:
    alice = await mana_kit.user()
    ok = _event("t", "2030-06-01T09:00:00Z", "2030-06-01T10:00:00Z")
    assert await _invalid_fields(mana_kit, alice, "calendar.create", {**ok, "title": ""}) == [
        "title"
    ]
    assert await _invalid_fields(
        mana_kit, alice, "calendar.create", {"title": "t", "start": "2030-06-01T09:00:00Z"}
    ) == ["end"]
    assert await _invalid_fields(
        mana_kit, alice, "calendar.create", {**ok, "location": "l" * 201}
    ) == ["location"]
    assert await _invalid_fields(mana_kit, alice, "calendar.create", {**ok, "start": "soon"}) == [
        "start"
    ]
    assert await _invalid_fields(mana_kit, alice, "calendar.list", {"limit": 501}) == ["limit"]


async def test_unknown_id_is_not_found(mana_kit: ToolKit) -> None:
    alice = await mana_kit.user()
    assert (
        await _error_reason(mana_kit, alice, "calendar.update", {"id": "cal_missing", "title": "x"})
        == "not-found"
    )
    assert (
        await _error_reason(mana_kit, alice, "calendar.delete", {"id": "cal_missing"})
        == "not-found"
    )


async def test_deleted_event_vanishes_from_list(mana_kit: ToolKit) -> None:
    alice = await mana_kit.user()
    keep = await mana_kit.call_ok(
        alice, None, "calendar.create", _event("keep", "2030-06-01T09:00Z", "2030-06-01T10:00Z")
    )
    drop = await mana_kit.call_ok(
        alice, None, "calendar.create", _event("drop", "2030-06-01T09:00Z", "2030-06-01T10:00Z")
    )
    deleted = await mana_kit.call_ok(alice, None, "calendar.delete", {"id": drop["id"]})
    assert deleted["id"] == drop["id"]
    listed = await mana_kit.call_ok(alice, None, "calendar.list", {"from": "2030-06-01T00:00Z"})
    assert [e["id"] for e in listed["events"]] == [keep["id"]]
    again = await mana_kit.call_ok(alice, None, "calendar.delete", {"id": drop["id"]})
    assert again == deleted  # deleting twice is idempotent: same record, same deletedAt


async def test_list_is_space_isolated(mana_kit: ToolKit) -> None:
    args = {"from": "2030-06-01T00:00:00Z", "to": "2030-06-02T00:00:00Z"}
    await assert_space_isolated(mana_kit, "calendar.list", args, _seed)
    await assert_space_isolated(mana_kit, "calendar.list", args, _seed, space_type="family")


async def test_calendar_is_shared_in_a_family_space(mana_kit: ToolKit) -> None:
    alice, bob = await mana_kit.user(), await mana_kit.user()
    family = await mana_kit.space(alice, "family")
    await mana_kit.add_member(family, bob)
    event = await mana_kit.call_ok(
        alice,
        family,
        "calendar.create",
        _event("School play", "2030-06-05T17:00:00+02:00", "2030-06-05T18:00:00+02:00"),
    )
    assert await mana_kit.record_space(event["id"]) == family.id
    window = {"from": "2030-06-05T00:00:00Z"}
    assert await _titles(mana_kit, bob, window, family) == ["School play"]
    await mana_kit.call_ok(bob, family, "calendar.update", {"id": event["id"], "location": "Hall"})
    listed = await mana_kit.call_ok(alice, family, "calendar.list", window)
    assert listed["events"][0]["location"] == "Hall"
    assert await _titles(mana_kit, alice, window) == []
