"""PostgreSQL behind the same `Database` contract as the embedded SQLite file.

psycopg 3 with `psycopg_pool`: a read pool whose sessions are read-only and a write pool. Store
functions stay synchronous functions of one connection and run as units on database threads, so
the SQLite contract holds unchanged: a unit handed to its thread runs to COMMIT or ROLLBACK
whatever cancellation arrives meanwhile, and the cancellation is re-raised after it.

Writes are serialised across every process on the database by a transaction-scoped advisory lock
taken in the same round trip as BEGIN, exactly like SQLite's single writer: every check-then-write
a store makes (idempotency keys, running-mission caps, proposal claims, rate-limit counts) holds
on both backends. Units built for concurrency (lease claims with `FOR UPDATE SKIP LOCKED`) opt out
with `write(fn, serialised=False)`.

A server that cannot be reached fails a call with `DatabaseUnavailable` (reason `unavailable`,
one sentence for the client; the driver's detail goes to the log). When the server restarts,
every pooled connection is dead: a unit that finds its connection dead before it did anything
(a read, or a write whose BEGIN failed) runs once more on a fresh connection, so the first call
after a restart does not fail. While the server is down, calls wait at most
`OUTAGE_ACQUIRE_SECONDS` for a connection instead of `ACQUIRE_TIMEOUT_SECONDS`, and the pools
keep reconnecting by themselves (each waiting call starts an attempt once the pool's own attempts
gave up after `RECONNECT_TIMEOUT_SECONDS`), so calls succeed again as soon as the server is back,
without restarting the process.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import re
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from contextvars import ContextVar
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

import psycopg
import structlog
from psycopg import pq
from psycopg_pool import ConnectionPool, PoolTimeout

from tool_registry.errors import ManaError
from tool_registry.store.connection import Dialect
from tool_registry.store.units import run_to_end

T = TypeVar("T")

# Advisory lock keys (any 64-bit number unique to this purpose): the write lock every serialised
# unit takes, and the lock `mana init` and `Database.open` take while migrating.
WRITE_LOCK_KEY = 0x6D616E61_77726974  # "manawrit"
MIGRATE_LOCK_KEY = 0x6D616E61_6D696772  # "manamigr"
_BEGIN_SERIALISED = f"BEGIN; SELECT pg_advisory_xact_lock({WRITE_LOCK_KEY})"


def scope_lock_key(scope: str) -> int:
    """The advisory lock key (a signed 64-bit number) of one write scope such as `space:<id>`."""
    return int.from_bytes(hashlib.blake2b(scope.encode(), digest_size=8).digest(), signed=True)


def begin_statement(scopes: Sequence[str]) -> str:
    """BEGIN and the write locks, in one round trip. Unscoped: the write lock, exclusive. Scoped:
    the write lock shared (so unscoped writes still exclude everything) and then each scope's
    lock, exclusive, in key order (the same order for every transaction, so none deadlock)."""
    if not scopes:
        return _BEGIN_SERIALISED
    keys = sorted({scope_lock_key(s) for s in scopes})
    locks = "".join(f"; SELECT pg_advisory_xact_lock({k})" for k in keys)
    return f"BEGIN; SELECT pg_advisory_xact_lock_shared({WRITE_LOCK_KEY}){locks}"


CONNECT_TIMEOUT_SECONDS = 10.0
# A write session idle inside a transaction this long is ended by the server, which releases its
# locks: a process that stopped mid-transaction (SIGSTOP, a paused VM, a wedged handler) cannot
# hold every other writer up for longer. Its own unit then fails (nothing of it commits).
IDLE_IN_TRANSACTION_SECONDS = 120.0
# How long a call waits for a pooled connection before it reports the database unavailable.
ACQUIRE_TIMEOUT_SECONDS = 15.0
# The same while the server is known to be down (since the last unit that failed as unavailable,
# until one succeeds): calls fail fast, and each still gives the pool a chance to reconnect.
OUTAGE_ACQUIRE_SECONDS = 1.0
# How long a unit that found its pooled connection dead waits for a fresh one.
STALE_RETRY_ACQUIRE_SECONDS = 5.0
# How long a pool keeps retrying (with backoff) to replace a lost connection before it leaves
# reconnecting to the next call that needs a connection; short, so that a restarted server is
# used again within seconds.
RECONNECT_TIMEOUT_SECONDS = 5.0
# SQLSTATE classes and codes that mean the server went away, not that the statement was wrong.
_GONE_CODES = frozenset({"57P01", "57P02", "57P03", "53300"})


log = structlog.get_logger("mana.store")


class DatabaseUnavailable(ManaError):
    """The database server cannot be reached right now; nothing of this call was committed
    unless the caller was told so. Retrying later is the right reaction."""

    reason = "unavailable"


class DatabaseUnreachable(ManaError):
    """Raised at start-up: the URL does not lead to a usable database. One line, naming the host
    and the database, never the password."""

    reason = "database-unreachable"


def is_postgres_url(target: object) -> bool:
    return isinstance(target, str) and target.startswith(("postgresql://", "postgres://"))


def describe_url(url: str) -> str:
    """`host:port/database` of a PostgreSQL URL, for messages and logs (no user, no password)."""
    parts = urlsplit(url)
    host = parts.hostname or "localhost"
    port = f":{parts.port}" if parts.port else ""
    database = unquote(parts.path.lstrip("/")) or "(default database)"
    return f"{host}{port}/{database}"


# -- placeholders and rows -----------------------------------------------------------------------

_QUOTED_OR_MARK = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|\?|%")


@functools.lru_cache(maxsize=4096)
def to_pg(sql: str) -> str:
    """`?` placeholders to psycopg's `%s` outside quoted text (a `?` inside quotes is text), and
    every `%` to `%%`: psycopg reads `%` as a placeholder even inside quotes."""

    def replace(match: re.Match[str]) -> str:
        found = match.group(0)
        if found == "?":
            return "%s"
        return found.replace("%", "%%")

    return _QUOTED_OR_MARK.sub(replace, sql)


def _param(value: Any) -> Any:
    # SQLite stores booleans as 0/1 in INTEGER columns; keep that on PostgreSQL too.
    return int(value) if isinstance(value, bool) else value


class PgRow:
    """A result row readable by position and by column name, like `sqlite3.Row`."""

    __slots__ = ("_index", "_values")

    def __init__(self, values: Sequence[Any], index: dict[str, int]) -> None:
        self._values = values
        self._index = index

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            try:
                return self._values[self._index[key]]
            except KeyError:
                raise IndexError(f"no such column: {key}") from None
        return self._values[key]

    def __iter__(self) -> Iterator[Any]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, PgRow):
            return tuple(self._values) == tuple(other._values) and self._index == other._index
        return NotImplemented

    def __hash__(self) -> int:
        return hash(tuple(self._values))

    def keys(self) -> list[str]:
        return list(self._index)

    def __repr__(self) -> str:
        return f"PgRow({dict(zip(self._index, self._values, strict=True))!r})"


def pg_row(cursor: psycopg.Cursor[Any]) -> Callable[[Sequence[Any]], PgRow]:
    """psycopg row factory building `PgRow`s; the name index is shared by a result's rows."""
    description = cursor.description
    index = {} if description is None else {c.name: i for i, c in enumerate(description)}
    return functools.partial(PgRow, index=index)


class PgConn:
    """A psycopg connection as the stores see it (`tool_registry.store.connection.Conn`)."""

    dialect: Dialect = "postgres"

    def __init__(self, raw: psycopg.Connection[Any]) -> None:
        self.raw = raw

    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> psycopg.Cursor[Any]:
        if parameters:
            return self.raw.execute(to_pg(sql), [_param(p) for p in parameters])
        return self.raw.execute(sql)  # several statements may run in one go without parameters

    def executemany(self, sql: str, parameters: Iterable[Sequence[Any]], /) -> psycopg.Cursor[Any]:
        cur = self.raw.cursor()
        cur.executemany(to_pg(sql), [[_param(p) for p in row] for row in parameters])
        return cur

    @property
    def in_transaction(self) -> bool:
        return self.raw.info.transaction_status != pq.TransactionStatus.IDLE


# -- errors ------------------------------------------------------------------------------------


def is_unavailable(exc: BaseException, raw: psycopg.Connection[Any] | None = None) -> bool:
    """Whether `exc` means the server could not be reached (not that the SQL was wrong)."""
    if isinstance(exc, PoolTimeout | DatabaseUnavailable):
        return True
    if not isinstance(exc, psycopg.Error):
        return False
    if raw is not None and raw.broken:
        return True
    code = exc.sqlstate or ""
    return code.startswith("08") or code in _GONE_CODES or isinstance(exc, psycopg.InterfaceError)


UNAVAILABLE_MESSAGE = "the database is unavailable right now; try again shortly"


def _detail(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


class _Stale(Exception):
    """A pooled connection turned out dead before the unit did anything that counts (a read,
    or the BEGIN of a write): the unit may run again on a fresh connection."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause


def _begin_on(raw: psycopg.Connection[Any], statement: str) -> None:
    """BEGIN on a pooled connection; `_Stale` if the connection is dead (nothing ran)."""
    try:
        raw.execute(statement)
    except psycopg.Error as exc:
        if is_unavailable(exc, raw):
            raise _Stale(exc) from exc
        raise


# -- the database --------------------------------------------------------------------------------


class PgTransaction:
    """A write transaction holding one pooled connection; `run` executes work inside it."""

    def __init__(self, db: PostgresDatabase, raw: psycopg.Connection[Any]) -> None:
        self._db = db
        self._raw = raw
        self.open = True

    async def run(self, fn: Callable[[Any], T]) -> T:
        """Run `fn` inside this transaction. Refused once the transaction has ended."""
        if not self.open:
            raise RuntimeError("this transaction has ended; start a new one to write")
        conn = PgConn(self._raw)
        return await self._db._in_thread(
            lambda: self._db._guard(lambda: fn(conn), self._raw), held=True
        )


_ACTIVE: ContextVar[PgTransaction | None] = ContextVar("mana_active_pg_transaction", default=None)


def transaction_held() -> bool:
    """True while the current task is inside a PostgreSQL `transaction()` that is still open."""
    active = _ACTIVE.get()
    return active is not None and active.open


class PostgresDatabase:
    """One PostgreSQL database. Create with `await PostgresDatabase.open(url, migrations)`."""

    dialect: Dialect = "postgres"

    def __init__(
        self,
        url: str,
        *,
        readers: int = 4,
        writers: int = 4,
        idle_in_transaction_seconds: float = IDLE_IN_TRANSACTION_SECONDS,
    ) -> None:
        self.url = url
        self.description = describe_url(url)
        common: dict[str, Any] = {
            "autocommit": True,
            "row_factory": pg_row,
            "connect_timeout": int(CONNECT_TIMEOUT_SECONDS),
            "application_name": "mana",
        }
        self._read_pool = ConnectionPool(
            url,
            min_size=1,
            max_size=readers,
            open=False,
            kwargs={**common, "options": "-c default_transaction_read_only=on"},
            name="mana-read",
            reconnect_timeout=RECONNECT_TIMEOUT_SECONDS,
        )
        self._write_pool = ConnectionPool(
            url,
            min_size=1,
            max_size=writers,
            open=False,
            kwargs={
                **common,
                "options": "-c idle_in_transaction_session_timeout="
                f"{max(1, int(idle_in_transaction_seconds * 1000))}",
            },
            name="mana-write",
            reconnect_timeout=RECONNECT_TIMEOUT_SECONDS,
        )
        # One thread per pooled connection plus one for health probes: a unit never waits for
        # a thread while holding a connection.
        self._threads = ThreadPoolExecutor(
            max_workers=readers + writers + 1, thread_name_prefix="mana-pg"
        )
        # The work of a `transaction()` that holds its connection (and the write lock) runs on
        # threads of its own: on the shared ones it could queue behind units that wait for that
        # same lock or for a connection, which nobody releases until it finishes (a deadlock
        # broken only by their acquire timeout). At most `writers` transactions hold one.
        self._held_threads = ThreadPoolExecutor(
            max_workers=writers, thread_name_prefix="mana-pg-held"
        )
        self._closed = False
        # Whether the server is known to be down: set by a unit that failed as unavailable,
        # cleared by the next one that succeeds (read and written from database threads; a
        # stale value only changes how long one call waits for a connection).
        self._outage = False
        self._reported = False  # the outage's warning was logged

    @classmethod
    async def open(
        cls,
        url: str,
        migrations: Sequence[Any] = (),
        *,
        readers: int = 4,
        writers: int = 4,
        create: bool = True,
        idle_in_transaction_seconds: float = IDLE_IN_TRANSACTION_SECONDS,
    ) -> PostgresDatabase:
        """Connect (a one-line `DatabaseUnreachable` naming host and database if that fails),
        refuse an uninitialised database unless `create`, then apply pending `migrations`."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, check_reachable, url)
        db = cls(
            url,
            readers=readers,
            writers=writers,
            idle_in_transaction_seconds=idle_in_transaction_seconds,
        )
        try:
            await loop.run_in_executor(None, db._open_pools)
            if not create:
                await db._in_thread(lambda: db._with_write_conn(db._require_schema))
            # Pending migrations apply on open, as on SQLite: an install upgraded in place
            # needs no extra step (the migration lock lets several processes open at once).
            await db._in_thread(lambda: db._with_write_conn(lambda raw: migrate(raw, migrations)))
        except BaseException:
            await db.close()
            raise
        return db

    def _open_pools(self) -> None:
        self._write_pool.open(wait=True, timeout=CONNECT_TIMEOUT_SECONDS)
        self._read_pool.open(wait=True, timeout=CONNECT_TIMEOUT_SECONDS)

    def _require_schema(self, raw: psycopg.Connection[Any]) -> None:
        found = raw.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone()
        if not found or not found[0]:
            raise DatabaseUnreachable(
                f"the database at {self.description} is not initialised: run `mana init` with "
                "the same --database-url (env MANA_DATABASE_URL) first"
            )

    # -- execution ---------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("database is closed")

    async def _to_end(
        self, work: Callable[[], T], *, held: bool = False
    ) -> tuple[asyncio.Future[T], BaseException | None]:
        """`run_to_end` on a database thread. `held`: the work of a transaction already
        holding its connection (runs on the held threads)."""
        self._check_open()
        return await run_to_end(self._held_threads if held else self._threads, work)

    async def _in_thread(self, work: Callable[[], T], *, held: bool = False) -> T:
        """Run `work` to its end on a database thread; then re-raise a cancellation that arrived
        meanwhile, else return its result."""
        done, cancelled = await self._to_end(work, held=held)
        if cancelled is not None:
            raise cancelled
        return done.result()

    def _guard(self, work: Callable[[], T], raw: psycopg.Connection[Any] | None) -> T:
        """Run `work`; a lost server becomes `DatabaseUnavailable`, and the pools are told to
        drop the connections that broke with it."""
        try:
            result = work()
        except BaseException as exc:
            if isinstance(exc, DatabaseUnavailable):
                raise
            if isinstance(exc, _Stale) and raw is None:
                raise self._lost(exc.cause) from None
            if is_unavailable(exc, raw):
                raise self._lost(exc) from None
            raise
        if self._outage:
            self._outage = self._reported = False
            log.info("database reachable again", database=self.description)
        return result

    def _lost(self, exc: BaseException) -> DatabaseUnavailable:
        """Note the outage (logged once, with the driver's detail), have the pools drop their
        broken connections, and give the error the caller raises. A pool timeout while the
        server still accepts connections is a busy pool, not an outage: the call fails, but
        later calls keep the full wait."""
        if isinstance(exc, PoolTimeout) and not self._outage and self._server_answers():
            log.warning(
                "no pooled database connection within the wait; the server is up",
                database=self.description,
                error=_detail(exc),
            )
            return DatabaseUnavailable(UNAVAILABLE_MESSAGE)
        self._outage = True
        if not self._reported:
            self._reported = True
            log.warning("database unavailable", database=self.description, error=_detail(exc))
        self._drop_broken()
        return DatabaseUnavailable(UNAVAILABLE_MESSAGE)

    def _server_answers(self) -> bool:
        """Whether a new connection to the server can be made right now (outside the pools)."""
        try:
            psycopg.connect(self.url, connect_timeout=2, application_name="mana-check").close()
        except psycopg.Error:
            return False
        return True

    def _acquire_timeout(self) -> float:
        return OUTAGE_ACQUIRE_SECONDS if self._outage else ACQUIRE_TIMEOUT_SECONDS

    def _once_more_if_stale(self, attempt: Callable[[float], T]) -> T:
        """Run `attempt(acquire_timeout)`; if its connection turned out dead before it did
        anything, run it once more on a fresh one (a restarted server leaves every pooled
        connection dead), waiting at most `STALE_RETRY_ACQUIRE_SECONDS` for it: if the server
        is still down, the call fails soon instead of after the full timeout."""
        try:
            return attempt(self._acquire_timeout())
        except _Stale as stale:
            log.info(
                "database connection lost; retrying on a fresh one",
                database=self.description,
                error=_detail(stale.cause),
            )
            self._drop_broken()
        return attempt(min(self._acquire_timeout(), STALE_RETRY_ACQUIRE_SECONDS))

    def _drop_broken(self) -> None:
        for pool in (self._read_pool, self._write_pool):
            # A check that cannot run now runs again on the next failure.
            with contextlib.suppress(Exception):
                pool.check()

    def _with_write_conn(self, work: Callable[[psycopg.Connection[Any]], T]) -> T:
        """`work` on a pooled write connection; it may raise `_Stale` (see `_begin_on`) to
        be run once more on a fresh connection."""

        def attempt(timeout: float) -> T:
            with self._write_pool.connection(timeout=timeout) as raw:
                return self._guard(lambda: work(raw), raw)

        return self._guard(lambda: self._once_more_if_stale(attempt), None)

    def _read_unit(self, fn: Callable[[Any], T]) -> T:
        # Reads have no effects: one that finds its connection dead at any point runs once
        # more on a fresh connection.
        def attempt(timeout: float) -> T:
            with self._read_pool.connection(timeout=timeout) as raw:
                try:
                    return fn(PgConn(raw))
                except psycopg.Error as exc:
                    if is_unavailable(exc, raw):
                        raise _Stale(exc) from exc
                    raise

        return self._guard(lambda: self._once_more_if_stale(attempt), None)

    def _write_unit(self, fn: Callable[[Any], T], serialised: bool) -> T:
        def work(raw: psycopg.Connection[Any]) -> T:
            _begin_on(raw, _BEGIN_SERIALISED if serialised else "BEGIN")
            try:
                result = fn(PgConn(raw))
                raw.execute("COMMIT")
                return result
            except BaseException:
                if not raw.broken and raw.info.transaction_status != pq.TransactionStatus.IDLE:
                    raw.execute("ROLLBACK")
                raise

        return self._with_write_conn(work)

    async def read(self, fn: Callable[[Any], T]) -> T:
        """Run read-only work on a pooled read-only session (each statement sees committed data,
        like SQLite's autocommit readers)."""
        return await self._in_thread(lambda: self._read_unit(fn))

    async def write(
        self,
        fn: Callable[[Any], T],
        *,
        on_commit: Callable[[T], None] | None = None,
        serialised: bool = True,
    ) -> T:
        """Run `fn` in its own write transaction, a unit cancellation cannot split; inside a
        `transaction()` of this database held by the current task, `fn` joins it. See
        `tool_registry.store.database.Database.write` for the full contract."""
        active = _ACTIVE.get()
        if active is not None and active.open and active._db is self:
            if on_commit is not None:
                raise ValueError("on_commit needs a write of its own, not a joined transaction")
            return await active.run(fn)
        done, cancelled = await self._to_end(lambda: self._write_unit(fn, serialised))
        if on_commit is not None and not done.cancelled() and done.exception() is None:
            on_commit(done.result())
        if cancelled is not None:
            raise cancelled
        return done.result()

    @asynccontextmanager
    async def transaction(self, scopes: Sequence[str] = ()) -> AsyncIterator[PgTransaction]:
        """BEGIN (taking the write lock, or with `scopes` the locks of those scopes: see
        `begin_statement`) … COMMIT, or ROLLBACK on any exception, on one pooled connection held
        for the block; cancellation cannot split it (see the module docstring)."""

        def attempt(timeout: float) -> psycopg.Connection[Any]:
            raw = self._write_pool.getconn(timeout=timeout)
            try:
                self._guard(lambda: _begin_on(raw, begin_statement(scopes)), raw)
            except BaseException:
                self._write_pool.putconn(raw)
                raise
            return raw

        def begin() -> psycopg.Connection[Any]:
            return self._once_more_if_stale(attempt)

        def end(raw: psycopg.Connection[Any], statement: str) -> None:
            try:
                if not raw.broken and raw.info.transaction_status != pq.TransactionStatus.IDLE:
                    self._guard(lambda: raw.execute(statement), raw)
            finally:
                self._write_pool.putconn(raw)

        begun, cancelled = await self._to_end(lambda: self._guard(begin, None))
        if cancelled is not None:
            if not begun.cancelled() and begun.exception() is None:
                await self._to_end(lambda: end(begun.result(), "ROLLBACK"), held=True)
            raise cancelled
        raw = begun.result()
        tx = PgTransaction(self, raw)
        token = _ACTIVE.set(tx)
        try:
            yield tx
        except BaseException:
            tx.open = False
            await self._in_thread(lambda: end(raw, "ROLLBACK"), held=True)
            raise
        else:
            tx.open = False
            await self._in_thread(lambda: end(raw, "COMMIT"), held=True)
        finally:
            tx.open = False
            _ACTIVE.reset(token)

    async def probe_write(self, wait_seconds: float | None = None) -> str | None:
        """None when a write could start now (a connection, BEGIN and the write lock within
        `wait_seconds`), else why not. The health endpoints use it."""
        from tool_registry.store.database import WRITE_PROBE_SECONDS

        self._check_open()
        wait = WRITE_PROBE_SECONDS if wait_seconds is None else wait_seconds
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._threads, _probe, self.url, wait)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        loop = asyncio.get_running_loop()

        def shut() -> None:
            self._read_pool.close()
            self._write_pool.close()

        await loop.run_in_executor(self._threads, shut)
        self._threads.shutdown(wait=True)
        self._held_threads.shutdown(wait=True)


def _probe(url: str, wait: float) -> str | None:
    timeout_ms = max(1, int(wait * 1000))
    try:
        with psycopg.connect(
            url, connect_timeout=max(1, int(wait + 0.999)), autocommit=True
        ) as raw:
            raw.execute(f"SET lock_timeout = {timeout_ms}")
            raw.execute("BEGIN")
            raw.execute(f"SELECT pg_advisory_xact_lock({WRITE_LOCK_KEY})")
            raw.execute("ROLLBACK")
    except psycopg.Error as exc:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return f"a write could not start within {wait:g} s on {describe_url(url)}: {detail}"
    return None


def check_reachable(url: str) -> None:
    """Connect once, or raise `DatabaseUnreachable` with one line naming host and database."""
    try:
        psycopg.connect(url, connect_timeout=int(CONNECT_TIMEOUT_SECONDS)).close()
    except psycopg.Error as exc:
        detail = " ".join(str(exc).split()) or type(exc).__name__
        # libpq puts the password in no message, but be sure: cut any URL it might echo.
        parts = urlsplit(url)
        if parts.password:
            detail = detail.replace(parts.password, "***")
        raise DatabaseUnreachable(
            f"cannot connect to PostgreSQL at {describe_url(url)}: {detail}"
        ) from None


def migrate(raw: psycopg.Connection[Any], migrations: Sequence[Any]) -> list[str]:
    """Apply pending migrations (their `postgres` text, else their portable `sql`) in one
    transaction under the migration lock, so several processes may open the database at once."""
    applied: list[str] = []
    raw.execute("BEGIN")
    try:
        raw.execute(f"SELECT pg_advisory_xact_lock({MIGRATE_LOCK_KEY})")
        raw.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (component TEXT NOT NULL, "
            "version INTEGER NOT NULL, name TEXT NOT NULL, applied_at TEXT NOT NULL "
            "DEFAULT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'), "
            "PRIMARY KEY (component, version))"
        )
        done = {
            (row[0], row[1])
            for row in raw.execute("SELECT component, version FROM schema_migrations").fetchall()
        }
        for m in sorted(migrations, key=lambda m: (m.component, m.version)):
            if (m.component, m.version) in done:
                continue
            script = m.postgres if m.postgres is not None else m.sql
            raw.execute(script)
            raw.execute(
                "INSERT INTO schema_migrations (component, version, name) VALUES (%s, %s, %s)",
                (m.component, m.version, m.name),
            )
            applied.append(f"{m.component}:{m.version}:{m.name}")
        raw.execute("COMMIT")
    except BaseException:
        if not raw.broken:
            raw.execute("ROLLBACK")
        raise
    return applied
