"""Due missions come in one order on both backends: next run, then mission id (an explicit
column, not SQLite's rowid), so claims page through them the same way everywhere."""

from __future__ import annotations

import asyncio
import threading
from datetime import timedelta
from typing import Any

import pytest

from tests.missions.helpers import HOURLY, World


async def test_due_order_is_next_run_then_id(world: World) -> None:
    owner = await world.user()
    space = await world.personal(owner)
    agent = await world.agent(owner, space, max_concurrent=10)
    now = world.clock.now()
    created = [await world.mission(owner, space, agent, cadence=HOURLY) for _ in range(6)]
    # Two due times, three missions each, made due in an order unlike their ids.
    for i, mission in enumerate(reversed(created)):
        await world.make_due(mission.id, now - timedelta(minutes=1 + i % 2))
    stored = [await world.store.require_mission(space.id, m.id) for m in created]
    expected = sorted((m.next_run_at or "", m.id) for m in stored)
    assert len({at for at, _ in expected}) == 2

    due = await world.scheduler().due()
    assert due == [(mission_id, at) for at, mission_id in expected]
    claimed = (await world.scheduler().claim_due(6)).claimed
    assert [c.mission.id for c in claimed] == [mission_id for _, mission_id in expected]


async def test_a_claim_holds_only_the_rows_it_can_take(world: World) -> None:
    """PostgreSQL: while one daemon's claim (one free slot) is deciding, another daemon's claim
    passes over only the rows the first one holds, not every due mission."""
    if world.db.dialect == "sqlite":
        pytest.skip("SQLite has one writer: two claims never overlap")
    owner = await world.user()
    space = await world.personal(owner)
    agent = await world.agent(owner, space, max_concurrent=10)
    for _ in range(10):
        mission = await world.mission(owner, space, agent, cadence=HOURLY)
        await world.make_due(mission.id)
    first, second = world.scheduler(), world.scheduler()
    deciding, go_on = threading.Event(), threading.Event()
    original = first._slot

    def paused_slot(*args: Any, **kwargs: Any) -> Any:
        deciding.set()  # the first claim holds its due rows now
        if not go_on.wait(timeout=60):
            raise TimeoutError("the test never let the first claim go on")
        return original(*args, **kwargs)

    first._slot = paused_slot  # type: ignore[method-assign]
    slow = asyncio.create_task(first.claim_due(1))
    try:
        assert await asyncio.to_thread(deciding.wait, 60)
        fast = await second.claim_due(5)
    finally:
        go_on.set()
    late = await slow

    assert len(fast.claimed) == 5 and len(late.claimed) == 1
    taken = [c.mission.id for c in (*fast.claimed, *late.claimed)]
    assert len(set(taken)) == 6
