"""Opening an existing PostgreSQL database applies the migrations it lacks, as SQLite does, so an
install upgraded in place needs no extra step; an uninitialised one is still refused."""

from __future__ import annotations

import pytest

from tool_registry.store import Migration, open_database
from tool_registry.store.postgres import DatabaseUnreachable

LATER = Migration("later", 1, "notes", "CREATE TABLE later_notes (id TEXT PRIMARY KEY)")


async def test_opening_without_create_applies_pending_migrations(postgres_database: str) -> None:
    db = await open_database(postgres_database)
    await db.close()
    db = await open_database(postgres_database, [LATER], create=False)
    try:
        await db.write(lambda c: c.execute("INSERT INTO later_notes (id) VALUES (?)", ("n1",)))
        versions = await db.read(
            lambda c: c.execute(
                "SELECT version FROM schema_migrations WHERE component = ?", ("later",)
            ).fetchall()
        )
    finally:
        await db.close()
    assert [row[0] for row in versions] == [1]


async def test_an_uninitialised_database_is_refused_and_left_empty(postgres_database: str) -> None:
    with pytest.raises(DatabaseUnreachable, match="not initialised"):
        await open_database(postgres_database, [LATER], create=False)
    db = await open_database(postgres_database, [LATER])  # nothing was created meanwhile
    try:
        rows = await db.read(lambda c: c.execute("SELECT count(*) FROM later_notes").fetchone())
    finally:
        await db.close()
    assert rows[0] == 0
