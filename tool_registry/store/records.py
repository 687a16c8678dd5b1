"""`ScopedStore`: the only data API a handler sees, bound to one (user, space).

Every query filters by `space_id` in SQL (index `records_by_space`), every write stamps the space
and the author, updates are field-level last-writer-wins and deletes are soft. A store bound for
a read-only tool refuses writes, so a `read` policy hint is enforced, not just declared.
"""

from __future__ import annotations

import builtins
import re
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Literal, Protocol, TypeVar

import orjson

from tool_registry.clock import Clock, iso
from tool_registry.errors import ManaError, NotAMemberError, ToolError, ValidationFailed
from tool_registry.store.accounts import Space, SpaceAccess, space_from_row

T = TypeVar("T")

FIELD_PATH = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
META_COLUMNS = {"id", "created_at", "updated_at", "deleted_at", "author_id"}

Op = Literal["eq", "ne", "lt", "le", "gt", "ge", "contains", "is_null", "not_null", "in"]
_SQL_OPS = {"eq": "=", "ne": "!=", "lt": "<", "le": "<=", "gt": ">", "ge": ">="}


class ReadOnlyStoreError(ManaError):
    reason = "read-only-store"


class Runner(Protocol):
    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T: ...


@dataclass(frozen=True)
class Filter:
    """A condition on a data field (dotted path into the JSON) or a meta column."""

    field: str
    op: Op
    value: Any = None

    def sql(self) -> tuple[str, list[Any]]:
        column = _column(self.field)
        if self.op == "is_null":
            return f"{column} IS NULL", []
        if self.op == "not_null":
            return f"{column} IS NOT NULL", []
        if self.op == "contains":
            return "instr(mana_fold(" + column + "), ?) > 0", [str(self.value).casefold()]
        if self.op == "in":
            values = list(self.value)
            if not values:
                return "0", []
            return f"{column} IN ({','.join('?' * len(values))})", [_sql_value(v) for v in values]
        return f"{column} {_SQL_OPS[self.op]} ?", [_sql_value(self.value)]


def _sql_value(value: Any) -> Any:
    if isinstance(value, bool):
        return 1 if value else 0
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, date):
        return value.isoformat()
    return value


def _column(path: str) -> str:
    if path in META_COLUMNS:
        return path
    if not FIELD_PATH.match(path):
        raise ValidationFailed(f"invalid field path {path!r}")
    return f"json_extract(data, '$.{path}')"


@dataclass(slots=True)
class Record:
    """One stored row as a handler sees it. (Not frozen: frozen dataclasses cost ~3x more to
    build, and reads build thousands of these.)"""

    id: str
    collection: str
    space_id: str
    author_id: str
    data: dict[str, Any]
    created_at: str
    updated_at: str
    deleted_at: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """The record's data plus id and timestamps: handy for building output models."""
        return {
            **self.data,
            "id": self.id,
            "createdAt": self.created_at,
            "updatedAt": self.updated_at,
        }


# Explicit column order: rows are read by position (faster than by name on hot read paths).
_COLS = "id, collection, space_id, author_id, data, created_at, updated_at, deleted_at"


def _record(row: sqlite3.Row | tuple[Any, ...]) -> Record:
    return Record(
        id=row[0],
        collection=row[1],
        space_id=row[2],
        author_id=row[3],
        data=orjson.loads(row[4]),
        created_at=row[5],
        updated_at=row[6],
        deleted_at=row[7],
    )


def _dump(data: Mapping[str, Any]) -> str:
    return orjson.dumps(
        data, default=_json_default, option=orjson.OPT_PASSTHROUGH_DATETIME
    ).decode()


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return iso(value)
    if hasattr(value, "isoformat"):
        return value.isoformat()
    raise TypeError(f"cannot store {type(value).__name__}")


def _one(row: sqlite3.Row | None) -> Record | None:
    return _record(row) if row else None


class ScopedStore:
    """Record access for exactly one user in exactly one space (membership already verified)."""

    def __init__(
        self, runner: Runner, *, user_id: str, access: SpaceAccess, clock: Clock, writable: bool
    ) -> None:
        if access.role is None:
            raise NotAMemberError()
        self._runner = runner
        self._clock = clock
        self._writable = writable
        self.user_id = user_id
        self.space: Space = access.space
        self.role: str = access.role

    @property
    def space_id(self) -> str:
        return self.space.id

    def _require_writable(self) -> None:
        if not self._writable:
            raise ReadOnlyStoreError("this tool is read-only and cannot change data")

    # -- reads -------------------------------------------------------------------------------

    async def get(
        self, collection: str, record_id: str, *, include_deleted: bool = False
    ) -> Record | None:
        sql = f"SELECT {_COLS} FROM records WHERE id = ? AND space_id = ? AND collection = ?"
        if not include_deleted:
            sql += " AND deleted_at IS NULL"
        params = (record_id, self.space_id, collection)
        return await self._runner.run(lambda c: _one(c.execute(sql, params).fetchone()))

    async def require(self, collection: str, record_id: str, *, label: str | None = None) -> Record:
        """The record or a `not-found` tool error naming what was looked for."""
        rec = await self.get(collection, record_id)
        if rec is None:
            raise ToolError(
                f"no {label or collection} with id {record_id!r} in this space", reason="not-found"
            )
        return rec

    async def list(
        self,
        collection: str,
        *,
        where: Mapping[str, Any] | None = None,
        filters: Sequence[Filter] = (),
        include_deleted: bool = False,
        order_by: str = "created_at",
        descending: bool = False,
        limit: int | None = None,
        offset: int = 0,
    ) -> builtins.list[Record]:
        clauses = ["space_id = ?", "collection = ?"]
        params: builtins.list[Any] = [self.space_id, collection]
        if not include_deleted:
            clauses.append("deleted_at IS NULL")
        all_filters = [Filter(k, "eq", v) for k, v in (where or {}).items()] + list(filters)
        for f in all_filters:
            clause, values = f.sql()
            clauses.append(clause)
            params.extend(values)
        order = _column(order_by)
        direction = "DESC" if descending else "ASC"
        sql = (
            f"SELECT {_COLS} FROM records WHERE {' AND '.join(clauses)} "
            f"ORDER BY {order} {direction}, id {direction}"
        )
        if limit is not None:
            sql += " LIMIT ? OFFSET ?"
            params.extend([int(limit), int(offset)])
        return await self._runner.run(lambda c: [_record(r) for r in c.execute(sql, params)])

    async def count(self, collection: str, *, filters: Sequence[Filter] = ()) -> int:
        clauses = ["space_id = ?", "collection = ?", "deleted_at IS NULL"]
        params: builtins.list[Any] = [self.space_id, collection]
        for f in filters:
            clause, values = f.sql()
            clauses.append(clause)
            params.extend(values)
        sql = f"SELECT count(*) FROM records WHERE {' AND '.join(clauses)}"
        return int(await self._runner.run(lambda c: c.execute(sql, params).fetchone()[0]))

    async def search(
        self,
        collection: str,
        text: str,
        fields: Sequence[str],
        *,
        limit: int = 20,
        filters: Sequence[Filter] = (),
    ) -> builtins.list[Record]:
        """Case-insensitive substring search over `fields`, ranked.

        Rank: a match in an earlier field weighs more (fields are given most important first),
        a match at the start of a field adds a bonus; ties go to the most recently updated.
        """
        needle = text.casefold()
        score_parts: builtins.list[str] = []
        match_parts: builtins.list[str] = []
        score_params: builtins.list[str] = []
        match_params: builtins.list[str] = []
        for i, name in enumerate(fields):
            column = f"mana_fold({_column(name)})"
            weight = 2 ** (len(fields) - i)
            score_parts.append(
                f"(CASE WHEN instr({column}, ?) = 1 THEN {weight * 2} "
                f"WHEN instr({column}, ?) > 1 THEN {weight} ELSE 0 END)"
            )
            score_params.extend([needle, needle])
            match_parts.append(f"instr({column}, ?) > 0")
            match_params.append(needle)
        clauses = [
            "space_id = ?",
            "collection = ?",
            "deleted_at IS NULL",
            f"({' OR '.join(match_parts)})",
        ]
        params: builtins.list[Any] = [*score_params, self.space_id, collection, *match_params]
        for f in filters:
            clause, values = f.sql()
            clauses.append(clause)
            params.extend(values)
        sql = (
            f"SELECT {_COLS}, ({' + '.join(score_parts)}) AS score FROM records "
            f"WHERE {' AND '.join(clauses)} ORDER BY score DESC, updated_at DESC, id LIMIT ?"
        )
        params.append(int(limit))
        return await self._runner.run(lambda c: [_record(r) for r in c.execute(sql, params)])

    async def my_spaces(self) -> builtins.list[SpaceAccess]:
        """The bound user's own memberships (used by `spaces.list`)."""
        user_id = self.user_id

        def work(conn: sqlite3.Connection) -> builtins.list[SpaceAccess]:
            rows = conn.execute(
                "SELECT s.*, m.role FROM spaces s JOIN memberships m ON m.space_id = s.id "
                "WHERE m.user_id = ? ORDER BY s.type != 'personal', s.created_at, s.id",
                (user_id,),
            ).fetchall()
            return [SpaceAccess(space_from_row(r), r["role"]) for r in rows]

        return await self._runner.run(work)

    async def destructive_allowlist(self) -> builtins.list[dict[str, Any]]:
        """The tools this space has opted in to as destructive-allowed (read by any member)."""
        space_id = self.space_id
        rows = await self._runner.run(
            lambda c: c.execute(
                "SELECT tool, added_by, added_at FROM space_destructive_allowlist "
                "WHERE space_id = ? ORDER BY tool",
                (space_id,),
            ).fetchall()
        )
        return [dict(r) for r in rows]

    # -- writes ------------------------------------------------------------------------------

    async def insert(
        self, collection: str, data: Mapping[str, Any], *, record_id: str | None = None
    ) -> Record:
        self._require_writable()
        now = iso(self._clock.now())
        rid = record_id or self._clock.new_id(collection[:3].lower())
        payload = _dump(data)
        field_ts = _dump({k: now for k in data})
        space_id, author = self.space_id, self.user_id

        def work(conn: sqlite3.Connection) -> Record:
            conn.execute(
                "INSERT INTO records (id, space_id, collection, author_id, data, "
                "field_updated_at, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?)",
                (rid, space_id, collection, author, payload, field_ts, now, now),
            )
            return _record(
                conn.execute(f"SELECT {_COLS} FROM records WHERE id = ?", (rid,)).fetchone()
            )

        return await self._runner.run(work)

    async def update(
        self,
        collection: str,
        record_id: str,
        changes: Mapping[str, Any],
        *,
        at: datetime | None = None,
    ) -> Record:
        """Field-level last-writer-wins: a field changes only if `at` is not older than its
        last change. Fields set to None are stored as null and stamped like any other change,
        so an older write cannot bring a cleared value back (update tools' `clear` relies on
        it; the tool decides what null means)."""
        self._require_writable()
        stamp = iso(at or self._clock.now())
        space_id = self.space_id
        encoded = orjson.loads(_dump(changes))

        def work(conn: sqlite3.Connection) -> Record:
            row = conn.execute(
                "SELECT * FROM records WHERE id = ? AND space_id = ? AND collection = ? "
                "AND deleted_at IS NULL",
                (record_id, space_id, collection),
            ).fetchone()
            if row is None:
                raise ToolError(
                    f"no {collection} record with id {record_id!r} in this space",
                    reason="not-found",
                )
            data = orjson.loads(row["data"])
            field_ts = orjson.loads(row["field_updated_at"])
            changed = False
            for key, value in encoded.items():
                if field_ts.get(key, "") <= stamp:
                    if data.get(key) != value or key not in data:
                        changed = True
                    data[key] = value
                    field_ts[key] = stamp
            if changed:
                updated_at = max(row["updated_at"], stamp)
                conn.execute(
                    "UPDATE records SET data = ?, field_updated_at = ?, updated_at = ? "
                    "WHERE id = ?",
                    (_dump(data), _dump(field_ts), updated_at, record_id),
                )
            return _record(
                conn.execute(f"SELECT {_COLS} FROM records WHERE id = ?", (record_id,)).fetchone()
            )

        return await self._runner.run(work)

    async def soft_delete(self, collection: str, record_id: str) -> Record:
        """Mark a record deleted. Deleting an already-deleted record returns it unchanged (so
        delete tools are idempotent); an id unknown in this space is a `not-found` error."""
        self._require_writable()
        now = iso(self._clock.now())
        space_id = self.space_id

        def work(conn: sqlite3.Connection) -> Record:
            conn.execute(
                "UPDATE records SET deleted_at = ?, updated_at = ? WHERE id = ? AND space_id = ? "
                "AND collection = ? AND deleted_at IS NULL",
                (now, now, record_id, space_id, collection),
            )
            row = conn.execute(
                f"SELECT {_COLS} FROM records WHERE id = ? AND space_id = ? AND collection = ?",
                (record_id, space_id, collection),
            ).fetchone()
            if row is None:
                raise ToolError(
                    f"no {collection} record with id {record_id!r} in this space",
                    reason="not-found",
                )
            return _record(row)

        return await self._runner.run(work)


class ReadRunner:
    """Runs store work on the database's reader threads."""

    def __init__(self, db: Any) -> None:
        self._db = db

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        result: T = await self._db.read(fn)
        return result
