"""Record ids and `created_at` come from the injected clock; equal timestamps order by id, in the
order the rows were made (the cause of the old flaky `test_clear_removes_due_date_and_notes`:
ids took the wall clock's millisecond plus randomness, so two todos made in the same wall
millisecond under a fixed clock listed in random order)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
import pytest_asyncio

from tool_registry.clock import FixedClock, SystemClock, iso
from tool_registry.ids import _ALPHABET, IdSource
from tool_registry.testing import ToolKit, tool_kit

START = datetime(2030, 5, 1, 12, 0, tzinfo=UTC)


def id_millis(record_id: str) -> int:
    """The time part of an id (10 base32 characters after the prefix)."""
    value = 0
    for char in record_id.split("_", 1)[1][:10]:
        value = value * 32 + _ALPHABET.index(char)
    return value


def millis(ts: datetime) -> int:
    return (ts - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)


@pytest.fixture
def frozen_wall_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every wall-clock read in `tool_registry.ids` gives the same nanosecond: ids must not
    depend on it."""
    frozen = time.time_ns()
    monkeypatch.setattr("tool_registry.ids.time.time_ns", lambda: frozen)


@pytest_asyncio.fixture
async def clocked(database_target: str) -> AsyncIterator[tuple[ToolKit, FixedClock]]:
    clock = FixedClock(START)
    async with tool_kit(database_target, clock=clock) as kit:
        yield kit, clock


def test_ids_of_one_clock_increase_strictly_even_when_time_stands_still_or_goes_back() -> None:
    clock = FixedClock(START)
    made = [clock.new_id("rec") for _ in range(200)]
    clock.set(START - timedelta(hours=1))  # a clock set back never reorders ids
    made += [clock.new_id("rec") for _ in range(200)]
    clock.advance(hours=2)
    made += [clock.new_id("rec") for _ in range(10)]
    assert made == sorted(made) and len(set(made)) == len(made)


def test_the_time_part_is_the_clock_millisecond() -> None:
    clock = FixedClock(START + timedelta(milliseconds=7))
    assert id_millis(clock.new_id("rec")) == millis(clock.now())
    assert id_millis(IdSource(lambda: START).new("x")) == millis(START)
    system = SystemClock()
    before = millis(system.now())
    assert before <= id_millis(system.new_id("rec")) <= millis(system.now())


@pytest.mark.usefixtures("frozen_wall_clock")
async def test_records_made_at_one_instant_list_in_creation_order(
    clocked: tuple[ToolKit, FixedClock],
) -> None:
    kit, _clock = clocked
    alice = await kit.user()
    titles = [f"todo {n:02d}" for n in range(25)]
    made = [await kit.call_ok(alice, None, "todo.create", {"title": t}) for t in titles]
    assert {m["createdAt"] for m in made} == {iso(START)}
    assert all(id_millis(m["id"]) == millis(START) for m in made)
    listed = await kit.call_ok(alice, None, "todo.list", {"limit": 100})
    assert [t["title"] for t in listed["todos"]] == titles


@pytest.mark.usefixtures("frozen_wall_clock")
async def test_users_and_spaces_take_ids_and_created_at_from_the_clock(
    clocked: tuple[ToolKit, FixedClock],
) -> None:
    kit, _clock = clocked
    owner = await kit.user()
    assert owner.created_at == iso(START) and id_millis(owner.id) == millis(START)
    spaces = [await kit.space(owner, "team", name=f"team {n}") for n in range(12)]
    assert all(s.created_at == iso(START) and id_millis(s.id) == millis(START) for s in spaces)
    mine = await kit.accounts.spaces_of(owner.id)
    assert [a.space.id for a in mine] == [(await kit.personal(owner)).id] + [s.id for s in spaces]
