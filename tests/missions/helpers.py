"""A missions world for tests: a real database (the `database_target` of the test: a SQLite
file or a fresh PostgreSQL database), the real pipeline and policy gate, a fixed clock, the
missions backend, and helpers to make users, agents, missions, runners and daemons driven by
scripted models. `query` and `hold_write_lock` reach either backend from outside the runtime
(another process's view)."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from agent_loop.scripted import ScriptedClient, ScriptedTurn
from missions.cadence import MANUAL, Cadence, IntervalCadence
from missions.daemon import Daemon
from missions.leases import new_owner
from missions.llm import LLMSetup
from missions.metrics import MissionMetrics
from missions.models import Agent, Iteration, Mission
from missions.proposals import ProposalService
from missions.review import PROPOSAL_REVIEW
from missions.runner import MissionRunner
from missions.scheduler import Scheduler
from missions.schema import MISSIONS_MIGRATIONS
from missions.service import MissionsService
from missions.settings import DaemonSettings, MissionSettings
from missions.store import MissionStore
from missions.tools import TOOLS as MISSION_TOOLS
from missions.view import MISSIONS
from policy.agent_policy import AgentToolPolicy, InvokerToolRule
from policy.allowlist import DestructiveAllowlist
from policy.gate import PolicyGate
from policy.settings import MAX_RATE_LIMIT, PolicySettings
from tool_registry.clock import FixedClock, iso
from tool_registry.context import Backends, ToolContext
from tool_registry.models import ToolInput, ToolOutput
from tool_registry.modules import build_registry
from tool_registry.pipeline import Pipeline
from tool_registry.registry import AnySpec
from tool_registry.spec import ToolSpec
from tool_registry.store import Database, Space, User, open_database
from tool_registry.store.postgres import is_postgres_url

T0 = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)  # a Friday
HOURLY = IntervalCadence(kind="interval", every_minutes=60)


def call(name: str, **arguments: Any) -> dict[str, Any]:
    return {"name": name, "arguments": arguments}


def turn(
    text: str | None, *calls: dict[str, Any], usage: tuple[int, int] = (100, 10)
) -> ScriptedTurn:
    return ScriptedTurn.model_validate(
        {
            "text": text,
            "tool_calls": list(calls),
            "usage": {"input_tokens": usage[0], "output_tokens": usage[1]},
        }
    )


def scripted(
    turns: Sequence[ScriptedTurn], clients: list[ScriptedClient] | None = None
) -> LLMSetup:
    """Every iteration gets a fresh client replaying `turns`; `clients` collects them."""

    def factory(_m: Mission, _a: Agent) -> ScriptedClient:
        client = ScriptedClient(list(turns))
        if clients is not None:
            clients.append(client)
        return client

    return LLMSetup(factory=factory, label="scripted")


# -- a blocking tool for in-process tests ---------------------------------------------------------


class BlockInput(ToolInput):
    label: str = "block"


class BlockOutput(ToolOutput):
    label: str


@dataclass
class Blocker:
    """`block.wait` (read): signals `entered`, then waits for `release`."""

    entered: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    def spec(self) -> AnySpec:
        async def handler(inp: BlockInput, ctx: ToolContext) -> BlockOutput:
            self.entered.set()
            await self.release.wait()
            return BlockOutput(label=inp.label)

        return ToolSpec(
            name="block.wait",
            title="Block",
            description="Test only: waits until the test releases it.",
            module="block",
            scope="user-space",
            policy_hint="read",
            input=BlockInput,
            output=BlockOutput,
            handler=handler,
        )


# -- the world --------------------------------------------------------------------------------------


def is_postgres(target: str | Path) -> bool:
    return is_postgres_url(str(target))


def query(target: str | Path, sql: str, *params: Any) -> list[dict[str, Any]]:
    """Rows of `sql` (`?` placeholders) read on a connection of its own, on either backend."""
    if is_postgres(target):
        import psycopg
        from psycopg.rows import dict_row

        from tool_registry.store.postgres import to_pg

        with psycopg.connect(str(target), row_factory=dict_row, autocommit=True) as pg:
            return list(pg.execute(to_pg(sql), params).fetchall())
    conn = sqlite3.connect(target)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute(sql, params).fetchall()]
    finally:
        conn.close()


def execute(target: str | Path, sql: str, *params: Any) -> int:
    """Run one write (`?` placeholders) on a connection of its own and commit; rows changed."""
    if is_postgres(target):
        import psycopg

        from tool_registry.store.postgres import to_pg

        with psycopg.connect(str(target), autocommit=True) as pg:
            return pg.execute(to_pg(sql), params).rowcount
    conn = sqlite3.connect(target)
    try:
        changed = conn.execute(sql, params).rowcount
        conn.commit()
        return changed
    finally:
        conn.close()


def database_args(target: str | Path) -> list[str]:
    """The global `mana` flag that points a command at this database."""
    return ["--database-url", str(target)] if is_postgres(target) else ["--db", str(target)]


@contextmanager
def hold_write_lock(target: str | Path) -> Iterator[None]:
    """Hold the database's write lock from another connection, as another process would."""
    if is_postgres(target):
        import psycopg

        from tool_registry.store.postgres import WRITE_LOCK_KEY

        with psycopg.connect(str(target), autocommit=True) as pg:
            pg.execute("BEGIN")
            pg.execute(f"SELECT pg_advisory_xact_lock({WRITE_LOCK_KEY})")
            try:
                yield
            finally:
                pg.execute("ROLLBACK")
        return
    other = sqlite3.connect(target, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        yield
    finally:
        other.execute("ROLLBACK")
        other.close()


async def query_plan(db: Database, sql: str, params: Sequence[Any]) -> str:
    """The backend's plan for `sql`, as one text. On PostgreSQL sequential scans are disabled for
    the statement, so a tiny test table shows whether an index can serve the query at all."""

    def explain(conn: Any) -> str:
        if db.dialect == "postgres":
            conn.execute("SET LOCAL enable_seqscan = off")
            return " ".join(r[0] for r in conn.execute("EXPLAIN " + sql, params).fetchall())
        rows = conn.execute("EXPLAIN QUERY PLAN " + sql, params).fetchall()
        return " ".join(r[3] for r in rows)

    return await db.write(explain)


@dataclass
class World:
    target: str
    db: Database
    clock: FixedClock
    pipeline: Pipeline
    service: MissionsService
    allowlist: DestructiveAllowlist
    settings: MissionSettings
    metrics: MissionMetrics = field(default_factory=MissionMetrics)
    _n: int = 0

    @property
    def store(self) -> MissionStore:
        return self.service.store

    async def user(self, email: str | None = None) -> User:
        self._n += 1
        return await self.pipeline.accounts.create_user(email or f"user{self._n}@missions.test")

    async def personal(self, user: User) -> Space:
        return await self.pipeline.accounts.personal_space(user.id)

    async def agent(
        self,
        owner: User,
        space: Space,
        name: str = "scout",
        *,
        policy: AgentToolPolicy | None = None,
        **kw: Any,
    ) -> Agent:
        return await self.service.create_agent(
            user_id=owner.id, space_id=space.id, name=name, tool_policy=policy, **kw
        )

    async def mission(
        self,
        owner: User,
        space: Space,
        agent: Agent,
        *,
        title: str = "Tidy up",
        cadence: Cadence = MANUAL,
        objective: str = "Keep my todos tidy",
        concept: str = "",
    ) -> Mission:
        return await self.service.create_mission(
            user_id=owner.id,
            space_id=space.id,
            agent=agent.id,
            title=title,
            objective=objective,
            concept=concept,
            cadence=cadence,
        )

    def scheduler(self, owner: str | None = None, *, db: Database | None = None) -> Scheduler:
        return Scheduler(db or self.db, self.clock, self.settings, owner=owner or new_owner())

    def runner(
        self,
        llm: LLMSetup,
        *,
        owner: str | None = None,
        settings: MissionSettings | None = None,
    ) -> MissionRunner:
        settings = settings or self.settings
        return MissionRunner(
            self.pipeline,
            self.store,
            Scheduler(self.db, self.clock, settings, owner=owner or new_owner()),
            llm,
            settings=settings,
            metrics=self.metrics,
            clock=self.clock,
        )

    def daemon(
        self,
        llm: LLMSetup,
        *,
        concurrency: int = 4,
        owner: str | None = None,
        port: int | None = None,
        drain: timedelta = timedelta(seconds=30),
    ) -> Daemon:
        return Daemon(
            self.runner(llm, owner=owner),
            DaemonSettings(concurrency=concurrency, port=port, drain_timeout=drain),
            metrics=self.metrics,
            clock=self.clock,
        )

    async def make_due(self, mission_id: str, at: datetime | None = None) -> None:
        stamp = iso(at or self.clock.now())
        await self.db.write(
            lambda c: c.execute(
                "UPDATE missions SET next_run_at = ?, window_at = ? WHERE id = ?",
                (stamp, stamp, mission_id),
            )
        )

    async def iterations(self, mission: Mission) -> list[Iteration]:
        """Oldest first."""
        found = await self.store.list_iterations(mission.space_id, mission.id, limit=1000)
        return list(reversed(found))

    async def count(self, sql: str, *params: Any) -> int:
        row = await self.db.read(lambda c: c.execute(sql, params).fetchone())
        return int(row[0])

    async def records(self, collection: str, space: Space) -> list[dict[str, Any]]:
        import json

        rows = await self.db.read(
            lambda c: c.execute(
                "SELECT data FROM records WHERE collection = ? AND space_id = ? "
                "AND deleted_at IS NULL",
                (collection, space.id),
            ).fetchall()
        )
        return [json.loads(r["data"]) for r in rows]


def build_pipeline(
    db: Database,
    clock: FixedClock,
    *,
    extra_tools: Sequence[AnySpec] = (),
    rate_limit: int = MAX_RATE_LIMIT,
) -> tuple[Pipeline, MissionsService, DestructiveAllowlist]:
    from tool_registry.store import Accounts

    registry = build_registry(extra=[*MISSION_TOOLS, *extra_tools])
    accounts = Accounts(db, clock)
    allowlist = DestructiveAllowlist(db, registry, accounts=accounts, clock=clock)
    gate = PolicyGate(PolicySettings(rate_limit=rate_limit), allowlist, registry=registry)
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
        offer=InvokerToolRule(),
    )
    backends.set(PROPOSAL_REVIEW, ProposalService(service.store, accounts, pipeline))
    return pipeline, service, allowlist


@asynccontextmanager
async def open_world(
    target: str | Path,
    *,
    clock: FixedClock | None = None,
    extra_tools: Sequence[AnySpec] = (),
    settings: MissionSettings | None = None,
    rate_limit: int = MAX_RATE_LIMIT,
) -> AsyncIterator[World]:
    clock = clock or FixedClock(T0)
    db = await open_database(target, MISSIONS_MIGRATIONS)
    pipeline, service, allowlist = build_pipeline(
        db, clock, extra_tools=extra_tools, rate_limit=rate_limit
    )
    world = World(
        str(target), db, clock, pipeline, service, allowlist, settings or MissionSettings()
    )
    try:
        yield world
    finally:
        await pipeline.aclose()
        await db.close()
