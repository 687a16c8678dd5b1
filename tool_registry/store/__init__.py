"""The store: one `Database` contract on an embedded SQLite file or on PostgreSQL (`open_database`
picks by target), migrations, accounts, space-scoped records, audit."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from tool_registry.store import database as _sqlite
from tool_registry.store import postgres as _postgres
from tool_registry.store.accounts import Accounts, Space, SpaceAccess, User
from tool_registry.store.database import Database, Migration, SqliteDatabase, Transaction
from tool_registry.store.migrations import CORE_MIGRATIONS
from tool_registry.store.postgres import PostgresDatabase, is_postgres_url
from tool_registry.store.records import Filter, Record, ScopedStore


async def open_database(
    target: Path | str,
    extra_migrations: Sequence[Migration] = (),
    *,
    readers: int = 4,
    create: bool = True,
) -> Database:
    """Open the database at `target` with the core schema plus `extra_migrations`: a
    `postgresql://` URL opens PostgreSQL, anything else is a SQLite file path (created if
    needed). With `create=False` an uninitialised PostgreSQL database is refused instead of
    migrated (the CLI checks a SQLite file's existence itself)."""
    migrations = [*CORE_MIGRATIONS, *extra_migrations]
    if is_postgres_url(target):
        return await PostgresDatabase.open(str(target), migrations, readers=readers, create=create)
    return await SqliteDatabase.open(target, migrations, readers=readers)


def holds_write_transaction() -> bool:
    """True while the current task holds a write transaction of either backend (a write tool's
    handler runs inside one): nothing that waits on a person may start there, since the
    transaction's locks would be held for as long as the person takes."""
    return _sqlite.transaction_held() or _postgres.transaction_held()


__all__ = [
    "CORE_MIGRATIONS",
    "Accounts",
    "Database",
    "Filter",
    "Migration",
    "PostgresDatabase",
    "Record",
    "ScopedStore",
    "Space",
    "SpaceAccess",
    "SqliteDatabase",
    "Transaction",
    "User",
    "holds_write_transaction",
    "open_database",
]
