"""The store on both backends (`database_target`): migrations, scoping, LWW, soft delete,
non-blocking execution, write units that cancellation cannot split, typed field filters that
answer alike on SQLite and PostgreSQL; and the SQLite file's own internals (WAL, the writer
thread, query plans) on SQLite alone."""

from __future__ import annotations

import asyncio
import gc
import random
import sqlite3
import threading
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import anyio
import psycopg
import pytest

from tool_registry.clock import FixedClock
from tool_registry.errors import ConflictError, NotAMemberError, ToolError, ValidationFailed
from tool_registry.store import (
    Accounts,
    Filter,
    PostgresDatabase,
    ScopedStore,
    SqliteDatabase,
    database,
    open_database,
)
from tool_registry.store import audit as audit_module
from tool_registry.store.audit import AuditLog, AuditRow, insert_rows
from tool_registry.store.connection import Conn
from tool_registry.store.database import Database, Migration
from tool_registry.store.migrations import CORE_MIGRATIONS
from tool_registry.store.records import ReadOnlyStoreError, ReadRunner
from tool_registry.testing import hold_write_lock

T0 = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


async def _store(db: Database, accounts: Accounts, email: str, clock: FixedClock) -> ScopedStore:
    user = await accounts.create_user(email)
    access = await accounts.access(user.id, None)
    assert access is not None
    return ScopedStore(ReadRunner(db), user_id=user.id, access=access, clock=clock, writable=False)


async def _migrations(db: Database) -> list[tuple[str, int]]:
    rows = await db.read(
        lambda c: c.execute(
            "SELECT component, version FROM schema_migrations ORDER BY component, version"
        ).fetchall()
    )
    return [(r["component"], r["version"]) for r in rows]


async def test_migrations_apply_once(database_target: str) -> None:
    extra = (Migration("ext", 1, "t", "CREATE TABLE ext_t (x INTEGER);"),)
    db = await open_database(database_target, extra)
    first = await _migrations(db)
    await db.close()
    db = await open_database(database_target, extra)  # reopening must not re-apply
    second = await _migrations(db)
    await db.write(lambda c: c.execute("INSERT INTO ext_t (x) VALUES (1)"))
    await db.close()
    assert first == second and len(set(first)) == len(first)
    assert {(m.component, m.version) for m in CORE_MIGRATIONS} | {("ext", 1)} <= set(first)


async def test_sqlite_journal_is_wal(tmp_path: Path) -> None:
    db = await open_database(tmp_path / "m.db")
    mode = await db.read(lambda c: c.execute("PRAGMA journal_mode").fetchone()[0])
    await db.close()
    assert mode == "wal"


async def test_sqlite_reads_use_the_space_index(tmp_path: Path) -> None:
    db = await open_database(tmp_path / "m.db")
    plan = await db.read(
        lambda c: c.execute(
            "EXPLAIN QUERY PLAN SELECT * FROM records WHERE space_id = ? AND collection = ? "
            "AND deleted_at IS NULL ORDER BY created_at",
            ("s", "habits"),
        ).fetchall()
    )
    await db.close()
    assert any("records_by_space" in row["detail"] for row in plan), [r["detail"] for r in plan]


async def test_reader_connections_refuse_writes(database_target: str) -> None:
    db = await open_database(database_target)
    refused = (
        sqlite3.OperationalError
        if db.dialect == "sqlite"
        else psycopg.errors.ReadOnlySqlTransaction
    )
    with pytest.raises(refused):
        await db.read(lambda c: c.execute("DELETE FROM users"))
    await db.close()


async def test_creating_a_user_creates_an_owned_personal_space(database_target: str) -> None:
    db = await open_database(database_target)
    accounts = Accounts(db)
    user = await accounts.create_user("Ada@Example.test", name="Ada")
    spaces = await accounts.spaces_of(user.id)
    with pytest.raises(ConflictError):
        await accounts.create_user("ada@example.test")
    with pytest.raises(ValidationFailed):
        await accounts.create_user("not-an-email")
    await db.close()
    assert user.email == "ada@example.test"
    assert [(a.space.type, a.role) for a in spaces] == [("personal", "owner")]


async def test_emails_match_whatever_their_case(database_target: str) -> None:
    """Lookups, password checks and the duplicate check fold case on both backends, also for
    a row stored with capitals (an older install or an import wrote it as given)."""
    db = await open_database(database_target)
    accounts = Accounts(db)
    ada = await accounts.create_user("Ada@Example.test", password="correct horse")
    await db.write(
        lambda c: c.execute(
            "INSERT INTO users (id, email, name, kind, created_at, updated_at) "
            "VALUES ('usr_legacy', 'Bob@Example.TEST', 'Bob', 'human', 't', 't')"
        )
    )
    unal = await accounts.create_user("Ünal@Example.test")
    found_ada = await accounts.user_by_email("ADA@example.TEST")
    found_bob = await accounts.user_by_email("bob@example.test")
    found_unal = await accounts.user_by_email("ÜNAL@example.test")  # SQL lower() folds ASCII
    checked = await accounts.check_password("aDa@EXAMPLE.test", "correct horse")
    with pytest.raises(ConflictError):
        await accounts.create_user("BOB@example.test")
    with pytest.raises(ConflictError):
        await accounts.create_user("ÜNAL@EXAMPLE.TEST")
    await db.close()
    assert found_ada is not None and found_ada.id == ada.id
    assert found_unal is not None and found_unal.id == unal.id
    assert found_bob is not None and found_bob.id == "usr_legacy"
    assert checked is not None and checked.id == ada.id


async def test_passwords_are_hashed_and_checked(database_target: str) -> None:
    db = await open_database(database_target)
    accounts = Accounts(db)
    await accounts.create_user("p@x.test", password="correct horse")
    stored = await db.read(lambda c: c.execute("SELECT password_hash FROM users").fetchone()[0])
    good = await accounts.check_password("p@x.test", "correct horse")
    bad = await accounts.check_password("p@x.test", "wrong password")
    missing = await accounts.check_password("nobody@x.test", "correct horse")
    await db.close()
    assert stored.startswith("scrypt$") and "correct horse" not in stored
    assert good is not None and bad is None and missing is None


async def test_scoped_store_rejects_non_members(database_target: str) -> None:
    db = await open_database(database_target)
    accounts = Accounts(db)
    owner = await accounts.create_user("o@x.test")
    stranger = await accounts.create_user("s@x.test")
    space = await accounts.personal_space(owner.id)
    access = await accounts.access(stranger.id, space.id)
    await db.close()
    assert access is not None and access.role is None
    with pytest.raises(NotAMemberError, match="not a member of this space"):
        ScopedStore(
            ReadRunner(db), user_id=stranger.id, access=access, clock=FixedClock(T0), writable=False
        )


async def test_read_only_store_refuses_writes(database_target: str) -> None:
    db = await open_database(database_target)
    store = await _store(db, Accounts(db), "r@x.test", FixedClock(T0))
    with pytest.raises(ReadOnlyStoreError):
        await store.insert("notes", {"title": "x"})
    await db.close()


async def test_field_level_last_writer_wins(database_target: str) -> None:
    db = await open_database(database_target)
    accounts = Accounts(db)
    clock = FixedClock(T0)
    user = await accounts.create_user("lww@x.test")
    access = await accounts.access(user.id, None)
    assert access is not None
    async with db.transaction() as tx:
        store = ScopedStore(tx, user_id=user.id, access=access, clock=clock, writable=True)
        rec = await store.insert("notes", {"title": "v0", "body": "b0"})
        # A newer write to title ...
        await store.update("notes", rec.id, {"title": "new"}, at=T0 + timedelta(minutes=10))
        # ... then a stale write (older timestamp) to title and body arrives late.
        after = await store.update(
            "notes", rec.id, {"title": "stale", "body": "b1"}, at=T0 + timedelta(minutes=5)
        )
    await db.close()
    assert after.data["title"] == "new"  # stale field did not overwrite the newer value
    assert after.data["body"] == "b1"  # but the body, last set at T0, did change


async def test_an_explicit_null_is_a_stamped_field_write(database_target: str) -> None:
    """What update tools' `clear` relies on: None is written (not skipped) and stamped, so a
    stale write cannot bring the value back, while a newer one can set it again."""
    db = await open_database(database_target)
    accounts = Accounts(db)
    user = await accounts.create_user("null@x.test")
    access = await accounts.access(user.id, None)
    assert access is not None
    async with db.transaction() as tx:
        store = ScopedStore(tx, user_id=user.id, access=access, clock=FixedClock(T0), writable=True)
        rec = await store.insert("todos", {"title": "t", "dueDate": "2030-01-01"})
        cleared = await store.update(
            "todos", rec.id, {"dueDate": None}, at=T0 + timedelta(minutes=10)
        )
        stale = await store.update(
            "todos", rec.id, {"dueDate": "2030-02-02"}, at=T0 + timedelta(minutes=5)
        )
        again = await store.update("todos", rec.id, {"dueDate": None}, at=T0 + timedelta(hours=1))
        newer = await store.update(
            "todos", rec.id, {"dueDate": "2030-03-03"}, at=T0 + timedelta(hours=2)
        )
    await db.close()
    assert "dueDate" in cleared.data and cleared.data["dueDate"] is None
    assert cleared.updated_at == "2026-11-21T12:10:00.000000Z"
    assert stale.data["dueDate"] is None and stale.updated_at == cleared.updated_at
    assert again.updated_at == cleared.updated_at  # clearing a null changes nothing
    assert newer.data["dueDate"] == "2030-03-03"


async def test_soft_delete_hides_but_keeps_the_row(database_target: str) -> None:
    db = await open_database(database_target)
    accounts = Accounts(db)
    user = await accounts.create_user("sd@x.test")
    access = await accounts.access(user.id, None)
    assert access is not None
    async with db.transaction() as tx:
        store = ScopedStore(tx, user_id=user.id, access=access, clock=FixedClock(T0), writable=True)
        rec = await store.insert("notes", {"title": "gone soon"})
        await store.soft_delete("notes", rec.id)
        visible = await store.list("notes")
        kept = await store.get("notes", rec.id, include_deleted=True)
        with pytest.raises(ToolError, match="no notes record"):
            await store.update("notes", rec.id, {"title": "zombie"})
        again = await store.soft_delete("notes", rec.id)  # idempotent
        with pytest.raises(ToolError, match="no notes record"):
            await store.soft_delete("notes", "missing-id")
    await db.close()
    assert visible == []
    assert kept is not None and kept.deleted_at is not None
    assert again.deleted_at == kept.deleted_at


async def test_filters_reject_unsafe_field_paths(database_target: str) -> None:
    with pytest.raises(ValidationFailed):
        Filter("title') OR 1=1 --", "eq", "x")
    db = await open_database(database_target)
    store = await _store(db, Accounts(db), "paths@x.test", FixedClock(T0))
    with pytest.raises(ValidationFailed):
        await store.list("notes", order_by="title' DESC --")
    with pytest.raises(ValidationFailed):
        await store.search("notes", "x", ["title", "body) --"])
    await db.close()


async def test_failed_transaction_rolls_back(database_target: str) -> None:
    db = await open_database(database_target)
    accounts = Accounts(db)
    user = await accounts.create_user("rb@x.test")
    access = await accounts.access(user.id, None)
    assert access is not None
    with pytest.raises(RuntimeError):  # noqa: PT012 - the raise must happen inside the tx
        async with db.transaction() as tx:
            store = ScopedStore(
                tx, user_id=user.id, access=access, clock=FixedClock(T0), writable=True
            )
            await store.insert("notes", {"title": "never"})
            raise RuntimeError("boom")
    count = await db.read(lambda c: c.execute("SELECT count(*) FROM records").fetchone()[0])
    await db.close()
    assert count == 0


async def test_slow_store_work_does_not_stall_other_calls(database_target: str) -> None:
    """A store call blocked inside SQLite work must not block the event loop: another call
    completes while the first is still stuck (the first is released only afterwards)."""
    db = await open_database(database_target)
    accounts = Accounts(db)
    user = await accounts.create_user("slow@x.test")
    release = threading.Event()

    def slow(conn: Conn) -> int:
        assert release.wait(timeout=10), "never released: the event loop was blocked"
        return int(conn.execute("SELECT 1").fetchone()[0])

    slow_task = asyncio.create_task(db.read(slow))
    await asyncio.sleep(0)
    other = await asyncio.wait_for(accounts.spaces_of(user.id), timeout=5)
    assert not slow_task.done()  # still blocked in its thread while the other call finished
    release.set()
    assert await slow_task == 1
    await db.close()
    assert len(other) == 1


async def test_two_databases_on_one_target_serialise_writes(database_target: str) -> None:
    """Two processes' worth of `Database` on one file or one PostgreSQL database: concurrent
    check-then-write units (the duplicate email check) all land."""
    a, b = await open_database(database_target), await open_database(database_target)
    acc_a, acc_b = Accounts(a), Accounts(b)
    await asyncio.gather(
        *((acc_a if i % 2 else acc_b).create_user(f"u{i}@x.test") for i in range(20))
    )
    count = await a.read(lambda c: c.execute("SELECT count(*) FROM users").fetchone()[0])
    await a.close()
    await b.close()
    assert count == 20


async def test_a_failing_single_write_rolls_back_and_the_writer_stays_usable(
    database_target: str,
) -> None:
    db = await open_database(database_target)

    def half_then_fail(conn: Conn) -> None:
        conn.execute(
            "INSERT INTO users (id, email, name, kind, created_at, updated_at) "
            "VALUES ('u1', 'x@x.test', 'x', 'human', 't', 't')"
        )
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        await db.write(half_then_fail)
    await Accounts(db).create_user("after@x.test")
    emails = await db.read(lambda c: [r[0] for r in c.execute("SELECT email FROM users")])
    await db.close()
    assert emails == ["after@x.test"]


async def test_a_write_inside_a_held_transaction_joins_it(database_target: str) -> None:
    """A backend calling `db.write` from inside a write tool's transaction must not deadlock on
    the writer lock its own task holds; its work commits or rolls back with the transaction."""
    db = await open_database(database_target)

    def add(email: str) -> Callable[[Conn], None]:
        def work(conn: Conn) -> None:
            conn.execute(
                "INSERT INTO users (id, email, name, kind, created_at, updated_at) "
                "VALUES (?, ?, 'x', 'human', 't', 't')",
                (email, email),
            )

        return work

    async with db.transaction():
        await asyncio.wait_for(db.write(add("kept@x.test")), timeout=5)
    with pytest.raises(RuntimeError):  # noqa: PT012 - the failure must happen inside the tx
        async with db.transaction():
            await asyncio.wait_for(db.write(add("rolled-back@x.test")), timeout=5)
            raise RuntimeError("tool failed after its backend wrote")
    await db.write(add("after@x.test"))  # the lock was released: a plain write still works
    emails = await db.read(lambda c: [r[0] for r in c.execute("SELECT email FROM users")])
    await db.close()
    assert sorted(emails) == ["after@x.test", "kept@x.test"]


# -- cancellation: a write unit is never split ---------------------------------------------------

PAIRS = Migration("cancel", 1, "pairs", "CREATE TABLE pairs (unit INTEGER, half INTEGER);")
Style = Literal["anyio", "task"]
STYLES: tuple[Style, ...] = ("anyio", "task")


def _half(unit: int, half: int) -> Callable[[Conn], None]:
    def work(conn: Conn) -> None:
        conn.execute("INSERT INTO pairs (unit, half) VALUES (?, ?)", (unit, half))

    return work


def _pair(unit: int) -> Callable[[Conn], None]:
    def work(conn: Conn) -> None:
        _half(unit, 0)(conn)
        _half(unit, 1)(conn)

    return work


async def _stored(db: Database) -> dict[int, int]:
    rows = await db.read(
        lambda c: c.execute("SELECT unit, count(*) FROM pairs GROUP BY unit").fetchall()
    )
    return {int(r[0]): int(r[1]) for r in rows}


async def _as_transaction(db: Database, unit: int) -> None:
    async with db.transaction() as tx:
        await tx.run(_half(unit, 0))
        await tx.run(_half(unit, 1))


async def _as_write(db: Database, unit: int) -> None:
    await db.write(_pair(unit))


class _Gate:
    """Holds the writer thread inside one step until the test has delivered its cancellation."""

    def __init__(self) -> None:
        self.reached = threading.Event()
        self.release = threading.Event()

    def wrap(self, fn: Callable[..., None]) -> Callable[..., None]:
        def gated(*args: Any) -> None:
            self.reached.set()
            assert self.release.wait(10), "the test never released the writer"
            fn(*args)

        return gated


class _Cancellable:
    """Runs `work` in a task that the test cancels either through an anyio cancel scope (how the
    MCP SDK cancels handlers) or with a plain `Task.cancel()`."""

    def __init__(self, style: Style, work: Callable[[], Awaitable[None]]) -> None:
        self.style = style
        self.scope = anyio.CancelScope()
        self.task = asyncio.create_task(self._run(work))

    async def _run(self, work: Callable[[], Awaitable[None]]) -> None:
        if self.style == "anyio":
            with self.scope:
                await work()
        else:
            await work()

    def cancel(self) -> None:
        if self.style == "anyio":
            self.scope.cancel()
        else:
            self.task.cancel()

    async def result(self) -> str:
        """'cancelled' when the cancellation surfaced as such, else 'done'."""
        try:
            await self.task
        except asyncio.CancelledError:
            return "cancelled"
        return "cancelled" if self.scope.cancelled_caught else "done"


def _gate_step(
    monkeypatch: pytest.MonkeyPatch, db: Database, step: Literal["begin", "commit"], gate: _Gate
) -> None:
    """Hold the database thread in BEGIN or COMMIT of the next write unit until `gate` opens:
    SQLite's writer-thread steps, or the statements a PostgreSQL unit sends."""
    if isinstance(db, SqliteDatabase):
        if step == "begin":
            monkeypatch.setattr(database, "_begin", gate.wrap(database._begin))
        else:
            monkeypatch.setattr(db, "_commit_unit", gate.wrap(db._commit_unit))
        return
    prefix = "BEGIN" if step == "begin" else "COMMIT"
    original = psycopg.Connection.execute

    def gated(self: psycopg.Connection[Any], query: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(query, str) and query.startswith(prefix):
            gate.wrap(lambda: None)()
        return original(self, query, *args, **kwargs)

    monkeypatch.setattr(psycopg.Connection, "execute", gated)


async def _left_in_transaction(db: Database) -> bool:
    """Whether a write connection of `db` is inside a transaction outside any unit (the wedge
    every cancellation test guards against)."""
    if isinstance(db, SqliteDatabase):
        return await db.writer_in_transaction()
    assert isinstance(db, PostgresDatabase)

    def open_transactions() -> int:
        with psycopg.connect(db.url, autocommit=True) as other:
            row = other.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid() AND xact_start IS NOT NULL"
            ).fetchone()
            return int(row[0]) if row else 0

    return await asyncio.to_thread(open_transactions) > 0


@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize(
    ("how", "step", "kept"),
    [
        ("transaction", "begin", False),  # cancelled during BEGIN: waited for, then rolled back
        ("transaction", "work", False),  # cancelled during the work: rolled back on the writer
        ("transaction", "commit", True),  # cancelled during COMMIT: the commit finishes
        ("write", "begin", True),  # a write() handed to the writer runs to its end
        ("write", "commit", True),
    ],
)
async def test_a_cancelled_write_unit_ends_on_the_writer(
    database_target: str,
    monkeypatch: pytest.MonkeyPatch,
    style: Style,
    how: str,
    step: Literal["begin", "work", "commit"],
    kept: bool,
) -> None:
    db = await open_database(database_target, [PAIRS])
    gate = _Gate()
    if step != "work":
        _gate_step(monkeypatch, db, step, gate)

    async def work() -> None:
        if how == "write":
            await _as_write(db, 1)
        elif step == "work":
            async with db.transaction() as tx:
                await tx.run(_half(1, 0))
                await tx.run(gate.wrap(_half(1, 1)))
        else:
            await _as_transaction(db, 1)

    call = _Cancellable(style, work)
    assert await asyncio.to_thread(gate.reached.wait, 10)
    call.cancel()
    await asyncio.sleep(0.01)  # the cancellation reaches the task while the writer is held
    gate.release.set()
    outcome = await asyncio.wait_for(call.result(), 10)
    monkeypatch.undo()

    if style == "task":
        assert outcome == "cancelled"  # never swallowed
    assert not await _left_in_transaction(db)
    await asyncio.wait_for(_as_write(db, 2), 10)  # the next write goes through
    stored = await _stored(db)
    await db.close()
    assert stored == ({1: 2, 2: 2} if kept else {2: 2})


async def test_cancelling_write_units_at_random_points_never_wedges_the_writer(
    database_target: str,
) -> None:
    """Hundreds of concurrent transactions and writes, each cancelled 0-3 ms after it started,
    by an anyio scope or `Task.cancel()`: the writer is never left in a transaction, every unit
    is stored whole or not at all, and writes still go through afterwards."""
    db = await open_database(database_target, [PAIRS])
    rng = random.Random(10)
    outcomes: Counter[str] = Counter()

    async def one(unit: int) -> None:
        how = _as_transaction if unit % 2 else _as_write
        call = _Cancellable(rng.choice(STYLES), lambda: how(db, unit))
        await asyncio.sleep(rng.uniform(0, 0.003))
        call.cancel()
        outcomes[await call.result()] += 1

    units = range(1, 301)
    for start in range(0, len(units), 10):
        await asyncio.gather(*(one(u) for u in units[start : start + 10]))
    assert not await _left_in_transaction(db)
    await _as_write(db, 0)
    stored = await _stored(db)
    await db.close()
    assert set(stored.values()) == {2}, stored  # whole units only
    assert 0 in stored
    assert sum(outcomes.values()) == len(units)


async def test_a_cancelled_audit_flush_loses_and_repeats_nothing(
    database_target: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = await open_database(database_target)
    audit = AuditLog(db, flush_delay=60)
    for i in range(5):
        audit.enqueue(_audit_row(i))
    gate = _Gate()
    _gate_step(monkeypatch, db, "commit", gate)
    flush = asyncio.create_task(audit.flush())
    assert await asyncio.to_thread(gate.reached.wait, 10)
    flush.cancel()
    await asyncio.sleep(0.01)
    gate.release.set()
    with pytest.raises(asyncio.CancelledError):
        await flush
    monkeypatch.undo()
    assert audit.pending == 0  # the batch committed: it left the buffer
    audit.enqueue(_audit_row(5))
    await audit.aclose()
    ids = await db.read(lambda c: [r[0] for r in c.execute("SELECT request_id FROM audit_log")])
    await db.close()
    assert sorted(ids) == [f"req_{i}" for i in range(6)]


async def test_a_failing_background_audit_flush_keeps_its_rows_and_raises_nowhere(
    database_target: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = await open_database(database_target)
    loop = asyncio.get_running_loop()
    unhandled: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _, context: unhandled.append(context))
    failures = iter([RuntimeError("the database refused the batch")])

    def flaky(conn: Conn, rows: Any) -> None:
        failure = next(failures, None)
        if failure is not None:
            raise failure
        insert_rows(conn, rows)

    monkeypatch.setattr(audit_module, "insert_rows", flaky)
    audit = AuditLog(db, flush_delay=0)
    audit.enqueue(_audit_row(0))
    audit.enqueue(_audit_row(1))
    background = audit._task
    assert background is not None
    await asyncio.wait((background,))
    gc.collect()
    assert unhandled == []  # no "Task exception was never retrieved"
    assert audit.pending == 2  # the failed batch is kept for the next flush
    await audit.aclose()
    ids = await db.read(lambda c: [r[0] for r in c.execute("SELECT request_id FROM audit_log")])
    loop.set_exception_handler(None)
    await db.close()
    assert sorted(ids) == ["req_0", "req_1"]


def _audit_row(i: int) -> AuditRow:
    return AuditRow(
        at="2026-11-21T12:00:00.000000Z",
        request_id=f"req_{i}",
        user_id=None,
        space_id=None,
        tool="notes.list",
        invoker="cli",
        input_hash=None,
        outcome="ok",
        reason=None,
        latency_ms=0.1,
    )


async def test_probe_write_says_why_a_write_cannot_start(database_target: str) -> None:
    """None while a write could start; a reason while another session holds the write lock
    (another process's write unit), and None again once it let go."""
    db = await open_database(database_target)
    healthy = await db.probe_write(1.0)
    with hold_write_lock(db):
        problem = await db.probe_write(0.05)
    again = await db.probe_write(1.0)
    await db.close()
    assert healthy is None
    assert problem is not None and "could not start within 0.05 s" in problem
    assert again is None


async def test_sqlite_probe_names_the_lock(tmp_path: Path) -> None:
    db = await open_database(tmp_path / "p.db")
    with hold_write_lock(db):
        problem = await db.probe_write(0.05)
    await db.close()
    assert problem is not None and "database is locked" in problem


async def test_a_write_waits_for_another_sessions_write_lock(database_target: str) -> None:
    """A serialised write does not start while another session holds the write lock (so a
    check-then-write in another process cannot interleave with it), and lands once it is
    released."""
    db = await open_database(database_target, [PAIRS])
    with hold_write_lock(db):
        pending = asyncio.create_task(_as_write(db, 1))
        await asyncio.sleep(0.3)
        waited = not pending.done()
    await asyncio.wait_for(pending, 30)
    stored = await _stored(db)
    await db.close()
    assert waited
    assert stored == {1: 2}


async def test_an_ended_transaction_refuses_further_work(database_target: str) -> None:
    """Work handed to a transaction after it ended (e.g. by a task the tool left behind) would
    run outside any unit, inside whichever unit holds the writer next: it is refused."""
    db = await open_database(database_target, [PAIRS])
    async with db.transaction() as tx:
        await tx.run(_half(1, 0))
    with pytest.raises(RuntimeError, match="ended"):
        await tx.run(_half(1, 1))
    stored = await _stored(db)
    await db.close()
    assert stored == {1: 1}


async def test_on_commit_runs_only_for_a_committed_write(database_target: str) -> None:
    """`on_commit` hears of a unit that committed and never of one that rolled back; a write
    joining a held transaction refuses it (the commit is the transaction's)."""
    db = await open_database(database_target, [PAIRS])
    heard: list[str] = []

    def fail(conn: Conn) -> str:
        _half(2, 0)(conn)
        raise ValueError("boom")

    def ok(conn: Conn) -> str:
        _pair(1)(conn)
        return "committed"

    assert await db.write(ok, on_commit=heard.append) == "committed"
    with pytest.raises(ValueError, match="boom"):
        await db.write(fail, on_commit=heard.append)
    async with db.transaction():
        with pytest.raises(ValueError, match="joined"):
            await db.write(ok, on_commit=heard.append)
    stored = await _stored(db)
    await db.close()
    assert heard == ["committed"]
    assert stored == {1: 2}


async def test_probe_write_reports_a_writer_left_inside_a_transaction(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The wedge the issue describes (the writer connection stuck in BEGIN IMMEDIATE) is what
    `/health` must notice: the probe cannot take the write lock then."""
    db = await open_database(tmp_path / "w.db")
    assert isinstance(db, SqliteDatabase)  # the writer-thread internals
    monkeypatch.setattr(database, "WRITE_PROBE_SECONDS", 0.05)
    await db._on_writer(lambda conn: conn.execute("BEGIN IMMEDIATE"))  # simulate the wedge
    wedged = await db.probe_write()
    await db._on_writer(lambda conn: conn.execute("ROLLBACK"))
    healthy = await db.probe_write()
    await db.close()
    assert wedged is not None and "database is locked" in wedged
    assert healthy is None


# -- data fields compare and sort like SQLite's json_extract, on both backends -----------------

# Ids in insertion order; the expectations below are SQLite's json_extract semantics: a JSON
# number compares with numbers, true/false are 1/0, JSON null and a missing field are SQL NULL
# (no comparison holds), and across types every number sorts before every string.
FIELD_ROWS: dict[str, dict[str, Any]] = {
    "a": {"n": 5, "s": "apple", "b": True, "z": None, "nested": {"k": 2}},
    "b": {"n": 10, "s": "Banana", "b": False},
    "c": {"n": "7", "s": 3, "f": 2.5},
    "d": {},
}


async def _field_store(database_target: str) -> tuple[Database, ScopedStore]:
    db = await open_database(database_target)
    accounts = Accounts(db)
    user = await accounts.create_user("fields@x.test")
    access = await accounts.access(user.id, None)
    assert access is not None
    async with db.transaction() as tx:
        writer = ScopedStore(
            tx, user_id=user.id, access=access, clock=FixedClock(T0), writable=True
        )
        for rid, data in FIELD_ROWS.items():
            await writer.insert("things", data, record_id=rid)
    reader = ScopedStore(
        ReadRunner(db), user_id=user.id, access=access, clock=FixedClock(T0), writable=False
    )
    return db, reader


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        (Filter("n", "eq", 5), {"a"}),
        (Filter("n", "ne", 5), {"b", "c"}),
        (Filter("n", "gt", 6), {"b", "c"}),  # "7" is a string: greater than any number
        (Filter("n", "lt", 6), {"a"}),
        (Filter("n", "ge", 10), {"b", "c"}),
        (Filter("n", "le", 10.0), {"a", "b"}),
        (Filter("n", "eq", "7"), {"c"}),
        (Filter("f", "gt", 2), {"c"}),
        (Filter("s", "eq", "apple"), {"a"}),
        (Filter("s", "lt", "b"), {"a", "b", "c"}),  # byte order: "B" < "a" < "b"; 3 < any text
        (Filter("s", "gt", "B"), {"a", "b"}),
        (Filter("s", "ne", "apple"), {"b", "c"}),
        (Filter("b", "eq", True), {"a"}),
        (Filter("b", "eq", False), {"b"}),
        (Filter("b", "eq", 1), {"a"}),
        (Filter("b", "lt", 1), {"b"}),
        (Filter("z", "is_null"), {"a", "b", "c", "d"}),
        (Filter("z", "not_null"), set()),
        (Filter("z", "eq", None), set()),
        (Filter("n", "not_null"), {"a", "b", "c"}),
        (Filter("nested.k", "eq", 2), {"a"}),
        (Filter("nested.k", "ge", 3), set()),
        (Filter("n", "in", [5, "7", 11]), {"a", "c"}),
        (Filter("n", "in", []), set()),
        (Filter("id", "in", ["a", "d"]), {"a", "d"}),
        (Filter("s", "contains", "AN"), {"b"}),
        (Filter("s", "contains", "3"), {"c"}),
    ],
    ids=lambda v: repr(v) if not isinstance(v, Filter) else f"{v.field}-{v.op}-{v.value!r}",
)
async def test_field_filters_behave_like_json_extract(
    database_target: str, condition: Filter, expected: set[str]
) -> None:
    db, store = await _field_store(database_target)
    found = {r.id for r in await store.list("things", filters=[condition])}
    counted = await store.count("things", filters=[condition])
    await db.close()
    assert found == expected
    assert counted == len(expected)


@pytest.mark.parametrize(
    ("field", "descending", "expected"),
    [
        ("n", False, ["d", "a", "b", "c"]),  # missing first, numbers by value, then strings
        ("n", True, ["c", "b", "a", "d"]),
        ("s", False, ["d", "c", "b", "a"]),  # 3, then "Banana" before "apple" (byte order)
        ("b", False, ["c", "d", "b", "a"]),  # missing (ties by id), false, true
        ("id", True, ["d", "c", "b", "a"]),
    ],
)
async def test_ordering_by_a_field_behaves_like_json_extract(
    database_target: str, field: str, descending: bool, expected: list[str]
) -> None:
    db, store = await _field_store(database_target)
    ordered = [r.id for r in await store.list("things", order_by=field, descending=descending)]
    await db.close()
    assert ordered == expected


async def test_search_and_contains_fold_non_ascii_case(database_target: str) -> None:
    """Both sides of a match go through the database's fold, so "éCLAIR" finds "Éclair" on
    either backend, whatever the PostgreSQL database's locale."""
    db = await open_database(database_target)
    accounts = Accounts(db)
    user = await accounts.create_user("fold@x.test")
    access = await accounts.access(user.id, None)
    assert access is not None
    async with db.transaction() as tx:
        store = ScopedStore(tx, user_id=user.id, access=access, clock=FixedClock(T0), writable=True)
        await store.insert("notes", {"title": "Éclair recipe", "body": "x"}, record_id="n1")
        await store.insert("notes", {"title": "Bread", "body": "no ÉCLAIR here"}, record_id="n2")
        await store.insert("notes", {"title": "Soup", "body": "nothing"}, record_id="n3")
        searched = await store.search("notes", "éCLAIR", ["title", "body"])
        narrowed = await store.search(
            "notes", "éclair", ["title", "body"], filters=[Filter("title", "ne", "Éclair recipe")]
        )
        contained = await store.list("notes", filters=[Filter("body", "contains", "éclair")])
        counted = await store.count("notes", filters=[Filter("title", "contains", "ÉCLAIR")])
    await db.close()
    assert [r.id for r in searched] == ["n1", "n2"]  # a title match outranks a body match
    assert [r.id for r in narrowed] == ["n2"]
    assert [r.id for r in contained] == ["n2"]
    assert counted == 1


# -- PostgreSQL connections as the stores see them ---------------------------------------------


@pytest.mark.parametrize(
    ("sql", "translated"),
    [
        ("SELECT * FROM t WHERE a = ? AND b = ?", "SELECT * FROM t WHERE a = %s AND b = %s"),
        ("SELECT '?' , ?", "SELECT '?' , %s"),
        # psycopg reads `%` as a placeholder even inside quotes: it is doubled everywhere.
        ("SELECT 'it''s ? 100%' , ?", "SELECT 'it''s ? 100%%' , %s"),
        ('SELECT "odd?name", ? FROM t', 'SELECT "odd?name", %s FROM t'),
        ("SELECT ? LIKE 'a%' AND x LIKE ?", "SELECT %s LIKE 'a%%' AND x LIKE %s"),
        ("SELECT 5 % 2, ?", "SELECT 5 %% 2, %s"),
    ],
)
def test_pg_placeholders_are_translated_outside_quotes_only(sql: str, translated: str) -> None:
    from tool_registry.store.postgres import to_pg

    assert to_pg(sql) == translated


def test_pg_rows_read_by_position_and_by_name() -> None:
    from tool_registry.store.postgres import PgRow

    row = PgRow(["u1", "a@x.test", None], {"id": 0, "email": 1, "name": 2})
    assert (row[0], row["email"], row[-1]) == ("u1", "a@x.test", None)
    assert row.keys() == ["id", "email", "name"]
    assert dict(row) == {"id": "u1", "email": "a@x.test", "name": None}
    assert list(row) == ["u1", "a@x.test", None] and len(row) == 3
    assert row == PgRow(["u1", "a@x.test", None], {"id": 0, "email": 1, "name": 2})
    with pytest.raises(IndexError, match="no such column: missing"):
        row["missing"]


async def test_pg_conn_runs_store_sql_with_quoted_marks_and_percent(postgres_database: str) -> None:
    """On a live server: a `?` or `%` inside a quoted literal is text, `?` outside is a
    parameter, bools arrive as 0/1, rows read by position and name, executemany works."""
    from tool_registry.store.postgres import PgConn, pg_row

    with psycopg.connect(postgres_database, autocommit=True, row_factory=pg_row) as raw:
        conn = PgConn(raw)
        conn.execute("CREATE TABLE t (k TEXT, n INTEGER)")
        conn.executemany("INSERT INTO t (k, n) VALUES (?, ?)", [("a?", 1), ("100%", True)])
        row = conn.execute(
            "SELECT 'what?' AS q, '50%' AS pct, CAST(? AS TEXT) AS p, "
            "(SELECT count(*) FROM t WHERE k LIKE '%?%' OR k LIKE ?) AS c",
            ("x", "100%"),
        ).fetchone()
        flags = [r["n"] for r in conn.execute("SELECT n FROM t WHERE n = ? ORDER BY k", (True,))]
        assert not conn.in_transaction
    assert row is not None
    assert (row[0], row["pct"], row["p"], row["c"]) == ("what?", "50%", "x", 2)
    assert row.keys() == ["q", "pct", "p", "c"]
    assert flags == [1, 1]
