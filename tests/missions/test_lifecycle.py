"""Completing and archiving missions: never due again, next run cleared, a running iteration
finishes without scheduling anything, resume rules, who may do it, the `list` filter."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from missions.cadence import MANUAL
from missions.models import MissionState
from missions.scheduler import IterationEnd
from tests.missions.helpers import (
    HOURLY,
    Blocker,
    World,
    call,
    open_world,
    query_plan,
    scripted,
    turn,
)
from tool_registry.clock import iso
from tool_registry.errors import ConflictError, NotFoundError, PermissionDeniedError

RETIRE = ("complete", "archive")


async def _retire(world: World, how: str, user_id: str, space_id: str, mission_id: str) -> None:
    state: MissionState = "done" if how == "complete" else "archived"
    await world.service.set_state(
        user_id=user_id, space_id=space_id, mission_id=mission_id, state=state
    )


async def test_done_and_archived_missions_are_never_due(world: World) -> None:
    owner = await world.user()
    space = await world.personal(owner)
    agent = await world.agent(owner, space, max_concurrent=5)
    active = await world.mission(owner, space, agent, title="active", cadence=HOURLY)
    done = await world.mission(owner, space, agent, title="done", cadence=HOURLY)
    archived = await world.mission(owner, space, agent, title="archived", cadence=HOURLY)

    completed = await world.service.set_state(
        state="done", user_id=owner.id, space_id=space.id, mission_id=done.id
    )
    retired = await world.service.set_state(
        state="archived", user_id=owner.id, space_id=space.id, mission_id=archived.id
    )
    assert (completed.state, completed.next_run_at, completed.window_at) == ("done", None, None)
    assert (retired.state, retired.next_run_at, retired.window_at) == ("archived", None, None)

    # Even with a due time in the past (as a stale row would have), only the active one is due:
    # the due query (and its partial index) filters on state = 'active'.
    for m in (active, done, archived):
        await world.make_due(m.id)
    scheduler = world.scheduler()
    assert [mission_id for mission_id, _ in await scheduler.due()] == [active.id]
    plan = await query_plan(
        world.db,
        "SELECT id, next_run_at FROM missions WHERE state = 'active' AND next_run_at <= ? "
        "ORDER BY next_run_at, id LIMIT ?",
        (iso(world.clock.now()), 100),
    )
    assert "missions_due" in plan

    summary = await world.daemon(scripted([turn("ok")])).run_once()
    assert summary.claimed == 1
    assert [len(await world.iterations(m)) for m in (active, done, archived)] == [1, 0, 0]


@pytest.mark.parametrize("how", RETIRE)
async def test_a_running_iteration_finishes_and_schedules_nothing(
    database_target: str, how: str
) -> None:
    blocker = Blocker()
    async with open_world(database_target, extra_tools=[blocker.spec()]) as world:
        owner = await world.user()
        space = await world.personal(owner)
        agent = await world.agent(owner, space)
        mission = await world.mission(owner, space, agent, cadence=HOURLY)
        await world.make_due(mission.id)
        runner = world.runner(scripted([turn("Wait.", call("block.wait")), turn("Done.")]))
        [claim] = (await runner.scheduler.claim_due(1)).claimed
        task = asyncio.create_task(runner.run_claim(claim))
        await blocker.entered.wait()

        await _retire(world, how, owner.id, space.id, mission.id)
        # Not cancelled: no cancel flag is set on the running iteration.
        assert not await world.store.cancel_requested(claim.iteration_id)
        blocker.release.set()
        it = await task

        assert it.status == "completed" and it.summary == "Done."
        after = await world.store.find_mission(space.id, mission.id)
        assert after is not None
        assert after.state == ("done" if how == "complete" else "archived")
        assert after.next_run_at is None and after.lease_owner is None
        assert after.last_status == "completed"
        world.clock.advance(days=2)
        assert (await world.daemon(scripted([turn("ok")])).run_once()).claimed == 0


@pytest.mark.parametrize("how", RETIRE)
async def test_a_failed_or_interrupted_iteration_of_a_retired_mission_schedules_nothing(
    world: World, how: str
) -> None:
    owner = await world.user()
    space = await world.personal(owner)
    agent = await world.agent(owner, space)
    mission = await world.mission(owner, space, agent, cadence=HOURLY)

    # A failed run of a mission retired meanwhile is not backed off into a next run.
    await world.make_due(mission.id)
    scheduler = world.scheduler()
    [claim] = (await scheduler.claim_due(1)).claimed
    await _retire(world, how, owner.id, space.id, mission.id)
    end = IterationEnd(
        status="failed",
        phase="model",
        round=1,
        plan=(),
        summary=None,
        stop_reason=None,
        usage=(0, 0, 0),
        transcript=None,
        error_name="Boom",
        error_message="the model failed",
        error_phase="model",
    )
    assert await scheduler.finish(claim, end)
    failed = await world.store.find_mission(space.id, mission.id)
    assert failed is not None and failed.next_run_at is None and failed.lease_owner is None

    # An interrupted run (its holder's lease expired) of a mission that already failed once is
    # recovered as failed, but not backed off into a next run either.
    other = await world.mission(owner, space, agent, title="other", cadence=HOURLY)
    await world.make_due(other.id)
    await world.db.write(
        lambda c: c.execute("UPDATE missions SET failures = 1 WHERE id = ?", (other.id,))
    )
    [lost] = (await world.scheduler().claim_due(1)).claimed
    await _retire(world, how, owner.id, space.id, other.id)
    world.clock.advance(seconds=world.settings.lease.total_seconds() + 1)
    report = await world.scheduler().claim_due(5)
    assert report.recovered == [lost.iteration_id] and report.claimed == []
    recovered = await world.store.find_mission(space.id, other.id)
    assert recovered is not None
    assert recovered.next_run_at is None and recovered.failures == 2


async def test_resume_reactivates_a_done_mission_but_not_an_archived_one(world: World) -> None:
    owner = await world.user()
    space = await world.personal(owner)
    agent = await world.agent(owner, space)
    hourly = await world.mission(owner, space, agent, title="hourly", cadence=HOURLY)
    manual = await world.mission(owner, space, agent, title="manual", cadence=MANUAL)
    archived = await world.mission(owner, space, agent, title="gone", cadence=HOURLY)
    ids = {"user_id": owner.id, "space_id": space.id}

    await world.service.set_state(state="done", **ids, mission_id=hourly.id)
    await world.service.set_state(state="done", **ids, mission_id=manual.id)
    await world.service.set_state(state="archived", **ids, mission_id=archived.id)
    world.clock.advance(hours=5, minutes=17)
    resumed = await world.service.set_state(state="active", **ids, mission_id=hourly.id)
    assert resumed.state == "active"
    assert resumed.next_run_at == iso(world.clock.now() + timedelta(hours=1))
    assert resumed.window_at == resumed.next_run_at
    again = await world.service.set_state(state="active", **ids, mission_id=manual.id)
    assert again.state == "active" and again.next_run_at is None
    world.clock.advance(hours=1)
    assert [m for m, _ in await world.scheduler().due()] == [hourly.id]

    with pytest.raises(
        ConflictError, match="archived; archiving is final, so it cannot be resumed"
    ):
        await world.service.set_state(state="active", **ids, mission_id=archived.id)
    with pytest.raises(ConflictError, match="cannot be completed"):
        await world.service.set_state(state="done", **ids, mission_id=archived.id)
    with pytest.raises(ConflictError, match="cannot be paused"):
        await world.service.set_state(state="paused", **ids, mission_id=archived.id)
    # Archiving again is a no-op; the mission stays archived with no next run.
    still = await world.service.set_state(state="archived", **ids, mission_id=archived.id)
    assert still.state == "archived" and still.next_run_at is None
    # A done mission can be archived too.
    done_then_archived = await world.service.set_state(
        state="archived", **ids, mission_id=hourly.id
    )
    assert done_then_archived.state == "archived" and done_then_archived.next_run_at is None


@pytest.mark.parametrize("how", RETIRE)
async def test_only_the_mission_owner_or_a_manager_may_retire_it(world: World, how: str) -> None:
    owner = await world.user()
    member = await world.user()
    admin = await world.user()
    outsider = await world.user()
    team = await world.pipeline.accounts.create_space(owner.id, type_="team", name="Team")
    await world.pipeline.accounts.add_member(team.id, member.id, "member")
    await world.pipeline.accounts.add_member(team.id, admin.id, "admin")
    agent = await world.agent(owner, team)
    owners = await world.mission(owner, team, agent, title="owner's", cadence=HOURLY)
    members = await world.mission(member, team, agent, title="member's", cadence=HOURLY)

    with pytest.raises(PermissionDeniedError, match="mission's owner"):
        await _retire(world, how, member.id, team.id, owners.id)
    with pytest.raises(Exception, match="not a member"):
        await _retire(world, how, outsider.id, team.id, owners.id)
    untouched = await world.store.find_mission(team.id, owners.id)
    assert untouched is not None and untouched.state == "active"

    await _retire(world, how, member.id, team.id, members.id)  # the mission's own owner
    await _retire(world, how, admin.id, team.id, owners.id)  # a manager of the space
    states = {m.id: m.state for m in await world.store.list_missions(team.id)}
    want = "done" if how == "complete" else "archived"
    assert states == {owners.id: want, members.id: want}

    with pytest.raises(NotFoundError, match="no mission 'msn_nope' in this space"):
        await _retire(world, how, owner.id, team.id, "msn_nope")


async def test_list_hides_archived_missions_unless_asked(world: World) -> None:
    owner = await world.user()
    space = await world.personal(owner)
    agent = await world.agent(owner, space)
    kept = await world.mission(owner, space, agent, title="kept")
    done = await world.mission(owner, space, agent, title="done")
    gone = await world.mission(owner, space, agent, title="gone")
    ids = {"user_id": owner.id, "space_id": space.id}
    await world.service.set_state(state="done", **ids, mission_id=done.id)
    await world.service.set_state(state="archived", **ids, mission_id=gone.id)

    async def titles(state: str | None = None, *, include_archived: bool = True) -> set[str]:
        found = await world.service.list_missions(
            user_id=owner.id, space_id=space.id, state=state, include_archived=include_archived
        )
        return {m.title for m in found}

    assert await titles(include_archived=False) == {kept.title, done.title}
    assert await titles() == {"kept", "done", "gone"}
    assert await titles("archived", include_archived=False) == {"gone"}
