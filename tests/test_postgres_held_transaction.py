"""A PostgreSQL transaction that holds its connection and the write lock keeps running while
other write units queue for that lock or for a connection: its work never waits behind them for
a database thread (which would deadlock until their acquire timeout, found under MCP load)."""

from __future__ import annotations

import asyncio
import contextvars
from typing import Any

from tool_registry.store.postgres import PostgresDatabase

WAITING_UNITS = 6  # more than the shared database threads (1 reader + 2 writers + 1)


async def test_a_held_transaction_finishes_while_other_writes_wait(
    postgres_database: str,
) -> None:
    db = await PostgresDatabase.open(postgres_database, readers=1, writers=2)
    try:
        await db.write(lambda c: c.execute("CREATE TABLE held_probe (n INTEGER NOT NULL)"))

        def insert(n: int) -> Any:
            return lambda c: c.execute("INSERT INTO held_probe (n) VALUES (?)", (n,))

        waiting: list[asyncio.Task[Any]] = []
        async with db.transaction() as tx:
            await tx.run(insert(0))
            for n in range(1, WAITING_UNITS + 1):
                # A fresh context: these are other requests' units, not part of `tx`.
                waiting.append(
                    asyncio.create_task(db.write(insert(n)), context=contextvars.Context())
                )
            await asyncio.sleep(1.0)  # let them take every shared thread and wait there
            await tx.run(insert(100))
        results = await asyncio.gather(*waiting, return_exceptions=True)
        assert [r for r in results if isinstance(r, BaseException)] == []
        rows = await db.read(lambda c: c.execute("SELECT n FROM held_probe ORDER BY n").fetchall())
        assert [r[0] for r in rows] == [0, *range(1, WAITING_UNITS + 1), 100]
    finally:
        await db.close()
