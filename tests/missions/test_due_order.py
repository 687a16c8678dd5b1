"""Due missions come in one order on both backends: next run, then mission id (an explicit
column, not SQLite's rowid), so claims page through them the same way everywhere."""

from __future__ import annotations

from datetime import timedelta

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
