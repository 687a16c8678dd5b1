"""Helpers shared by the persona tests."""

from __future__ import annotations

from typing import Any

from tool_registry.store import Database
from tool_registry.store.connection import Conn, dialect_of

_TABLES = {
    "sqlite": "SELECT name FROM sqlite_master WHERE type = 'table' "
    "AND name NOT LIKE 'sqlite_%' ORDER BY name",
    "postgres": "SELECT tablename AS name FROM pg_tables WHERE schemaname = current_schema() "
    "ORDER BY tablename",
}


async def dump(db: Database) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, sorted: two equal dumps mean two identical databases (on
    either backend)."""

    def work(conn: Conn) -> dict[str, list[tuple[Any, ...]]]:
        tables = [r["name"] for r in conn.execute(_TABLES[dialect_of(conn)])]
        out: dict[str, list[tuple[Any, ...]]] = {}
        for table in tables:
            rows = conn.execute(f'SELECT * FROM "{table}"').fetchall()  # noqa: S608
            out[table] = sorted((tuple(r) for r in rows), key=repr)
        return out

    return await db.read(work)
