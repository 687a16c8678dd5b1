"""SQLite access that never blocks the event loop.

Reads run on a small pool of threads, each with its own connection (WAL lets them read while a
write is in progress). Writes run on one dedicated writer thread inside `BEGIN IMMEDIATE`
transactions, serialised in-process by an asyncio lock and across processes by SQLite itself.

A write transaction is one unit that cancellation cannot split: once BEGIN was handed to the
writer, the unit ends on the writer with COMMIT or ROLLBACK before the writer lock is released,
whatever cancellation (anyio cancel scope or `Task.cancel()`) arrives meanwhile. In a
`transaction()`, a cancellation that arrives while BEGIN or the work runs rolls the unit back, and
one that arrives during COMMIT lets the commit finish; a `write()` is a single hand-off that, once
on the writer, runs to its end. Either way the cancellation is re-raised once the unit has ended.
"""

from __future__ import annotations

import asyncio
import functools
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

from tool_registry.store.connection import Dialect
from tool_registry.store.units import run_to_end

T = TypeVar("T")

BUSY_TIMEOUT_MS = 30_000
# How long a health probe waits for the write lock before it reports the database unwritable.
WRITE_PROBE_SECONDS = 1.0


@dataclass(frozen=True)
class Migration:
    """One schema step of a component. Versions are per component and strictly increasing."""

    component: str
    version: int
    name: str
    sql: str
    # The same step in PostgreSQL's dialect, when `sql` is not portable (same number, so both
    # backends go through the same versions).
    postgres: str | None = None


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


class Transaction(Protocol):
    """A write transaction held by the current task; `run` executes work inside it."""

    open: bool

    async def run(self, fn: Callable[[Any], T]) -> T: ...


class Database(Protocol):
    """The contract both backends keep (`SqliteDatabase` here, `PostgresDatabase` in
    `tool_registry.store.postgres`). Work is a synchronous function of one connection
    (`tool_registry.store.connection.Conn`) run as a unit on a database thread: once handed
    over it runs to its end, whatever cancellation arrives meanwhile (re-raised afterwards)."""

    @property
    def dialect(self) -> Dialect: ...

    async def read(self, fn: Callable[[Any], T]) -> T:
        """Read-only work; each statement sees committed data."""
        ...

    async def write(
        self,
        fn: Callable[[Any], T],
        *,
        on_commit: Callable[[T], None] | None = None,
        serialised: bool = True,
    ) -> T:
        """`fn` in a write transaction of its own (joining the current task's `transaction()`
        if it holds one). Serialised writes run one at a time across every process on the
        database; `serialised=False` is for units built for concurrency (row locks)."""
        ...

    def transaction(self, scopes: Sequence[str] = ()) -> AbstractAsyncContextManager[Transaction]:
        """A write transaction held across awaits by the current task. Unscoped, it is
        serialised with every other write. With `scopes` (e.g. `space:<id>`, `user:<id>`: every
        domain whose invariants its work checks), it excludes only serialised writes and
        transactions sharing one of those scopes, so calls in different spaces commit side by
        side on PostgreSQL. Its work must then touch only data of those scopes."""
        ...

    async def probe_write(self, wait_seconds: float | None = None) -> str | None:
        """None when a write could start now, else why not (for health endpoints)."""
        ...

    async def close(self) -> None: ...


class SqliteTransaction:
    """A write transaction on the writer connection; `run` executes work inside it."""

    def __init__(self, db: SqliteDatabase) -> None:
        self._db = db
        self.open = True

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn` on the writer inside this transaction. Refused once the transaction has
        ended: the work would otherwise land in whatever unit holds the writer then."""
        if not self.open:
            raise RuntimeError("this transaction has ended; start a new one to write")
        return await self._db._on_writer(fn)


# The transaction the current task holds, if any: `Database.write` called inside it (e.g. by a
# backend that a write tool's handler uses) joins it instead of waiting for the writer lock the
# same task already holds, and its work commits or rolls back with the tool's own.
_ACTIVE: ContextVar[SqliteTransaction | None] = ContextVar("mana_active_transaction", default=None)


def transaction_held() -> bool:
    """True while the current task is inside a SQLite `transaction()` that is still open."""
    active = _ACTIVE.get()
    return active is not None and active.open


class SqliteDatabase:
    """One SQLite database file. Create with `await SqliteDatabase.open(path, migrations)`."""

    dialect: Dialect = "sqlite"

    def __init__(self, path: Path, *, readers: int = 4) -> None:
        self.path = path
        self._local = threading.local()
        self._readers = ThreadPoolExecutor(max_workers=readers, thread_name_prefix="mana-db-read")
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mana-db-write")
        self._prober = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mana-db-probe")
        self._writer_conn: sqlite3.Connection | None = None
        self._reader_conns: list[sqlite3.Connection] = []
        self._conns_lock = threading.Lock()
        self._write_lock: asyncio.Lock | None = None
        self._closed = False

    @classmethod
    async def open(
        cls, path: Path | str, migrations: Sequence[Migration] = (), *, readers: int = 4
    ) -> SqliteDatabase:
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

    async def _to_end(
        self, fn: Callable[[sqlite3.Connection], T]
    ) -> tuple[asyncio.Future[T], asyncio.CancelledError | None]:
        """`run_to_end` on the writer thread: `fn` ends there, whatever cancellation arrives."""
        self._check_open()
        return await run_to_end(self._writer, lambda: fn(self._writer_connection()))

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run read-only work on a reader thread; the connection refuses writes."""
        self._check_open()
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._readers, lambda: fn(self._reader_connection()))

    @asynccontextmanager
    async def transaction(self, scopes: Sequence[str] = ()) -> AsyncIterator[SqliteTransaction]:
        """`BEGIN IMMEDIATE` … `COMMIT` (or `ROLLBACK` on any exception) on the writer thread,
        as one unit that cancellation cannot split (see the module docstring): the writer lock
        is released only after the writer has left the transaction. SQLite has one writer, so
        `scopes` change nothing here."""
        async with self._lock():
            begun, cancelled = await self._to_end(_begin)
            if cancelled is not None:
                if _failure(begun) is None:
                    await self._end_unit(self._rollback_unit, cancelled)
                raise cancelled
            begun.result()  # BEGIN failed (e.g. another process held the lock too long)
            tx = SqliteTransaction(self)
            token = _ACTIVE.set(tx)
            try:
                yield tx
            except BaseException:
                await self._end_unit(self._rollback_unit, None)
                raise
            else:
                await self._end_unit(self._commit_unit, None)
            finally:
                tx.open = False
                _ACTIVE.reset(token)

    async def _end_unit(
        self,
        end: Callable[[sqlite3.Connection], None],
        cancelled: asyncio.CancelledError | None,
    ) -> None:
        """Run COMMIT or ROLLBACK to its end; then raise what failed or what was cancelled."""
        ended, late = await self._to_end(end)
        if _failure(ended) is not None:
            ended.result()
        if late is not None and cancelled is None:
            raise late

    async def write(
        self,
        fn: Callable[[sqlite3.Connection], T],
        *,
        on_commit: Callable[[T], None] | None = None,
        serialised: bool = True,
    ) -> T:
        """Run `fn` in its own short write transaction: BEGIN, work and COMMIT in one hop to the
        writer thread (a third of the hand-offs of `transaction()`), a unit cancellation cannot
        split. `on_commit(result)` runs on the event loop as soon as the unit committed, even
        when a cancellation arrived meanwhile (which is re-raised right after it), so a caller
        can tell a committed write from one that never happened.

        Inside a `transaction()` of this database held by the current task, `fn` joins that
        transaction instead (and commits or rolls back with it: `on_commit` is refused there).
        SQLite has one writer, so every write is serialised whatever `serialised` says."""
        active = _ACTIVE.get()
        if active is not None and active.open and active._db is self:
            if on_commit is not None:
                raise ValueError("on_commit needs a write of its own, not a joined transaction")
            return await active.run(fn)
        async with self._lock():
            done, cancelled = await self._to_end(functools.partial(self._unit, fn))
            if on_commit is not None and _failure(done) is None:
                on_commit(done.result())
            if cancelled is not None:
                raise cancelled
            return done.result()

    # -- on the writer thread ------------------------------------------------------------

    def _unit(self, fn: Callable[[sqlite3.Connection], T], conn: sqlite3.Connection) -> T:
        _begin(conn)
        try:
            result = fn(conn)
        except BaseException:
            self._rollback_unit(conn)
            raise
        self._commit_unit(conn)
        return result

    def _commit_unit(self, conn: sqlite3.Connection) -> None:
        try:
            conn.execute("COMMIT")
        except BaseException:
            self._rollback_unit(conn)
            raise

    def _rollback_unit(self, conn: sqlite3.Connection) -> None:
        """Leave the transaction. A connection that cannot roll back is closed (which ends its
        transaction) and replaced on next use, so the writer is never left inside one."""
        if not conn.in_transaction:
            return
        try:
            conn.execute("ROLLBACK")
        except BaseException:
            if conn is self._writer_conn:
                self._writer_conn = None
            conn.close()
            raise

    async def writer_in_transaction(self) -> bool:
        """Whether the writer connection is inside a transaction right now (outside a unit it
        never should be); waits for the writer lock, so units in flight end first."""
        async with self._lock():
            return await self._on_writer(lambda conn: conn.in_transaction)

    async def probe_write(self, wait_seconds: float | None = None) -> str | None:
        """Prove that a write could start now: `BEGIN IMMEDIATE` and `ROLLBACK` on a connection
        of its own that waits at most `wait_seconds` (default `WRITE_PROBE_SECONDS`) for the
        write lock. None when it could, else why not. It sees the file as another process
        would, so a lock held by another process (or by this process's writer for longer than
        the wait) fails it. The health endpoints of the server and the daemon use it."""
        self._check_open()
        wait = WRITE_PROBE_SECONDS if wait_seconds is None else wait_seconds
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._prober, _probe_write, self.path, wait)

    def _lock(self) -> asyncio.Lock:
        if self._write_lock is None:
            self._write_lock = asyncio.Lock()
        return self._write_lock

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("database is closed")

    async def close(self) -> None:
        """Close every connection, after the write units in flight have ended (a unit that was
        cancelled by the shutdown still commits or rolls back on the writer first)."""
        if self._closed:
            return
        async with self._lock():
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
        self._prober.shutdown(wait=True)
        with self._conns_lock:
            for conn in self._reader_conns:
                conn.close()
            self._reader_conns.clear()


def _begin(conn: sqlite3.Connection) -> None:
    conn.execute("BEGIN IMMEDIATE")


def _failure(done: asyncio.Future[T]) -> BaseException | None:
    if done.cancelled():
        return asyncio.CancelledError()
    return done.exception()


def _probe_write(path: Path, timeout: float) -> str | None:
    try:
        conn = sqlite3.connect(
            f"{path.resolve().as_uri()}?mode=rw", uri=True, timeout=timeout, isolation_level=None
        )
    except sqlite3.Error as exc:
        return f"cannot open the database: {exc}"
    try:
        conn.execute(f"PRAGMA busy_timeout = {max(0, int(timeout * 1000))}")
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("ROLLBACK")
    except sqlite3.Error as exc:
        return f"a write could not start within {timeout:g} s: {exc}"
    finally:
        conn.close()
    return None


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
