"""Testing kit for tool authors: a registry on a throwaway database (a SQLite file or a
PostgreSQL database), factories for users, spaces and memberships, `call_as` through the real
pipeline, and a reusable assertion that a read tool never returns another space's rows.

    async def test_my_tool(mana_kit):
        alice = await mana_kit.user("alice@example.test")
        out = await mana_kit.call_ok(alice, None, "habits.create", {"name": "Walk"})
        assert out["name"] == "Walk"
"""

from __future__ import annotations

import itertools
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

from tool_registry.clock import Clock
from tool_registry.context import Backends, CallContext, Invoker
from tool_registry.gate import Gate
from tool_registry.modules import build_registry
from tool_registry.offer import ToolOffer
from tool_registry.pipeline import Outcome, Pipeline
from tool_registry.registry import Registry
from tool_registry.store import (
    Accounts,
    Database,
    Migration,
    PostgresDatabase,
    Space,
    SqliteDatabase,
    User,
    open_database,
)
from tool_registry.store.postgres import WRITE_LOCK_KEY

SpaceRef = Space | str | None


class ToolKit:
    """Everything a tool test needs, wired like production but on a throwaway database."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
        self.registry: Registry = pipeline.registry
        self.db: Database = pipeline.db
        self.accounts: Accounts = pipeline.accounts
        self._seq = itertools.count(1)

    async def user(
        self,
        email: str | None = None,
        *,
        name: str | None = None,
        kind: str = "human",
        password: str | None = None,
    ) -> User:
        n = next(self._seq)
        return await self.accounts.create_user(
            email or f"user{n}@kit.test", name=name, kind=kind, password=password
        )

    async def personal(self, user: User) -> Space:
        return await self.accounts.personal_space(user.id)

    async def space(self, owner: User, type_: str = "family", name: str | None = None) -> Space:
        n = next(self._seq)
        return await self.accounts.create_space(
            owner.id, type_=type_, name=name or f"{type_} space {n}"
        )

    async def add_member(self, space: Space, user: User, role: str = "member") -> None:
        await self.accounts.add_member(space.id, user.id, role)

    async def call_as(
        self,
        user: User,
        space: SpaceRef,
        tool: str,
        args: dict[str, Any] | None = None,
        *,
        invoker: Invoker = "cli",
        idempotency_key: str | None = None,
    ) -> Outcome:
        """Invoke `tool` through the real pipeline as `user` in `space` (None = personal)."""
        ref = space.id if isinstance(space, Space) else space
        call = CallContext(
            user_id=user.id, space=ref, invoker=invoker, idempotency_key=idempotency_key
        )
        return await self.pipeline.invoke(tool, args or {}, call)

    async def call_ok(
        self, user: User, space: SpaceRef, tool: str, args: dict[str, Any] | None = None, **kw: Any
    ) -> dict[str, Any]:
        """Like `call_as` but fails the test unless the outcome is ok; returns `result`."""
        outcome = await self.call_as(user, space, tool, args, **kw)
        assert outcome.ok, f"{tool} failed: {outcome.public()}"
        assert outcome.result is not None
        return outcome.result

    async def record_space(self, record_id: str) -> str | None:
        row = await self.db.read(
            lambda c: c.execute(
                "SELECT space_id FROM records WHERE id = ?", (record_id,)
            ).fetchone()
        )
        return None if row is None else str(row["space_id"])

    async def audit(self, **filters: Any) -> list[dict[str, Any]]:
        return await self.pipeline.audit.recent(**filters)


@asynccontextmanager
async def tool_kit(
    target: Path | str,
    *,
    registry: Registry | None = None,
    gate: Gate | None = None,
    backends: Backends | None = None,
    clock: Clock | None = None,
    migrations: tuple[Migration, ...] = (),
    offer: ToolOffer | None = None,
) -> AsyncIterator[ToolKit]:
    """A `ToolKit` on a fresh database at `target` (a SQLite file path, or a `postgresql://` URL
    such as the `database_target` fixture gives); `gate` and `offer` (e.g. `policy`'s
    `PolicyGate` and `InvokerToolRule`) default to allowing everything."""
    db = await open_database(target, migrations)
    pipeline = Pipeline(
        registry or build_registry(),
        db,
        gate=gate,
        backends=backends,
        clock=clock,
        offer=offer,
    )
    try:
        yield ToolKit(pipeline)
    finally:
        await pipeline.aclose()
        await db.close()


@contextmanager
def hold_write_lock(db: Database) -> Iterator[None]:
    """Hold `db`'s write lock from a session of its own for the block, as another process
    would: SQLite's `BEGIN IMMEDIATE` on a second connection, PostgreSQL's write advisory lock
    in a second session. Writes and `probe_write` wait for it meanwhile."""
    if isinstance(db, SqliteDatabase):
        other = sqlite3.connect(db.path, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")
            yield
            other.execute("ROLLBACK")
        finally:
            other.close()
    elif isinstance(db, PostgresDatabase):
        import psycopg

        with psycopg.connect(db.url, autocommit=True) as session:
            session.execute("BEGIN")
            session.execute(f"SELECT pg_advisory_xact_lock({WRITE_LOCK_KEY})")
            yield
            session.execute("ROLLBACK")
    else:
        raise TypeError(f"no way to hold the write lock of {type(db).__name__}")


def iter_ids(value: Any) -> Iterator[str]:
    """Every string under an `id` key anywhere in a JSON-like value."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "id" and isinstance(item, str):
                yield item
            else:
                yield from iter_ids(item)
    elif isinstance(value, list):
        for item in value:
            yield from iter_ids(item)


Seeder = Callable[[ToolKit, User, Space], Awaitable[None]]


async def assert_space_isolated(
    kit: ToolKit, tool: str, args: dict[str, Any], seed: Seeder, *, space_type: str = "personal"
) -> None:
    """Seed rows in two spaces of two users, then check `tool` returns only the active space's
    rows in each, and that a caller who is not a member gets the membership error.

    `seed(kit, user, space)` must create at least one row the tool would return. Works for any
    read tool whose result carries record ids under `id` keys.
    """
    owners = [await kit.user(), await kit.user()]
    spaces = []
    for owner in owners:
        space = (
            await kit.personal(owner)
            if space_type == "personal"
            else await kit.space(owner, space_type)
        )
        await seed(kit, owner, space)
        spaces.append(space)
    for owner, space in zip(owners, spaces, strict=True):
        result = await kit.call_ok(owner, space, tool, args)
        ids = list(iter_ids(result))
        assert ids, f"{tool} returned no rows in a seeded space; the seeder or args are wrong"
        for rid in ids:
            home = await kit.record_space(rid)
            if home is not None:
                assert home == space.id, f"{tool} leaked record {rid} from space {home}"
    outsider = await kit.user()
    denied = await kit.call_as(outsider, spaces[0], tool, args)
    assert denied.status == "denied" and denied.error is not None, denied.public()
    assert denied.error.reason == "not-a-member", denied.public()


__all__ = ["ToolKit", "assert_space_isolated", "hold_write_lock", "iter_ids", "tool_kit"]
