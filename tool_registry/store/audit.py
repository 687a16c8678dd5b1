"""Audit rows: one per invocation. Writes commit theirs inside the write's own transaction;
reads are buffered and flushed in small batches so a read never waits on the writer."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import sqlite3
from collections.abc import Sequence
from dataclasses import astuple, dataclass

from tool_registry.store.database import Database

_INSERT = (
    "INSERT INTO audit_log (at, request_id, user_id, space_id, tool, invoker, input_hash, "
    "outcome, reason, latency_ms) VALUES (?,?,?,?,?,?,?,?,?,?)"
)


@dataclass(frozen=True)
class AuditRow:
    at: str
    request_id: str
    user_id: str | None
    space_id: str | None
    tool: str
    invoker: str
    input_hash: str | None
    outcome: str
    reason: str | None
    latency_ms: float


def insert_rows(conn: sqlite3.Connection, rows: Sequence[AuditRow]) -> None:
    conn.executemany(_INSERT, [astuple(r) for r in rows])


class AuditLog:
    """Owns the buffered path; `flush()` makes every enqueued row durable."""

    def __init__(self, db: Database, *, flush_delay: float = 0.02, max_buffer: int = 500) -> None:
        self._db = db
        self._delay = flush_delay
        self._max = max_buffer
        self._buffer: list[AuditRow] = []
        self._task: asyncio.Task[None] | None = None

    def enqueue(self, row: AuditRow) -> None:
        self._buffer.append(row)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._flush_later())

    async def _flush_later(self) -> None:
        if len(self._buffer) < self._max:
            await asyncio.sleep(self._delay)
        await self._write_buffer()

    async def _write_buffer(self) -> None:
        while self._buffer:
            batch, self._buffer = self._buffer, []
            await self._db.write(functools.partial(insert_rows, rows=batch))

    async def flush(self) -> None:
        task = self._task
        if task is not None and not task.done():
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._write_buffer()

    async def recent(
        self, *, limit: int = 50, space_id: str | None = None, tool: str | None = None
    ) -> list[dict[str, object]]:
        await self.flush()
        clauses, params = [], []
        if space_id is not None:
            clauses.append("space_id = ?")
            params.append(space_id)
        if tool is not None:
            clauses.append("tool = ?")
            params.append(tool)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        sql = f"SELECT * FROM audit_log {where} ORDER BY id DESC LIMIT ?"
        params.append(str(limit))
        rows = await self._db.read(lambda c: c.execute(sql, params).fetchall())
        return [dict(r) for r in rows]
