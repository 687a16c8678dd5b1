"""Helpers shared by the persona tests."""

from __future__ import annotations

import sqlite3
from typing import Any

from tool_registry.store import Database


async def dump(db: Database) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, sorted: two equal dumps mean two identical databases."""

    def work(conn: sqlite3.Connection) -> dict[str, list[tuple[Any, ...]]]:
        tables = [
            r["name"]
            for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' "
                "AND name NOT LIKE 'sqlite_%' ORDER BY name"
            )
        ]
        out: dict[str, list[tuple[Any, ...]]] = {}
        for table in tables:
            rows = conn.execute(f'SELECT * FROM "{table}"').fetchall()  # noqa: S608
            out[table] = sorted((tuple(r) for r in rows), key=repr)
        return out

    return await db.read(work)
