"""Scoped write transactions: on PostgreSQL a write tool's transaction locks its space and its
caller, so calls in other spaces commit beside it, while a call in the same space, and every
unscoped (database-wide) write, still waits for it. SQLite has one writer and ignores scopes."""

from __future__ import annotations

import asyncio
import contextvars
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import psycopg
import pytest
import pytest_asyncio

from tool_registry.store import Database, Migration, open_database
from tool_registry.store.postgres import (
    DatabaseUnavailable,
    PostgresDatabase,
    begin_statement,
    scope_lock_key,
)

PAIRS = Migration("scoped", 1, "pairs", "CREATE TABLE pairs (k TEXT PRIMARY KEY, v INTEGER)")
LIVENESS_SECONDS = 20.0  # a bound on a wait that should end at once; never a timing claim


@pytest_asyncio.fixture
async def pg(postgres_database: str) -> AsyncIterator[Database]:
    db = await open_database(postgres_database, [PAIRS])
    try:
        yield db
    finally:
        await db.close()


def _insert(key: str) -> Callable[[Any], object]:
    return lambda c: c.execute("INSERT INTO pairs (k, v) VALUES (?, 1)", (key,))


def _elsewhere(work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
    """`work` as another caller would run it: a task that does not inherit (and so join) the
    transaction the current task holds."""
    return asyncio.create_task(work, context=contextvars.Context())


async def _advisory_waiters(url: str, at_least: int) -> None:
    """Return once `at_least` sessions wait for an advisory lock of this database."""
    deadline = time.monotonic() + LIVENESS_SECONDS
    with psycopg.connect(url, autocommit=True) as watcher:
        while True:
            row = watcher.execute(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
                "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            ).fetchone()
            if row is not None and row[0] >= at_least:
                return
            assert time.monotonic() < deadline, "no session ever waited for the lock"
            await asyncio.sleep(0.02)


async def test_transactions_in_different_spaces_commit_side_by_side(pg: Database) -> None:
    async with pg.transaction(("space:a", "user:ada")) as held:
        await held.run(_insert("a"))

        async def other_space() -> None:
            async with pg.transaction(("space:b", "user:bob")) as tx:
                await tx.run(_insert("b"))

        # Commits while the first transaction is still open: it never waits for it.
        await asyncio.wait_for(other_space(), LIVENESS_SECONDS)
    rows = await pg.read(lambda c: c.execute("SELECT k FROM pairs ORDER BY k").fetchall())
    assert [r[0] for r in rows] == ["a", "b"]


async def test_a_shared_scope_waits_for_the_holder(pg: Database, postgres_database: str) -> None:
    order: list[str] = []

    async def same_user_other_space() -> None:
        async with pg.transaction(("space:b", "user:ada")) as tx:
            await tx.run(_insert("second"))
            order.append("second")

    async with pg.transaction(("space:a", "user:ada")) as held:
        await held.run(_insert("first"))
        waiting = _elsewhere(same_user_other_space())
        await _advisory_waiters(postgres_database, 1)
        order.append("first")
    await asyncio.wait_for(waiting, LIVENESS_SECONDS)
    assert order == ["first", "second"]


async def test_an_unscoped_write_waits_for_scoped_ones_and_they_for_it(
    pg: Database, postgres_database: str
) -> None:
    order: list[str] = []

    async def unscoped() -> None:
        await pg.write(_insert("global"))
        order.append("global")

    async with pg.transaction(("space:a", "user:ada")) as held:
        await held.run(_insert("scoped"))
        waiting = _elsewhere(unscoped())
        await _advisory_waiters(postgres_database, 1)
        order.append("scoped")
    await asyncio.wait_for(waiting, LIVENESS_SECONDS)

    async def scoped() -> None:
        async with pg.transaction(("space:c", "user:cy")) as tx:
            await tx.run(_insert("after"))
        order.append("after")

    async with pg.transaction() as exclusive:
        await exclusive.run(_insert("exclusive"))
        waiting = _elsewhere(scoped())
        await _advisory_waiters(postgres_database, 1)
        order.append("exclusive")
    await asyncio.wait_for(waiting, LIVENESS_SECONDS)
    assert order == ["scoped", "global", "exclusive", "after"]


def test_scope_locks_are_taken_in_one_order_whatever_the_order_given() -> None:
    forward = begin_statement(("space:a", "user:ada"))
    backward = begin_statement(("user:ada", "space:a", "space:a"))
    assert forward == backward
    keys = sorted({scope_lock_key("space:a"), scope_lock_key("user:ada")})
    assert forward.index(str(keys[0])) < forward.index(str(keys[1]))
    assert "pg_advisory_xact_lock_shared" in forward
    assert "_shared" not in begin_statement(())


async def test_a_scoped_transaction_commits_on_either_backend(database_target: str) -> None:
    db = await open_database(database_target, [PAIRS])
    try:
        async with db.transaction(("space:a", "user:ada")) as tx:
            await tx.run(_insert("k"))
            await db.write(lambda c: c.execute("UPDATE pairs SET v = v + 1 WHERE k = ?", ("k",)))
        row = await db.read(lambda c: c.execute("SELECT v FROM pairs").fetchone())
    finally:
        await db.close()
    assert row[0] == 2


async def test_a_writer_stalled_inside_a_transaction_lets_the_others_go(
    postgres_database: str,
) -> None:
    """A session idle inside its transaction past the limit is ended by the server: its locks
    go, other writers proceed, and the stalled unit's work never commits."""
    stalled = await PostgresDatabase.open(
        postgres_database, [PAIRS], idle_in_transaction_seconds=0.5
    )
    other = await open_database(postgres_database, [PAIRS])

    async def stall() -> None:
        async with stalled.transaction() as tx:
            await tx.run(_insert("stalled"))
            # Another writer waits for the lock until the server ends the stalled session.
            await asyncio.wait_for(other.write(_insert("other")), LIVENESS_SECONDS)

    try:
        with pytest.raises(DatabaseUnavailable):
            await stall()
        rows = await other.read(lambda c: c.execute("SELECT k FROM pairs").fetchall())
    finally:
        await stalled.close()
        await other.close()
    assert [r[0] for r in rows] == ["other"]
