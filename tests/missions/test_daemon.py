"""The daemon in-process: leases across two database handles, recovery of interrupted
iterations, missed windows, drain on stop, `/health` and `/metrics`."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from datetime import timedelta

from missions.daemon import Daemon
from missions.leases import Owner, _host, holder_is_dead, new_owner
from missions.metrics import MissionMetrics
from missions.proposals import fingerprint
from missions.runner import MissionRunner
from missions.scheduler import Scheduler
from missions.schema import MISSIONS_MIGRATIONS
from missions.settings import DaemonSettings
from tests.missions.helpers import (
    HOURLY,
    Blocker,
    World,
    build_pipeline,
    call,
    open_world,
    scripted,
    turn,
)
from tool_registry.clock import iso
from tool_registry.context import CallContext
from tool_registry.store import open_database


def dead_owner() -> str:
    """The owner id of a process on this host that has exited."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return str(Owner(_host(), proc.pid, "1", "dead"))


async def test_two_daemons_on_one_database_run_each_due_mission_once(world: World) -> None:
    missions = []
    for u in range(20):
        owner = await world.user()
        space = await world.personal(owner)
        agent = await world.agent(owner, space, max_concurrent=10)
        for i in range(10):
            m = await world.mission(owner, space, agent, title=f"m{u}-{i}", cadence=HOURLY)
            await world.make_due(m.id)
            missions.append(m)
    llm = scripted([turn("Look.", call("todo.list")), turn("Done.")])
    other_db = await open_database(world.target, MISSIONS_MIGRATIONS)
    try:
        pipeline_b, service_b, _ = build_pipeline(other_db, world.clock)
        scheduler_b = Scheduler(other_db, world.clock, world.settings, owner=new_owner())
        runner_b = MissionRunner(
            pipeline_b,
            service_b.store,
            scheduler_b,
            llm,
            settings=world.settings,
            clock=world.clock,
        )
        daemon_b = Daemon(
            runner_b,
            DaemonSettings(concurrency=8, port=None),
            metrics=MissionMetrics(),
            clock=world.clock,
        )
        daemon_a = world.daemon(llm, concurrency=8)
        a, b = await asyncio.gather(daemon_a.run_once(), daemon_b.run_once())
        await pipeline_b.aclose()
    finally:
        await other_db.close()

    assert a.claimed + b.claimed == 200
    per_mission = await world.db.read(
        lambda c: c.execute(
            "SELECT mission_id, COUNT(*) AS n, MIN(status) AS s FROM iterations GROUP BY mission_id"
        ).fetchall()
    )
    assert len(per_mission) == 200
    assert {(r["n"], r["s"]) for r in per_mission} == {(1, "completed")}
    assert await world.count("SELECT COUNT(*) FROM missions WHERE lease_owner IS NOT NULL") == 0
    assert (
        await world.count(
            "SELECT COUNT(*) FROM missions WHERE next_run_at <= ?", iso(world.clock.now())
        )
        == 0
    )


async def test_a_dead_holder_is_recovered_and_the_rerun_does_not_repeat_writes(
    world: World,
) -> None:
    owner = await world.user()
    space = await world.personal(owner)
    from policy.agent_policy import AgentToolPolicy

    agent = await world.agent(
        owner,
        space,
        policy=AgentToolPolicy(
            tools={"todo.create": "auto"},
            by_hint={"read": "auto", "write": "propose", "destructive": "deny"},
        ),
    )
    mission = await world.mission(owner, space, agent, cadence=HOURLY)
    await world.make_due(mission.id)
    window = world.clock.now()
    # A process that has since died claimed the mission, made the write of round 1 with the key
    # the runner derives, and was in round 2's tool calls when it stopped.
    ghost = world.scheduler(dead_owner())
    [claim] = (await ghost.claim_due(1)).claimed
    args = {"title": "Buy soil"}
    key = f"{claim.run_key}:{fingerprint('todo.create', args)[:32]}:1"
    first = await world.pipeline.invoke(
        "todo.create",
        args,
        CallContext(
            user_id=owner.id, space=space.id, invoker="mission-runner", idempotency_key=key
        ),
    )
    assert first.ok
    await world.store.save_progress(claim.lease, claim.iteration_id, phase="tools", round_=2)

    llm = scripted(
        [
            turn("Add it.", call("todo.create", title="Buy soil")),
            turn("Check.", call("todo.list")),
            turn("Done."),
        ]
    )
    summary = await world.daemon(llm).run_once()

    assert summary.recovered == 1 and summary.statuses == {"completed": 1}
    interrupted, rerun = await world.iterations(mission)
    assert interrupted.status == "failed" and interrupted.error_name == "Interrupted"
    assert interrupted.phase == "tools" and interrupted.error_phase == "tools"
    assert rerun.status == "completed" and rerun.run_key == interrupted.run_key
    assert rerun.attempt == 2 and rerun.window_at == iso(window)
    assert rerun.plan[0].tool == "todo.create" and rerun.plan[0].replayed
    assert [t["title"] for t in await world.records("todos", space)] == ["Buy soil"]
    healed = await world.store.find_mission(space.id, mission.id)
    assert healed is not None and healed.failures == 0
    assert healed.next_run_at == iso(window + timedelta(hours=1))
    assert world.metrics.value("mana_iterations_recovered_total") == 1


async def test_a_live_holder_elsewhere_is_only_recovered_after_its_lease_expires(
    world: World,
) -> None:
    owner = await world.user()
    space = await world.personal(owner)
    agent = await world.agent(owner, space)
    mission = await world.mission(owner, space, agent, cadence=HOURLY)
    await world.make_due(mission.id)
    elsewhere = world.scheduler("another-host:4242:99:abcd")
    assert not holder_is_dead(elsewhere.owner)
    await elsewhere.claim_due(1)
    llm = scripted([turn("ok")])

    assert (await world.daemon(llm).run_once()).claimed == 0  # lease held: not ours to run

    world.clock.advance(seconds=world.settings.lease.total_seconds() + 1)
    summary = await world.daemon(llm).run_once()
    assert summary.recovered == 1 and summary.statuses == {"completed": 1}


async def test_missed_window_runs_once_after_a_day_down(world: World) -> None:
    owner = await world.user()
    space = await world.personal(owner)
    agent = await world.agent(owner, space)
    mission = await world.mission(owner, space, agent, cadence=HOURLY)
    due = mission.next_run
    assert due is not None
    world.clock.set(due + timedelta(days=1, minutes=10))  # the daemon was down for a day

    first = await world.daemon(scripted([turn("ok")])).run_once()
    second = await world.daemon(scripted([turn("ok")])).run_once()

    assert first.claimed == 1 and second.claimed == 0
    assert len(await world.iterations(mission)) == 1
    after = await world.store.find_mission(space.id, mission.id)
    assert after is not None
    assert after.next_run_at == iso(due + timedelta(days=1, hours=1))


async def test_stop_drains_then_releases_and_the_mission_is_due_again(
    database_target: str,
) -> None:
    blocker = Blocker()
    async with open_world(database_target, extra_tools=[blocker.spec()]) as world:
        owner = await world.user()
        space = await world.personal(owner)
        agent = await world.agent(owner, space)
        mission = await world.mission(owner, space, agent, cadence=HOURLY)
        await world.make_due(mission.id)
        due = world.clock.now()
        llm = scripted([turn("Wait.", call("block.wait")), turn("Done.")])
        daemon = world.daemon(llm, drain=timedelta(0))
        serving = asyncio.create_task(daemon.serve())
        await blocker.entered.wait()

        daemon.request_stop()
        await serving

        [stopped] = await world.iterations(mission)
        assert stopped.status == "failed" and stopped.error_name == "DaemonShutdown"
        assert stopped.error_phase == "tools"
        after = await world.store.find_mission(space.id, mission.id)
        assert after is not None and after.lease_owner is None
        assert after.next_run_at == iso(due) and after.failures == 0

        blocker.release.set()
        summary = await world.daemon(llm).run_once()
        assert summary.statuses == {"completed": 1}


async def _get(port: int, path: str) -> tuple[int, str]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
    await writer.drain()
    raw = await reader.read()
    writer.close()
    await writer.wait_closed()
    head, _, body = raw.decode().partition("\r\n\r\n")
    return int(head.split()[1]), body


async def test_health_and_metrics_endpoints(world: World) -> None:
    owner = await world.user()
    space = await world.personal(owner)
    agent = await world.agent(owner, space)
    mission = await world.mission(owner, space, agent, cadence=HOURLY)
    await world.make_due(mission.id)
    llm = scripted([turn("Look.", call("todo.list"), call("notes.create", title="x")), turn("ok")])
    await world.daemon(llm).run_once()
    daemon = world.daemon(llm, port=0)
    ready = asyncio.Event()
    serving = asyncio.create_task(daemon.serve(on_ready=ready.set))
    await ready.wait()
    assert daemon.http_port

    status, body = await _get(daemon.http_port, "/health")
    health = json.loads(body)
    metrics_status, metrics = await _get(daemon.http_port, "/metrics")
    missing, _ = await _get(daemon.http_port, "/nope")
    daemon.request_stop()
    await serving

    assert status == 200 and health["status"] == "ok" and health["owner"] == daemon.owner
    assert metrics_status == 200 and missing == 404
    for line in (
        "mana_daemon_ticks_total",
        "mana_missions_run_total 1.0",
        'mana_iterations_total{status="awaiting-review"} 1.0',
        'mana_mission_tool_calls_total{status="executed"} 1.0',
        'mana_mission_tool_calls_total{status="proposed"} 1.0',
        'mana_mission_tokens_total{kind="input"} 200.0',
        "mana_mission_compactions_total 0.0",
        "mana_missions_skipped_total",
        "mana_mission_reminders_total",
    ):
        assert line in metrics, line
