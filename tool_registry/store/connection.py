"""What a store function sees of a database connection, on either backend.

Store functions are plain synchronous functions of one connection (`Conn`), run as a unit on a
database thread. They write portable SQL: `?` placeholders, `INSERT … ON CONFLICT`, `RETURNING`
instead of row ids, no SQLite-only functions; where the dialects really differ they ask
`dialect_of(conn)`. A SQLite connection is used as it is; a PostgreSQL connection is wrapped by
`tool_registry.store.postgres.PgConn`, which translates placeholders and returns rows that read
by position and by column name, like `sqlite3.Row`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Literal, Protocol

Dialect = Literal["sqlite", "postgres"]


class Cursor(Protocol):
    """The part of a DB-API cursor the stores use."""

    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...


class Conn(Protocol):
    """The part of a connection the stores use: `execute` with `?` placeholders."""

    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> Any: ...

    def executemany(self, sql: str, parameters: Iterable[Sequence[Any]], /) -> Any: ...

    @property
    def in_transaction(self) -> bool: ...


def dialect_of(conn: Conn) -> Dialect:
    """Which SQL dialect `conn` speaks."""
    if isinstance(conn, sqlite3.Connection):
        return "sqlite"
    dialect: Dialect = getattr(conn, "dialect", "sqlite")
    return dialect


class Row(Protocol):
    """One result row: by position or by column name (`sqlite3.Row` and `PgRow` both are)."""

    def __getitem__(self, key: Any, /) -> Any: ...

    def keys(self) -> list[str]: ...
