"""`run_mission`: prompt, recording, usage and budget, failures and backoff, cancellation."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from agent_loop.scripted import ScriptedClient
from missions.cadence import DailyCadence
from missions.runner import run_mission
from tests.missions.helpers import HOURLY, Blocker, World, call, open_world, scripted, turn
from tool_registry.clock import iso


async def test_system_prompt_recording_and_usage(world: World) -> None:
    owner = await world.user()
    space = await world.personal(owner)
    agent = await world.agent(
        owner,
        space,
        name="Ada",
        role="Keeps the household running",
        system_prompt="Be brief.",
        memory="The user waters plants on Sundays.",
    )
    mission = await world.mission(
        owner,
        space,
        agent,
        title="Plants",
        objective="Make sure the plants get water",
        concept="Use todos, not notes",
        cadence=DailyCadence(kind="daily", hour=9, timezone="Europe/Berlin"),
    )
    clients: list[ScriptedClient] = []
    llm = scripted(
        [
            turn("Checking.", call("todo.list"), call("habits.list"), usage=(200, 20)),
            turn("All good.", usage=(300, 30)),
        ],
        clients,
    )

    it = await run_mission(world.runner(llm), mission)

    system = clients[0].requests[0].system
    for text in (
        "Ada",
        "Keeps the household running",
        "Be brief.",
        "waters plants on Sundays",
        "Make sure the plants get water",
        "Use todos, not notes",
        "Friday, 2026-11-20 09:00 (Europe/Berlin)",  # the clock's 08:00 UTC, in the mission zone
    ):
        assert text in system, text
    assert it.status == "completed" and it.phase == "done" and it.round == 2
    assert it.stop_reason == "assistant-stop" and it.summary == "All good."
    assert [(s.round, s.index, s.tool, s.status) for s in it.plan] == [
        (1, 0, "todo.list", "executed"),
        (1, 1, "habits.list", "executed"),
    ]
    assert (it.input_tokens, it.output_tokens, it.total_tokens) == (500, 50, 550)
    stored = await world.store.iteration_by_id(it.id, transcript=True)
    assert stored.transcript is not None and len(stored.transcript) == 4
    assert await world.store.tokens_used(agent.id) == 550
    assert world.metrics.value("mana_mission_tokens_total", kind="input") == 500
    assert world.metrics.value("mana_mission_tool_calls_total", status="executed") == 2
    assert world.metrics.value("mana_iterations_total", status="completed") == 1


async def test_token_budget_skips_the_agent_until_the_window_rolls(world: World) -> None:
    owner = await world.user()
    space = await world.personal(owner)
    agent = await world.agent(owner, space, max_tokens_per_day=500)
    mission = await world.mission(owner, space, agent, cadence=HOURLY)
    llm = scripted([turn("Busy day.", usage=(400, 200))])
    await world.make_due(mission.id)
    first = await world.daemon(llm).run_once()
    assert first.statuses == {"completed": 1}

    world.clock.advance(hours=1)
    second = await world.daemon(llm).run_once()

    assert second.claimed == 0 and second.skipped == {"out-of-budget": 1}
    [skip] = await world.store.skips(space.id, mission.id)
    assert skip.reason == "out-of-budget" and "600 of 500" in (skip.detail or "")
    after = await world.store.find_mission(space.id, mission.id)
    assert after is not None and after.skip_reason == "out-of-budget"
    assert after.next_run_at == iso(world.clock.now() + timedelta(hours=1))  # window skipped
    assert world.metrics.value("mana_missions_skipped_total", reason="out-of-budget") == 1

    world.clock.advance(hours=24)
    third = await world.daemon(llm).run_once()
    assert third.statuses == {"completed": 1}


async def test_budget_reminder_and_stop_inside_a_run(world: World) -> None:
    owner = await world.user()
    space = await world.personal(owner)
    agent = await world.agent(owner, space, max_tokens_per_day=1000)
    mission = await world.mission(owner, space, agent)
    clients: list[ScriptedClient] = []
    llm = scripted(
        [
            turn("Reading.", call("todo.list"), usage=(900, 200)),
            turn("More.", call("todo.list"), usage=(100, 10)),
            turn("never asked"),
        ],
        clients,
    )

    it = await run_mission(world.runner(llm), mission)

    assert it.stop_reason == "budget-exhausted" and it.status == "completed"
    assert any("Token budget exhausted" in r for r in clients[0].requests[1].reminders)
    assert world.metrics.value("mana_mission_reminders_total", producer="budget") >= 1


async def test_a_failed_iteration_backs_off_instead_of_retrying_hot(world: World) -> None:
    owner = await world.user()
    space = await world.personal(owner)
    agent = await world.agent(owner, space)
    mission = await world.mission(owner, space, agent, cadence=HOURLY)
    broken = scripted([turn("Start.", call("todo.list"))])  # the model "fails" in round 2
    await world.make_due(mission.id)
    window = world.clock.now()

    first = await world.daemon(broken).run_once()

    assert first.statuses == {"failed": 1}
    [failed] = await world.iterations(mission)
    assert failed.error_name == "LLMError" and failed.error_phase == "model"
    assert failed.plan[0].status == "executed"
    after = await world.store.find_mission(space.id, mission.id)
    assert after is not None and after.failures == 1
    assert after.next_run_at == iso(window + timedelta(minutes=1))
    assert after.window_at == iso(window)  # the retry belongs to the same window

    again = await world.daemon(broken).run_once()  # same instant: nothing is due
    assert again.claimed == 0

    world.clock.advance(minutes=1)
    await world.daemon(broken).run_once()
    after = await world.store.find_mission(space.id, mission.id)
    assert after is not None and after.failures == 2
    assert after.next_run_at == iso(world.clock.now() + timedelta(minutes=2))
    retries = await world.iterations(mission)
    assert [i.attempt for i in retries] == [1, 2]
    assert len({i.run_key for i in retries}) == 1

    world.clock.advance(minutes=2)
    fixed = scripted([turn("Fine now.")])
    assert (await world.daemon(fixed).run_once()).statuses == {"completed": 1}
    healed = await world.store.find_mission(space.id, mission.id)
    assert healed is not None and healed.failures == 0 and healed.last_error is None
    assert healed.next_run_at == iso(window + timedelta(hours=1))


async def test_cancel_stops_the_loop_between_rounds(database_target: str) -> None:
    blocker = Blocker()
    async with open_world(database_target, extra_tools=[blocker.spec()]) as world:
        owner = await world.user()
        space = await world.personal(owner)
        agent = await world.agent(owner, space)
        mission = await world.mission(owner, space, agent)
        llm = scripted(
            [
                turn("Waiting.", call("block.wait")),
                turn("Next.", call("todo.list")),
                turn("Done."),
            ]
        )
        task = asyncio.create_task(run_mission(world.runner(llm), mission))
        await blocker.entered.wait()

        flagged = await world.service.cancel_mission(
            user_id=owner.id, space_id=space.id, mission_id=mission.id
        )
        blocker.release.set()
        it = await task

    assert len(flagged) == 1 and flagged[0] == it.id
    assert it.status == "cancelled" and it.stop_reason == "cancelled"
    assert it.round == 1 and [s.tool for s in it.plan] == ["block.wait"]


async def test_paused_and_archived_agents_and_missions_are_skipped(world: World) -> None:
    owner = await world.user()
    space = await world.personal(owner)
    paused_agent = await world.agent(owner, space, name="p")
    archived_agent = await world.agent(owner, space, name="a")
    zero_agent = await world.agent(owner, space, name="z", max_tokens_per_day=0)
    live_agent = await world.agent(owner, space, name="live")
    missions = {
        "paused": await world.mission(owner, space, paused_agent, cadence=HOURLY),
        "archived": await world.mission(owner, space, archived_agent, cadence=HOURLY),
        "zero": await world.mission(owner, space, zero_agent, cadence=HOURLY),
        "paused-mission": await world.mission(owner, space, live_agent, cadence=HOURLY),
    }
    await world.service.set_agent_state(
        user_id=owner.id, space_id=space.id, ref="p", state="paused"
    )
    await world.service.set_agent_state(
        user_id=owner.id, space_id=space.id, ref="a", state="archived"
    )
    for m in missions.values():
        await world.make_due(m.id)
    await world.service.set_state(
        state="paused",
        user_id=owner.id,
        space_id=space.id,
        mission_id=missions["paused-mission"].id,
    )

    summary = await world.daemon(scripted([turn("hi")])).run_once()

    assert summary.claimed == 0
    assert summary.skipped == {"agent-paused": 2, "agent-archived": 1}
    reasons = {
        name: [s.reason for s in await world.store.skips(space.id, m.id)]
        for name, m in missions.items()
    }
    assert reasons == {
        "paused": ["agent-paused"],
        "archived": ["agent-archived"],
        "zero": ["agent-paused"],
        "paused-mission": [],
    }

    # Resuming a mission schedules it from now (no backlog).
    resumed = await world.service.set_state(
        state="active",
        user_id=owner.id,
        space_id=space.id,
        mission_id=missions["paused-mission"].id,
    )
    assert resumed.next_run_at == iso(world.clock.now() + timedelta(hours=1))


async def test_agent_concurrency_limit_defers_and_then_runs(world: World) -> None:
    owner = await world.user()
    space = await world.personal(owner)
    agent = await world.agent(owner, space, max_concurrent=1)
    first = await world.mission(owner, space, agent, title="one", cadence=HOURLY)
    second = await world.mission(owner, space, agent, title="two", cadence=HOURLY)
    await world.make_due(first.id)
    await world.make_due(second.id)

    summary = await world.daemon(scripted([turn("ok")]), concurrency=4).run_once()

    assert summary.statuses == {"completed": 2}
    assert summary.skipped == {"agent-busy": 1}
    skipped = [s for m in (first, second) for s in await world.store.skips(space.id, m.id)]
    assert [s.reason for s in skipped] == ["agent-busy"]
