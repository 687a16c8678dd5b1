"""Fenced leases, on both backends: every claim or takeover moves the mission's lease epoch on,
the iteration carries the epoch it was claimed under, and every write of an iteration whose
lease was taken over (progress, proposals, its end, the next run, the release) is refused with
`LeaseLost` and leaves nothing behind."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from agent_loop.scripted import ScriptedClient
from agent_loop.state import CancelFlag
from missions.leases import LeaseLost, new_owner
from missions.proposals import stage_proposal
from missions.runner import LEASE_LOST_REASON
from missions.scheduler import Claim, IterationEnd
from tests.missions.helpers import HOURLY, Blocker, World, call, open_world, scripted, turn


def _end(status: str = "completed") -> IterationEnd:
    return IterationEnd(
        status=status,
        phase="done",
        round=1,
        plan=(),
        summary="stale result",
        stop_reason="end_turn",
        usage=(1, 1, 2),
        transcript="[]",
    )


async def _row(world: World, sql: str, *params: Any) -> dict[str, Any]:
    row = await world.db.read(lambda c: c.execute(sql, params).fetchone())
    assert row is not None
    return {k: row[k] for k in row.keys()}  # noqa: SIM118 - a row iterates over values


async def _stage(world: World, claim: Claim, key: str) -> Any:
    return await stage_proposal(
        world.store,
        world.settings,
        lease=claim.lease,
        iteration_id=claim.iteration_id,
        mission=claim.mission,
        call_id="call-1",
        tool="todo.create",
        arguments={"title": "Buy soil"},
        rationale="needed",
        reason="policy",
        call_key=key,
    )


async def test_a_write_under_a_stale_epoch_is_refused_and_changes_nothing(world: World) -> None:
    owner = await world.user()
    space = await world.personal(owner)
    agent = await world.agent(owner, space)
    mission = await world.mission(owner, space, agent, cadence=HOURLY)
    await world.make_due(mission.id)
    first, second = world.scheduler(new_owner()), world.scheduler(new_owner())

    [stale] = (await first.claim_due(1)).claimed
    claimed = await _row(world, "SELECT lease_epoch FROM missions WHERE id = ?", mission.id)
    running = await _row(
        world, "SELECT lease_epoch FROM iterations WHERE id = ?", stale.iteration_id
    )
    assert claimed["lease_epoch"] == running["lease_epoch"] == stale.epoch

    # The first daemon stalls past its lease; the second one recovers the iteration and claims
    # the same window again, under a later epoch.
    world.clock.advance(seconds=world.settings.lease.total_seconds() + 1)
    report = await second.claim_due(1)
    assert report.recovered == [stale.iteration_id]
    [fresh] = report.claimed
    assert fresh.epoch > stale.epoch and fresh.run_key == stale.run_key
    staged = await _stage(world, fresh, "fence-key")
    before = await _row(world, "SELECT * FROM missions WHERE id = ?", mission.id)

    # Every kind of write the stalled daemon still makes is refused.
    with pytest.raises(LeaseLost):
        await world.store.save_progress(
            stale.lease, stale.iteration_id, phase="tools", round_=3, usage=(5, 5, 10)
        )
    with pytest.raises(LeaseLost):
        await _stage(world, stale, "fence-key")  # would move the proposal to its iteration
    with pytest.raises(LeaseLost):
        await _stage(world, stale, "another-key")  # would stage a new one
    assert await first.finish(stale, _end()) is False
    assert await first.release_all() == 0

    after = await _row(world, "SELECT * FROM missions WHERE id = ?", mission.id)
    assert after == before
    assert (after["lease_owner"], after["lease_epoch"]) == (second.owner, fresh.epoch)
    old = await _row(world, "SELECT * FROM iterations WHERE id = ?", stale.iteration_id)
    assert (old["status"], old["error_name"], old["round"], old["total_tokens"]) == (
        "failed",
        "Interrupted",
        0,
        0,
    )
    proposals = await world.db.read(
        lambda c: c.execute("SELECT iteration_id, call_key FROM proposals").fetchall()
    )
    assert [(p["iteration_id"], p["call_key"]) for p in proposals] == [
        (fresh.iteration_id, "fence-key")
    ]
    assert staged.proposal.iteration_id == fresh.iteration_id

    # The holder of the current epoch writes as usual.
    assert (
        await world.store.save_progress(fresh.lease, fresh.iteration_id, phase="tools", round_=1)
        is False
    )
    assert await second.finish(fresh, _end()) is True
    done = await _row(world, "SELECT * FROM missions WHERE id = ?", mission.id)
    assert done["lease_owner"] is None and done["next_run_at"] > before["next_run_at"]


async def test_each_claim_and_takeover_moves_the_epoch_on(world: World) -> None:
    owner = await world.user()
    space = await world.personal(owner)
    agent = await world.agent(owner, space)
    mission = await world.mission(owner, space, agent, cadence=HOURLY)
    await world.make_due(mission.id)
    scheduler = world.scheduler(new_owner())

    epochs = []
    for _ in range(3):
        claim = await scheduler.claim_now(space.id, mission.id)
        epochs.append(claim.epoch)
        assert await scheduler.finish(claim, _end()) is True
    assert epochs == sorted(set(epochs)) and len(epochs) == 3

    # A takeover by recovery moves it on too, so the recovered holder is fenced off at once.
    claim = await scheduler.claim_now(space.id, mission.id)
    other = world.scheduler(new_owner())
    world.clock.advance(seconds=world.settings.lease.total_seconds() + 1)
    assert await other.recover() == [claim.iteration_id]
    row = await _row(
        world, "SELECT lease_epoch, lease_owner FROM missions WHERE id = ?", mission.id
    )
    assert row["lease_owner"] is None and row["lease_epoch"] > claim.epoch
    with pytest.raises(LeaseLost):
        await world.store.save_progress(claim.lease, claim.iteration_id, phase="model", round_=1)


async def test_a_runner_that_lost_its_lease_stops_at_the_end_of_the_round(
    database_target: str,
) -> None:
    blocker = Blocker()
    async with open_world(database_target, extra_tools=[blocker.spec()]) as world:
        owner = await world.user()
        space = await world.personal(owner)
        agent = await world.agent(owner, space)
        mission = await world.mission(owner, space, agent, cadence=HOURLY)
        await world.make_due(mission.id)
        clients: list[ScriptedClient] = []
        llm = scripted(
            [
                turn("Waiting.", call("block.wait")),
                turn("Next.", call("todo.list")),
                turn("Done."),
            ],
            clients,
        )
        runner = world.runner(llm)
        [claim] = (await runner.scheduler.claim_due(1)).claimed
        flag = CancelFlag()
        task = asyncio.create_task(runner.run_claim(claim, cancel=flag))
        await blocker.entered.wait()

        # Meanwhile its lease expires and another daemon takes the mission over.
        world.clock.advance(seconds=world.settings.lease.total_seconds() + 1)
        takeover = await world.scheduler(new_owner()).claim_due(1)
        assert takeover.recovered == [claim.iteration_id]
        blocker.release.set()
        ended = await task
        listed = await world.count(
            "SELECT COUNT(*) FROM audit_log WHERE tool = ? AND invoker = 'mission-runner'",
            "todo.list",
        )

    # The refused progress write stopped the loop before its next round (through the run's
    # cancel flag): the model was asked once, the next round's call never ran, and the row is
    # as the takeover recorded it.
    assert flag.reason == LEASE_LOST_REASON
    assert [len(c.requests) for c in clients] == [1]
    assert listed == 0
    assert (ended.status, ended.error_name) == ("failed", "Interrupted")
