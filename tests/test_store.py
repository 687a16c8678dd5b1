"""The SQLite store: migrations, WAL, scoping, LWW, soft delete, non-blocking execution."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tool_registry.clock import FixedClock
from tool_registry.errors import ConflictError, NotAMemberError, ToolError, ValidationFailed
from tool_registry.store import Accounts, Filter, ScopedStore, open_database
from tool_registry.store.database import Database, Migration
from tool_registry.store.records import ReadOnlyStoreError, ReadRunner

T0 = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


async def _store(db: Database, accounts: Accounts, email: str, clock: FixedClock) -> ScopedStore:
    user = await accounts.create_user(email)
    access = await accounts.access(user.id, None)
    assert access is not None
    return ScopedStore(ReadRunner(db), user_id=user.id, access=access, clock=clock, writable=False)


async def test_migrations_apply_once_and_wal_is_on(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    extra = (Migration("ext", 1, "t", "CREATE TABLE ext_t (x INTEGER);"),)
    db = await open_database(path, extra)
    await db.close()
    db = await open_database(path, extra)  # reopening must not re-apply
    rows = await db.read(
        lambda c: c.execute(
            "SELECT component, version FROM schema_migrations ORDER BY component"
        ).fetchall()
    )
    mode = await db.read(lambda c: c.execute("PRAGMA journal_mode").fetchone()[0])
    await db.close()
    assert [(r["component"], r["version"]) for r in rows] == [("core", 1), ("ext", 1)]
    assert mode == "wal"


async def test_reads_use_the_space_index(tmp_path: Path) -> None:
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


async def test_reader_connections_refuse_writes(tmp_path: Path) -> None:
    db = await open_database(tmp_path / "m.db")
    with pytest.raises(sqlite3.OperationalError):
        await db.read(lambda c: c.execute("DELETE FROM users"))
    await db.close()


async def test_creating_a_user_creates_an_owned_personal_space(tmp_path: Path) -> None:
    db = await open_database(tmp_path / "m.db")
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


async def test_passwords_are_hashed_and_checked(tmp_path: Path) -> None:
    db = await open_database(tmp_path / "m.db")
    accounts = Accounts(db)
    await accounts.create_user("p@x.test", password="correct horse")
    stored = await db.read(lambda c: c.execute("SELECT password_hash FROM users").fetchone()[0])
    good = await accounts.check_password("p@x.test", "correct horse")
    bad = await accounts.check_password("p@x.test", "wrong password")
    missing = await accounts.check_password("nobody@x.test", "correct horse")
    await db.close()
    assert stored.startswith("scrypt$") and "correct horse" not in stored
    assert good is not None and bad is None and missing is None


async def test_scoped_store_rejects_non_members(tmp_path: Path) -> None:
    db = await open_database(tmp_path / "m.db")
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


async def test_read_only_store_refuses_writes(tmp_path: Path) -> None:
    db = await open_database(tmp_path / "m.db")
    store = await _store(db, Accounts(db), "r@x.test", FixedClock(T0))
    with pytest.raises(ReadOnlyStoreError):
        await store.insert("notes", {"title": "x"})
    await db.close()


async def test_field_level_last_writer_wins(tmp_path: Path) -> None:
    db = await open_database(tmp_path / "m.db")
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


async def test_an_explicit_null_is_a_stamped_field_write(tmp_path: Path) -> None:
    """What update tools' `clear` relies on: None is written (not skipped) and stamped, so a
    stale write cannot bring the value back, while a newer one can set it again."""
    db = await open_database(tmp_path / "m.db")
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


async def test_soft_delete_hides_but_keeps_the_row(tmp_path: Path) -> None:
    db = await open_database(tmp_path / "m.db")
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


async def test_filters_reject_unsafe_field_paths(tmp_path: Path) -> None:
    with pytest.raises(ValidationFailed):
        Filter("title') OR 1=1 --", "eq", "x").sql()


async def test_failed_transaction_rolls_back(tmp_path: Path) -> None:
    db = await open_database(tmp_path / "m.db")
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


async def test_slow_store_work_does_not_stall_other_calls(tmp_path: Path) -> None:
    """A store call blocked inside SQLite work must not block the event loop: another call
    completes while the first is still stuck (the first is released only afterwards)."""
    db = await open_database(tmp_path / "m.db")
    accounts = Accounts(db)
    user = await accounts.create_user("slow@x.test")
    release = threading.Event()

    def slow(conn: sqlite3.Connection) -> int:
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


async def test_two_databases_on_one_file_serialise_writes(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    a, b = await open_database(path), await open_database(path)
    acc_a, acc_b = Accounts(a), Accounts(b)
    await asyncio.gather(
        *((acc_a if i % 2 else acc_b).create_user(f"u{i}@x.test") for i in range(20))
    )
    count = await a.read(lambda c: c.execute("SELECT count(*) FROM users").fetchone()[0])
    await a.close()
    await b.close()
    assert count == 20


async def test_a_failing_single_write_rolls_back_and_the_writer_stays_usable(
    tmp_path: Path,
) -> None:
    db = await open_database(tmp_path / "m.db")

    def half_then_fail(conn: sqlite3.Connection) -> None:
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


async def test_a_write_inside_a_held_transaction_joins_it(tmp_path: Path) -> None:
    """A backend calling `db.write` from inside a write tool's transaction must not deadlock on
    the writer lock its own task holds; its work commits or rolls back with the transaction."""
    db = await open_database(tmp_path / "m.db")

    def add(email: str) -> Callable[[sqlite3.Connection], None]:
        def work(conn: sqlite3.Connection) -> None:
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
