"""SQLite access that never blocks the event loop.

Reads run on a small pool of threads, each with its own connection (WAL lets them read while a
write is in progress). Writes run on one dedicated writer thread inside `BEGIN IMMEDIATE`
transactions, serialised in-process by an asyncio lock and across processes by SQLite itself.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

BUSY_TIMEOUT_MS = 30_000


@dataclass(frozen=True)
class Migration:
    """One schema step of a component. Versions are per component and strictly increasing."""

    component: str
    version: int
    name: str
    sql: str


def _casefold(value: object) -> str | None:
    return None if value is None else str(value).casefold()


def connect(path: Path, *, read_only: bool = False) -> sqlite3.Connection:
    conn = sqlite3.connect(
        path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False
    )
    conn.row_factory = sqlite3.Row
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("PRAGMA synchronous = NORMAL")
    if read_only:
        conn.execute("PRAGMA query_only = ON")
    conn.create_function("mana_fold", 1, _casefold, deterministic=True)
    return conn


class Transaction:
    """A write transaction on the writer connection; `run` executes work inside it."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self.open = True

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await self._db._on_writer(fn)


# The transaction the current task holds, if any: `Database.write` called inside it (e.g. by a
# backend that a write tool's handler uses) joins it instead of waiting for the writer lock the
# same task already holds, and its work commits or rolls back with the tool's own.
_ACTIVE: ContextVar[Transaction | None] = ContextVar("mana_active_transaction", default=None)


class Database:
    """One SQLite database file. Create with `await Database.open(path, migrations)`."""

    def __init__(self, path: Path, *, readers: int = 4) -> None:
        self.path = path
        self._local = threading.local()
        self._readers = ThreadPoolExecutor(max_workers=readers, thread_name_prefix="mana-db-read")
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mana-db-write")
        self._writer_conn: sqlite3.Connection | None = None
        self._reader_conns: list[sqlite3.Connection] = []
        self._conns_lock = threading.Lock()
        self._write_lock: asyncio.Lock | None = None
        self._closed = False

    @classmethod
    async def open(
        cls, path: Path | str, migrations: Sequence[Migration] = (), *, readers: int = 4
    ) -> Database:
        db_path = Path(path)
        db_path.parent.mkdir(parents=True, exist_ok=True)
        db = cls(db_path, readers=readers)
        await db._on_writer(lambda conn: apply_migrations(conn, migrations))
        return db

    # -- execution -------------------------------------------------------------------------

    def _writer_connection(self) -> sqlite3.Connection:
        if self._writer_conn is None:
            conn = connect(self.path)
            conn.execute("PRAGMA journal_mode = WAL")
            self._writer_conn = conn
        return self._writer_conn

    def _reader_connection(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = connect(self.path, read_only=True)
            self._local.conn = conn
            with self._conns_lock:
                self._reader_conns.append(conn)
        return conn

    async def _on_writer(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        self._check_open()
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._writer, lambda: fn(self._writer_connection()))

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run read-only work on a reader thread; the connection refuses writes."""
        self._check_open()
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._readers, lambda: fn(self._reader_connection()))

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        """`BEGIN IMMEDIATE` … `COMMIT` (or `ROLLBACK` on any exception) on the writer thread."""
        async with self._lock():
            await self._on_writer(lambda conn: conn.execute("BEGIN IMMEDIATE"))
            tx = Transaction(self)
            token = _ACTIVE.set(tx)
            try:
                yield tx
            except BaseException:
                await asyncio.shield(self._on_writer(_rollback))
                raise
            else:
                await self._on_writer(lambda conn: conn.execute("COMMIT"))
            finally:
                tx.open = False
                _ACTIVE.reset(token)

    async def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn` in its own short write transaction: BEGIN, work and COMMIT in one hop to the
        writer thread (a third of the hand-offs of `transaction()`). Inside a `transaction()` of
        this database held by the current task, `fn` joins that transaction instead."""
        active = _ACTIVE.get()
        if active is not None and active.open and active._db is self:
            return await active.run(fn)
        async with self._lock():
            return await self._on_writer(lambda conn: _run_in_transaction(conn, fn))

    def _lock(self) -> asyncio.Lock:
        if self._write_lock is None:
            self._write_lock = asyncio.Lock()
        return self._write_lock

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("database is closed")

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        loop = asyncio.get_running_loop()

        def close_writer() -> None:
            if self._writer_conn is not None:
                self._writer_conn.close()

        await loop.run_in_executor(self._writer, close_writer)
        self._writer.shutdown(wait=True)
        self._readers.shutdown(wait=True)
        with self._conns_lock:
            for conn in self._reader_conns:
                conn.close()
            self._reader_conns.clear()


def _run_in_transaction(conn: sqlite3.Connection, fn: Callable[[sqlite3.Connection], T]) -> T:
    conn.execute("BEGIN IMMEDIATE")
    try:
        result = fn(conn)
    except BaseException:
        _rollback(conn)
        raise
    conn.execute("COMMIT")
    return result


def _rollback(conn: sqlite3.Connection) -> None:
    if conn.in_transaction:
        conn.execute("ROLLBACK")


def apply_migrations(conn: sqlite3.Connection, migrations: Sequence[Migration]) -> list[str]:
    """Apply pending migrations in one transaction; safe when several processes open at once."""
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (component TEXT NOT NULL, "
        "version INTEGER NOT NULL, name TEXT NOT NULL, applied_at TEXT NOT NULL "
        "DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')), PRIMARY KEY (component, version))"
    )
    applied: list[str] = []
    conn.execute("BEGIN IMMEDIATE")
    try:
        done = {
            (row["component"], row["version"])
            for row in conn.execute("SELECT component, version FROM schema_migrations")
        }
        for m in sorted(migrations, key=lambda m: (m.component, m.version)):
            if (m.component, m.version) in done:
                continue
            for statement in _split_sql(m.sql):
                conn.execute(statement)
            conn.execute(
                "INSERT INTO schema_migrations (component, version, name) VALUES (?, ?, ?)",
                (m.component, m.version, m.name),
            )
            applied.append(f"{m.component}:{m.version}:{m.name}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return applied


def _split_sql(script: str) -> list[str]:
    statements, current = [], ""
    for line in script.splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            if current.strip():
                statements.append(current.strip())
            current = ""
    if current.strip():
        statements.append(current.strip())
    return statements
