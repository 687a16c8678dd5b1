"""Mission daemon throughput and tick selection cost.

1. Throughput: MISSIONS due missions (default 1,000), each run by a scripted model with no delay
   for 2 rounds of 3 read calls (todo.list, notes.search, habits.list) and a final answer, through
   the real pipeline and policy gate; the daemon's `run_once` with `--concurrency` 1 and 8.
   Reports missions per minute.
2. Tick selection: the daemon's due-missions query (active, next run <= now; served by the
   partial index `missions_due`) with 100 due missions among 100,000 and among 1,000.
   Reports the median time and the big/small ratio (goal: at most 1.5), plus the query plan.

    .venv/bin/python benchmarks/daemon_throughput.py
    .venv/bin/python benchmarks/daemon_throughput.py --missions 200 --concurrency 1,4,8
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from agent_loop.scripted import ScriptedTurn
from missions.cadence import IntervalCadence, cadence_to_json
from missions.daemon import Daemon
from missions.leases import new_owner
from missions.llm import scripted
from missions.metrics import MissionMetrics
from missions.runner import MissionRunner
from missions.scheduler import Scheduler
from missions.schema import MISSIONS_MIGRATIONS
from missions.service import MissionsService
from missions.settings import DaemonSettings, MissionSettings
from missions.tools import TOOLS as MISSION_TOOLS
from missions.view import MISSIONS
from policy.allowlist import DestructiveAllowlist
from policy.gate import PolicyGate
from policy.settings import MAX_RATE_LIMIT, PolicySettings
from tool_registry.clock import SystemClock, iso
from tool_registry.context import Backends
from tool_registry.logging import configure_logging
from tool_registry.modules import build_registry
from tool_registry.pipeline import Pipeline
from tool_registry.store import Accounts, Database, open_database

READS = [
    {"name": "todo.list", "arguments": {}},
    {"name": "notes.search", "arguments": {"limit": 5}},
    {"name": "habits.list", "arguments": {}},
]
SCRIPT = [
    ScriptedTurn.model_validate(
        {
            "text": "Looking.",
            "tool_calls": READS,
            "usage": {"input_tokens": 300, "output_tokens": 30},
        }
    ),
    ScriptedTurn.model_validate(
        {"text": "Again.", "tool_calls": READS, "usage": {"input_tokens": 500, "output_tokens": 30}}
    ),
    ScriptedTurn.model_validate(
        {"text": "Done.", "tool_calls": [], "usage": {"input_tokens": 700, "output_tokens": 20}}
    ),
]
MISSIONS_PER_AGENT = 10
HOURLY = IntervalCadence(kind="interval", every_minutes=60)


def build(db: Database) -> tuple[Pipeline, MissionsService]:
    clock = SystemClock()
    registry = build_registry(extra=MISSION_TOOLS)
    accounts = Accounts(db, clock)
    gate = PolicyGate(
        PolicySettings(rate_limit=MAX_RATE_LIMIT),
        DestructiveAllowlist(db, registry, accounts=accounts, clock=clock),
        registry=registry,
    )
    service = MissionsService(db, accounts, clock=clock)
    backends = Backends()
    backends.set(MISSIONS, service)
    pipeline = Pipeline(
        registry,
        db,
        accounts=accounts,
        gate=gate,
        backends=backends,
        clock=clock,
    )
    return pipeline, service


async def seed_due(pipeline: Pipeline, service: MissionsService, missions: int) -> None:
    for u in range(max(1, missions // MISSIONS_PER_AGENT)):
        user = await pipeline.accounts.create_user(f"bench{u}@daemon.test")
        space = await pipeline.accounts.personal_space(user.id)
        agent = await service.create_agent(
            user_id=user.id, space_id=space.id, name="bench", max_concurrent=MISSIONS_PER_AGENT
        )
        for i in range(min(MISSIONS_PER_AGENT, missions - u * MISSIONS_PER_AGENT)):
            await service.create_mission(
                user_id=user.id,
                space_id=space.id,
                agent=agent.id,
                title=f"bench {i}",
                objective="Look around",
                cadence=HOURLY,
            )
    past = iso(datetime.now(UTC) - timedelta(minutes=1))
    await pipeline.db.write(
        lambda c: c.execute("UPDATE missions SET next_run_at = ?, window_at = ?", (past, past))
    )


async def throughput(missions: int, concurrency: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        db = await open_database(Path(tmp) / "bench.db", MISSIONS_MIGRATIONS)
        pipeline, service = build(db)
        try:
            await seed_due(pipeline, service, missions)
            settings = MissionSettings()
            runner = MissionRunner(
                pipeline,
                service.store,
                Scheduler(db, pipeline.clock, settings, owner=new_owner()),
                scripted(list(SCRIPT)),
                settings=settings,
                metrics=MissionMetrics(),
                clock=pipeline.clock,
            )
            daemon = Daemon(
                runner,
                DaemonSettings(concurrency=concurrency, port=None),
                metrics=runner.metrics or MissionMetrics(),
                clock=pipeline.clock,
            )
            started = time.perf_counter()
            summary = await daemon.run_once()
            elapsed = time.perf_counter() - started
            await pipeline.aclose()
            calls = await db.read(
                lambda c: c.execute(
                    "SELECT COUNT(*) FROM audit_log WHERE invoker = 'mission-runner'"
                ).fetchone()[0]
            )
        finally:
            await db.close()
    assert summary.statuses == {"completed": missions}, summary.to_json()
    assert calls == missions * 6, calls
    return {
        "missions": missions,
        "concurrency": concurrency,
        "seconds": round(elapsed, 2),
        "missions_per_minute": round(missions / elapsed * 60),
        "tool_calls": calls,
    }


def bulk_missions(path: Path, total: int, due: int) -> None:
    """`total` active hourly missions of one agent, `due` of them due now (straight SQL)."""
    conn = sqlite3.connect(path)
    now = datetime.now(UTC)
    stamp = iso(now)
    policy = json.dumps(
        {"tools": {}, "modules": {}, "byHint": {"read": "auto"}, "default": "propose"}
    )
    cadence = json.dumps(cadence_to_json(HOURLY))
    conn.execute("BEGIN")
    conn.execute(
        "INSERT INTO users (id, email, name, kind, tier, created_at, updated_at) "
        "VALUES ('usr_b', 'b@bench.test', 'B', 'human', 'free', ?, ?)",
        (stamp, stamp),
    )
    conn.execute(
        "INSERT INTO spaces (id, slug, name, type, created_by, created_at) "
        "VALUES ('spc_b', 'b', 'B', 'personal', 'usr_b', ?)",
        (stamp,),
    )
    conn.execute(
        "INSERT INTO memberships (space_id, user_id, role, created_at) "
        "VALUES ('spc_b', 'usr_b', 'owner', ?)",
        (stamp,),
    )
    conn.execute(
        "INSERT INTO agents (id, space_id, name, tool_policy, max_concurrent, created_at, "
        "updated_at) VALUES ('agt_b', 'spc_b', 'bench', ?, 1000, ?, ?)",
        (policy, stamp, stamp),
    )

    def rows() -> Any:
        for i in range(total):
            # Due ones in the past; the rest spread over the next week.
            at = now - timedelta(minutes=1 + i) if i < due else now + timedelta(seconds=6 * i)
            text = iso(at)
            yield (f"msn_b{i:07d}", cadence, text, text, stamp, stamp)

    conn.executemany(
        "INSERT INTO missions (id, space_id, owner_id, agent_id, title, objective, cadence, "
        "state, next_run_at, window_at, created_at, updated_at) "
        "VALUES (?, 'spc_b', 'usr_b', 'agt_b', 'bench', 'bench', ?, 'active', ?, ?, ?, ?)",
        rows(),
    )
    conn.execute("COMMIT")
    conn.execute("ANALYZE")
    conn.close()


async def selection(total: int, due: int, repeats: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "select.db"
        db = await open_database(path, MISSIONS_MIGRATIONS)
        await db.close()
        bulk_missions(path, total, due)
        db = await open_database(path, MISSIONS_MIGRATIONS)
        try:
            scheduler = Scheduler(db, SystemClock(), MissionSettings(), owner=new_owner())
            found = await scheduler.due(limit=10_000)
            assert len(found) == due, len(found)
            samples = []
            for _ in range(repeats):
                started = time.perf_counter()
                await scheduler.due(limit=10_000)
                samples.append(time.perf_counter() - started)
            plan = await db.read(
                lambda c: [
                    r[3]
                    for r in c.execute(
                        "EXPLAIN QUERY PLAN SELECT id, next_run_at FROM missions WHERE "
                        "state = 'active' AND next_run_at <= ? ORDER BY next_run_at LIMIT ?",
                        (iso(datetime.now(UTC)), 10_000),
                    ).fetchall()
                ]
            )
        finally:
            await db.close()
    return {
        "missions": total,
        "due": due,
        "median_ms": round(statistics.median(samples) * 1000, 3),
        "plan": plan,
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--missions", type=int, default=1000, help="due missions (1000)")
    parser.add_argument("--concurrency", default="1,8", help="comma-separated (1,8)")
    parser.add_argument("--big", type=int, default=100_000, help="missions for selection")
    parser.add_argument("--small", type=int, default=1_000, help="missions for selection")
    parser.add_argument("--due", type=int, default=100, help="due missions for selection")
    parser.add_argument("--repeats", type=int, default=200, help="selection samples")
    parser.add_argument("--skip-throughput", action="store_true")
    args = parser.parse_args()
    configure_logging("WARNING", json=True)

    if not args.skip_throughput:
        for level in (int(c) for c in args.concurrency.split(",")):
            print(json.dumps(await throughput(args.missions, level)), flush=True)
    big = await selection(args.big, args.due, args.repeats)
    small = await selection(args.small, args.due, args.repeats)
    ratio = big["median_ms"] / small["median_ms"] if small["median_ms"] else float("inf")
    print(json.dumps(small))
    print(json.dumps(big))
    print(
        json.dumps(
            {
                "selection_ratio_big_over_small": round(ratio, 2),
                "goal": "<= 1.5",
                "ok": ratio <= 1.5,
            }
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
