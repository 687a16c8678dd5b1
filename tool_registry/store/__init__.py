"""The embedded store: SQLite file, migrations, accounts, space-scoped records, audit."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from tool_registry.store.accounts import Accounts, Space, SpaceAccess, User
from tool_registry.store.database import Database, Migration, Transaction
from tool_registry.store.migrations import CORE_MIGRATIONS
from tool_registry.store.records import Filter, Record, ScopedStore


async def open_database(
    path: Path | str, extra_migrations: Sequence[Migration] = (), *, readers: int = 4
) -> Database:
    """Open (creating if needed) a database with the core schema plus `extra_migrations`."""
    return await Database.open(path, [*CORE_MIGRATIONS, *extra_migrations], readers=readers)


__all__ = [
    "CORE_MIGRATIONS",
    "Accounts",
    "Database",
    "Filter",
    "Migration",
    "Record",
    "ScopedStore",
    "Space",
    "SpaceAccess",
    "Transaction",
    "User",
    "open_database",
]
