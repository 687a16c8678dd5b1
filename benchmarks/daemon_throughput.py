"""Mission daemon throughput and tick selection cost, on SQLite or PostgreSQL.

1. Throughput: MISSIONS due missions (default 1,000), each run by a scripted model with no delay
   for 2 rounds of 3 read calls (todo.list, notes.search, habits.list) and a final answer, through
   the real pipeline and policy gate. Reports missions per minute.
   - SQLite without `--daemons`: one in-process daemon's `run_once` with `--concurrency` 1 and 8.
   - `--daemons 1,3` (PostgreSQL by default, SQLite too): that many `mana daemon --once`
     processes on one database at `--daemon-concurrency` each, sharing the due missions through
     their leases (PostgreSQL: `FOR UPDATE SKIP LOCKED` claims). Missions per minute over the
     work span (first iteration started to last finished, from the iterations table) and over
     the wall time including process start-up; every mission must run exactly once.
2. Tick selection: the daemon's due-missions query (active, next run <= now; served by the
   partial index `missions_due` on (next_run_at, id)) with 100 due missions among 100,000 and
   among 1,000. Reports the median time and the big/small ratio (goal: at most 1.5), plus the
   query plan.

`--backend postgres` starts its own throwaway PostgreSQL server (`ThrowawayPostgres`: durability
off, on this machine) and gives each measurement a fresh database.

    .venv/bin/python benchmarks/daemon_throughput.py
    .venv/bin/python benchmarks/daemon_throughput.py --missions 200 --concurrency 1,4,8
    .venv/bin/python benchmarks/daemon_throughput.py --backend postgres --daemons 1,3
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
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
from tool_registry.store.connection import Conn

ROOT = Path(__file__).resolve().parents[1]

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


def bulk_missions(conn: Conn, total: int, due: int) -> None:
    """`total` active hourly missions of one agent, `due` of them due now (straight SQL, on
    either backend), then fresh planner statistics."""
    now = datetime.now(UTC)
    stamp = iso(now)
    policy = json.dumps(
        {"tools": {}, "modules": {}, "byHint": {"read": "auto"}, "default": "propose"}
    )
    cadence = json.dumps(cadence_to_json(HOURLY))
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

    def rows() -> Iterator[tuple[str, ...]]:
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
    conn.execute("ANALYZE")


def due_plan(conn: Conn, dialect: str, now: str) -> list[str]:
    """The backend's plan of the due query (the text `due_missions_sql` runs)."""
    sql = (
        "SELECT id, next_run_at FROM missions WHERE state = 'active' AND next_run_at <= ? "
        "ORDER BY next_run_at, id LIMIT ?"
    )
    if dialect == "postgres":
        return [r[0] for r in conn.execute("EXPLAIN " + sql, (now, 10_000)).fetchall()]
    return [r[3] for r in conn.execute("EXPLAIN QUERY PLAN " + sql, (now, 10_000)).fetchall()]


async def selection(target: str, total: int, due: int, repeats: int) -> dict[str, Any]:
    db = await open_database(target, MISSIONS_MIGRATIONS)
    try:
        await db.write(lambda c: bulk_missions(c, total, due))
        scheduler = Scheduler(db, SystemClock(), MissionSettings(), owner=new_owner())
        found = await scheduler.due(limit=10_000)
        assert len(found) == due, len(found)
        samples = []
        for _ in range(repeats):
            started = time.perf_counter()
            await scheduler.due(limit=10_000)
            samples.append(time.perf_counter() - started)
        now = iso(datetime.now(UTC))
        plan = await db.read(lambda c: due_plan(c, db.dialect, now))
    finally:
        await db.close()
    return {
        "backend": db.dialect,
        "missions": total,
        "due": due,
        "median_ms": round(statistics.median(samples) * 1000, 3),
        "plan": plan,
    }


# -- daemon processes --------------------------------------------------------------------------


def bench_env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MANA_")}
    env.update({"MANA_RATE_LIMIT": str(MAX_RATE_LIMIT), "MANA_LOG_LEVEL": "WARNING"})
    env["MANA_DATA_DIR"] = str(tmp / "data")
    return env


def cli_settings(target: str, env: dict[str, str]) -> Any:
    from mana_cli.config import Settings

    key = "database_url" if target.startswith("postgresql://") else "db"
    return Settings.load({key: target}, environ=env)


def database_args(target: str) -> list[str]:
    return ["--database-url", target] if target.startswith("postgresql://") else ["--db", target]


async def seed_runtime(target: str, env: dict[str, str], missions: int) -> None:
    """The bench missions in a database `mana init` would make (every component's schema)."""
    from mana_cli.runtime import open_runtime

    async with open_runtime(cli_settings(target, env), create=True) as rt:
        await seed_due(rt.pipeline, rt.backends.get(MISSIONS), missions)


async def span_and_counts(target: str, env: dict[str, str]) -> dict[str, Any]:
    from mana_cli.runtime import open_runtime

    def read(conn: Conn) -> dict[str, Any]:
        row = conn.execute(
            "SELECT MIN(started_at) AS first, MAX(finished_at) AS last, COUNT(*) AS n, "
            "COUNT(DISTINCT mission_id) AS missions FROM iterations WHERE status = 'completed'"
        ).fetchone()
        calls = conn.execute(
            "SELECT COUNT(*) AS n FROM audit_log WHERE invoker = 'mission-runner'"
        ).fetchone()
        other = conn.execute(
            "SELECT COUNT(*) AS n FROM iterations WHERE status != 'completed'"
        ).fetchone()
        return {
            "first": row["first"],
            "last": row["last"],
            "completed": row["n"],
            "missions": row["missions"],
            "not_completed": other["n"],
            "tool_calls": calls["n"],
        }

    async with open_runtime(cli_settings(target, env)) as rt:
        return await rt.db.read(read)


def run_daemons(command: list[str], env: dict[str, str], daemons: int) -> tuple[float, list[int]]:
    """Start `daemons` copies of `command` at once and wait for all; (wall seconds, claimed
    per daemon)."""
    started = time.perf_counter()
    procs = [
        subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(daemons)
    ]
    claimed = []
    for proc in procs:
        out, err = proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"daemon failed ({proc.returncode}): {err[-2000:]}")
        claimed.append(int(json.loads(out)["claimed"]))
    return time.perf_counter() - started, claimed


async def daemon_processes(
    target: str, tmp: Path, missions: int, daemons: int, concurrency: int
) -> dict[str, Any]:
    """`daemons` processes of `mana daemon --once` on one database sharing `missions` due
    missions; every mission must run exactly once."""
    env = bench_env(tmp)
    await seed_runtime(target, env, missions)
    script = tmp / f"script-{daemons}.json"
    script.write_text(json.dumps([t.model_dump(mode="json") for t in SCRIPT]), encoding="utf-8")
    command = [
        sys.executable,
        "-m",
        "mana_cli",
        *database_args(target),
        "daemon",
        "--once",
        "--json",
        "--concurrency",
        str(concurrency),
        "--llm",
        f"scripted:{script}",
    ]
    wall, claimed = await asyncio.to_thread(run_daemons, command, env, daemons)
    counts = await span_and_counts(target, env)
    assert counts["completed"] == counts["missions"] == missions, counts
    assert counts["not_completed"] == 0 and counts["tool_calls"] == missions * 6, counts
    span = (
        datetime.fromisoformat(counts["last"].replace("Z", "+00:00"))
        - datetime.fromisoformat(counts["first"].replace("Z", "+00:00"))
    ).total_seconds()
    return {
        "backend": "postgres" if target.startswith("postgresql://") else "sqlite",
        "missions": missions,
        "daemons": daemons,
        "concurrency_per_daemon": concurrency,
        "claimed_per_daemon": claimed,
        "span_seconds": round(span, 2),
        "missions_per_minute": round(missions / span * 60),
        "wall_seconds_with_startup": round(wall, 2),
        "missions_per_minute_wall": round(missions / wall * 60),
        "tool_calls": counts["tool_calls"],
    }


class Targets:
    """Fresh databases for one backend: SQLite files in a temp dir, or databases on a
    throwaway PostgreSQL server started for this run."""

    def __init__(self, backend: str, tmp: Path) -> None:
        self.backend = backend
        self.tmp = tmp
        self._n = 0
        self._server: Any = None

    def __enter__(self) -> Targets:
        if self.backend == "postgres":
            from tool_registry.testing.postgres import ThrowawayPostgres

            self._server = ThrowawayPostgres().start()
        return self

    def __exit__(self, *_exc: object) -> None:
        if self._server is not None:
            self._server.stop()

    @contextlib.contextmanager
    def fresh(self) -> Iterator[str]:
        self._n += 1
        if self._server is None:
            yield str(self.tmp / f"bench-{self._n}.db")
            return
        from tool_registry.testing.postgres import temporary_database

        with temporary_database(self._server.url, prefix="mana_bench") as url:
            yield url


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--missions", type=int, default=1000, help="due missions (1000)")
    parser.add_argument(
        "--concurrency", default="1,8", help="in-process SQLite mode: comma-separated (1,8)"
    )
    parser.add_argument(
        "--daemons",
        help="daemon processes sharing the missions, comma-separated (default 1,3 on postgres)",
    )
    parser.add_argument(
        "--daemon-concurrency", type=int, default=4, help="iterations at once per daemon (4)"
    )
    parser.add_argument("--big", type=int, default=100_000, help="missions for selection")
    parser.add_argument("--small", type=int, default=1_000, help="missions for selection")
    parser.add_argument("--due", type=int, default=100, help="due missions for selection")
    parser.add_argument("--repeats", type=int, default=200, help="selection samples")
    parser.add_argument("--skip-throughput", action="store_true")
    args = parser.parse_args()
    configure_logging("WARNING", json=True)
    daemons = args.daemons or ("1,3" if args.backend == "postgres" else None)

    with tempfile.TemporaryDirectory() as tmp, Targets(args.backend, Path(tmp)) as targets:
        if not args.skip_throughput:
            if daemons is None:
                for level in (int(c) for c in args.concurrency.split(",")):
                    print(json.dumps(await throughput(args.missions, level)), flush=True)
            else:
                results = []
                for count in (int(d) for d in daemons.split(",")):
                    with targets.fresh() as target:
                        result = await daemon_processes(
                            target, Path(tmp), args.missions, count, args.daemon_concurrency
                        )
                    results.append(result)
                    print(json.dumps(result), flush=True)
                if len(results) > 1:
                    base = results[0]["missions_per_minute"]
                    print(
                        json.dumps(
                            {
                                "throughput_ratio": {
                                    f"{r['daemons']}_over_{results[0]['daemons']}": round(
                                        r["missions_per_minute"] / base, 2
                                    )
                                    for r in results[1:]
                                }
                            }
                        ),
                        flush=True,
                    )
        with targets.fresh() as target:
            big = await selection(target, args.big, args.due, args.repeats)
        with targets.fresh() as target:
            small = await selection(target, args.small, args.due, args.repeats)
    ratio = big["median_ms"] / small["median_ms"] if small["median_ms"] else float("inf")
    print(json.dumps(small))
    print(json.dumps(big))
    print(
        json.dumps(
            {
                "backend": args.backend,
                "selection_ratio_big_over_small": round(ratio, 2),
                "goal": "<= 1.5",
                "ok": ratio <= 1.5,
            }
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
