"""Audit rows: one per invocation. Writes commit theirs inside the write's own transaction;
reads are buffered and flushed in small batches so a read never waits on the writer."""

from __future__ import annotations

import asyncio
import contextvars
import functools
from collections.abc import Sequence
from dataclasses import astuple, dataclass

import structlog

from tool_registry.store.connection import Conn
from tool_registry.store.database import Database

log = structlog.get_logger("mana.audit")

_INSERT = (
    "INSERT INTO audit_log (at, request_id, user_id, space_id, tool, invoker, input_hash, "
    "outcome, reason, latency_ms, confirmation) VALUES (?,?,?,?,?,?,?,?,?,?,?)"
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
    # The person's answer when the call asked them to confirm it (accept, decline, cancel,
    # unavailable); None when nothing was asked.
    confirmation: str | None = None


def insert_rows(conn: Conn, rows: Sequence[AuditRow]) -> None:
    conn.executemany(_INSERT, [astuple(r) for r in rows])


class AuditLog:
    """Owns the buffered path; `flush()` makes every enqueued row durable.

    A row leaves the buffer only once the batch holding it has committed (the database's
    `on_commit` hook says so even when the flushing task is cancelled meanwhile), so a failed or
    cancelled flush keeps its rows for the next one and a committed batch is never written
    twice. One flush writes at a time. The background flush runs in a context of its own (it
    never joins a caller's transaction) and logs a failure instead of leaving it to the event
    loop as an unretrieved task exception; its rows wait for the next flush."""

    def __init__(self, db: Database, *, flush_delay: float = 0.02, max_buffer: int = 500) -> None:
        self._db = db
        self._delay = flush_delay
        self._max = max_buffer
        self._buffer: list[AuditRow] = []
        self._task: asyncio.Task[None] | None = None
        self._writing = asyncio.Lock()

    @property
    def pending(self) -> int:
        """Rows enqueued and not yet durable."""
        return len(self._buffer)

    def enqueue(self, row: AuditRow) -> None:
        self._buffer.append(row)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(
                self._flush_later(), context=contextvars.Context()
            )

    async def _flush_later(self) -> None:
        if len(self._buffer) < self._max:
            await asyncio.sleep(self._delay)
        try:
            await self._write_buffer()
        except Exception:
            log.exception("audit flush failed; its rows stay buffered", pending=self.pending)

    async def _write_buffer(self) -> None:
        async with self._writing:
            while self._buffer:
                batch = self._buffer[: self._max]

                def committed(_: None, written: int = len(batch)) -> None:
                    del self._buffer[:written]

                await self._db.write(
                    functools.partial(insert_rows, rows=batch), on_commit=committed
                )

    async def flush(self) -> None:
        """Write every buffered row now (waiting for a flush in progress); raises if the
        database refuses them (they stay buffered)."""
        await self._write_buffer()

    async def aclose(self) -> None:
        """Stop the background flush (a batch it is writing still lands), then flush the rest."""
        task = self._task
        if task is not None and not task.done():
            task.cancel()
            await asyncio.wait((task,))
        await self.flush()

    async def recent(
        self, *, limit: int = 50, space_id: str | None = None, tool: str | None = None
    ) -> list[dict[str, object]]:
        await self.flush()
        clauses: list[str] = []
        params: list[str | int] = []
        if space_id is not None:
            clauses.append("space_id = ?")
            params.append(space_id)
        if tool is not None:
            clauses.append("tool = ?")
            params.append(tool)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        sql = f"SELECT * FROM audit_log {where} ORDER BY id DESC LIMIT ?"
        params.append(int(limit))
        rows = await self._db.read(lambda c: c.execute(sql, params).fetchall())
        return [dict(r) for r in rows]
