"""`ScopedStore`: the only data API a handler sees, bound to one (user, space).

Every query filters by `space_id` in SQL (index `records_by_space`), every write stamps the space
and the author, updates are field-level last-writer-wins and deletes are soft. A store bound for
a read-only tool refuses writes, so a `read` policy hint is enforced, not just declared.
"""

from __future__ import annotations

import builtins
import functools
import re
from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Literal, Protocol, TypeVar

import orjson

from tool_registry.clock import Clock, iso
from tool_registry.errors import ManaError, NotAMemberError, ToolError, ValidationFailed
from tool_registry.store.accounts import Space, SpaceAccess, space_from_row
from tool_registry.store.allowlist import DestructiveMode, destructive_mode
from tool_registry.store.connection import Conn, Dialect, Row, dialect_of

T = TypeVar("T")

FIELD_PATH = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
META_COLUMNS = {"id", "created_at", "updated_at", "deleted_at", "author_id"}
_NOT_NULL_COLUMNS = META_COLUMNS - {"deleted_at"}

Op = Literal["eq", "ne", "lt", "le", "gt", "ge", "contains", "is_null", "not_null", "in"]
_SQL_OPS = {"eq": "=", "ne": "!=", "lt": "<", "le": "<=", "gt": ">", "ge": ">="}


class ReadOnlyStoreError(ManaError):
    reason = "read-only-store"


class Runner(Protocol):
    async def run(self, fn: Callable[[Conn], T]) -> T: ...


@dataclass(frozen=True)
class Filter:
    """A condition on a data field (dotted path into the JSON) or a meta column."""

    field: str
    op: Op
    value: Any = None

    def __post_init__(self) -> None:
        check_field(self.field)

    def sql(self, dialect: Dialect) -> tuple[str, list[Any]]:
        """The condition as SQL for `dialect`, with its parameters."""
        column = field_sql(dialect, self.field)
        if self.op == "is_null":
            return f"{column.text} IS NULL", []
        if self.op == "not_null":
            return f"{column.text} IS NOT NULL", []
        if self.op == "contains":
            return f"instr(mana_fold({column.text}), mana_fold(?)) > 0", [str(self.value)]
        if self.op == "in":
            values = list(self.value)
            if not values:
                return "1 = 0", []
            params = [p for v in values for p in column.params(_sql_value(v))]
            return column.one_of(len(values)), params
        return column.compare(_SQL_OPS[self.op]), column.params(_sql_value(self.value))


def _sql_value(value: Any) -> Any:
    if isinstance(value, bool):
        return 1 if value else 0
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, date):
        return value.isoformat()
    return value


@dataclass(frozen=True)
class FieldSql:
    """How one backend's SQL reads a field for filtering and ordering, so both backends answer
    like SQLite's `json_extract`: `text` is the field as text (NULL when missing or JSON null),
    for `contains`, search and null tests; `key` are the expressions whose lexicographic order
    and equality are the field's (nulls first, then numbers and booleans as 1/0 by value, then
    strings by code point), and `params(value)` the matching parameters for a value."""

    text: str
    key: tuple[str, ...]
    typed: bool  # whether `key` is (class, number, text) rather than the value itself
    nullable: bool = True

    def params(self, value: Any) -> list[Any]:
        if not self.typed:
            return [value]
        if value is None:
            return [None, None, None]
        if isinstance(value, int | float):
            return [1, value, ""]
        return [2, 0, str(value)]

    def compare(self, op: str) -> str:
        """`field op value` for `params(value)`."""
        if not self.typed:
            return f"{self.key[0]} {op} ?"
        return f"({', '.join(self.key)}) {op} (?, ?, ?)"

    def one_of(self, count: int) -> str:
        """`field IN (values)` for the concatenated `params` of `count` values."""
        if not self.typed:
            return f"{self.key[0]} IN ({', '.join('?' * count)})"
        return "(" + " OR ".join([self.compare("=")] * count) + ")"

    def order(self, descending: bool) -> str:
        """ORDER BY terms: SQL NULL (missing, JSON null) sorts first ascending, last descending,
        as in SQLite (said only where a NULL can occur, so a plain column keeps its index
        order on PostgreSQL)."""
        direction = "DESC" if descending else "ASC"
        if self.nullable:
            direction += " NULLS LAST" if descending else " NULLS FIRST"
        return ", ".join(f"{k} {direction}" for k in self.key)


def check_field(path: str) -> str:
    """`path` when it names a meta column or a dotted data field; `ValidationFailed` otherwise
    (paths are written into SQL, so nothing else may pass)."""
    if path not in META_COLUMNS and not FIELD_PATH.match(path):
        raise ValidationFailed(f"invalid field path {path!r}")
    return path


# What a query that reads data fields selects from (the other half of `field_sql`): on PostgreSQL
# each row's JSON text is parsed once into `doc.j` (OFFSET 0 keeps the planner from copying the
# parse into every expression that reads it), instead of once per field term.
RECORDS_SOURCE: dict[Dialect, str] = {
    "sqlite": "records",
    "postgres": "records CROSS JOIN LATERAL (SELECT records.data::jsonb AS j OFFSET 0) AS doc",
}


@functools.lru_cache(maxsize=1024)
def field_sql(dialect: Dialect, path: str) -> FieldSql:
    """The one place where the backends differ on reading a field (with `RECORDS_SOURCE`): a
    meta column is itself; a data field is `json_extract` on SQLite and the jsonb path operators
    on PostgreSQL, where the value is split by JSON type into (class, number, text) so that typed
    comparisons and ordering behave like SQLite's (a JSON number compares with numbers, `true`
    is 1, a string compares with strings byte-wise, JSON null is SQL NULL, numbers sort before
    strings)."""
    if check_field(path) in META_COLUMNS:
        return FieldSql(path, (path,), typed=False, nullable=path not in _NOT_NULL_COLUMNS)
    if dialect == "sqlite":
        column = f"json_extract(data, '$.{path}')"
        return FieldSql(column, (column,), typed=False)
    pg_path = "{" + path.replace(".", ",") + "}"
    value = f"(doc.j #> '{pg_path}')"

    def by_type(**cases: str) -> str:
        # A simple CASE evaluates its operand once.
        whens = " ".join(f"WHEN '{kind}' THEN {then}" for kind, then in cases.items())
        return f"(CASE jsonb_typeof({value}) {whens} END)"

    return FieldSql(
        text=f"(doc.j #>> '{pg_path}')",
        key=(
            by_type(number="1", boolean="1", string="2", object="2", array="2"),
            by_type(
                number=f"{value}::numeric",
                boolean=f"{value}::boolean::int",
                string="0",
                object="0",
                array="0",
            ),
            by_type(
                string=f"{value} #>> '{{}}'",
                object=f"{value}::text",
                array=f"{value}::text",
                number="''",
                boolean="''",
            )
            + ' COLLATE "C"',
        ),
        typed=True,
    )


def _where(
    dialect: Dialect, clauses: Sequence[str], params: Sequence[Any], filters: Sequence[Filter]
) -> tuple[str, builtins.list[Any]]:
    """`clauses` and `filters` joined with AND, and their parameters in order."""
    parts, values = builtins.list(clauses), builtins.list(params)
    for f in filters:
        clause, extra = f.sql(dialect)
        parts.append(clause)
        values.extend(extra)
    return " AND ".join(parts), values


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


def _record(row: Row | tuple[Any, ...]) -> Record:
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


def _one(row: Row | None) -> Record | None:
    return _record(row) if row else None


# Rows per query when a list is read in pages (`ScopedStore.pages`).
PAGE_SIZE = 100


@dataclass(frozen=True)
class Page:
    """One page of a paged read: its records, and whether another page follows."""

    records: builtins.list[Record]
    more: bool


@dataclass(frozen=True)
class _Order:
    field: str
    descending: bool


@dataclass(frozen=True)
class _After:
    """Where a paged read continues: after the row with this order value and id."""

    value: Any
    id: str

    @classmethod
    def of(cls, record: Record, path: str) -> _After:
        """The position of `record` in an order on `path`, with the value as the SQL reads it
        (a missing field or JSON null is SQL NULL)."""
        value: Any
        if path in META_COLUMNS:
            value = getattr(record, path)
        else:
            value = record.data
            for part in path.split("."):
                value = value.get(part) if isinstance(value, dict) else None
        if isinstance(value, dict | builtins.list):
            raise ValidationFailed(
                f"cannot read {record.collection} in pages ordered by {path!r}: record "
                f"{record.id} holds an object or a list there"
            )
        return cls(_sql_value(value), record.id)

    def sql(self, dialect: Dialect, order: _Order) -> tuple[str, builtins.list[Any]]:
        """The rows after this position in `order` (the order field, then id, both one way;
        SQL NULL first ascending, last descending, as `FieldSql.order` sorts them)."""
        column = field_sql(dialect, order.field)
        beyond = "<" if order.descending else ">"
        if self.value is None:
            parts = [f"({column.text} IS NULL AND id {beyond} ?)"]
            params: builtins.list[Any] = [self.id]
            if not order.descending:
                parts.append(f"{column.text} IS NOT NULL")
        else:
            key = column.params(self.value)
            parts = [column.compare(beyond), f"({column.compare('=')} AND id {beyond} ?)"]
            params = [*key, *key, self.id]
            if order.descending and column.nullable:
                parts.append(f"{column.text} IS NULL")
        return "(" + " OR ".join(parts) + ")", params


def _select(
    dialect: Dialect,
    space_id: str,
    collection: str,
    filters: Sequence[Filter],
    order: _Order,
    include_deleted: bool,
    after: _After | None = None,
) -> tuple[str, builtins.list[Any]]:
    """The SELECT of `list` and `pages` (without LIMIT), and its parameters: one place for the
    filters and the order (the order field, then id), so pages concatenate to the list."""
    clauses = ["space_id = ?", "collection = ?"]
    params: builtins.list[Any] = [space_id, collection]
    if not include_deleted:
        clauses.append("deleted_at IS NULL")
    if after is not None:
        clause, extra = after.sql(dialect, order)
        clauses.append(clause)
        params.extend(extra)
    where_sql, params = _where(dialect, clauses, params, filters)
    direction = "DESC" if order.descending else "ASC"
    by = field_sql(dialect, order.field).order(order.descending)
    source = RECORDS_SOURCE[dialect]
    return (
        f"SELECT {_COLS} FROM {source} WHERE {where_sql} ORDER BY {by}, id {direction}",
        params,
    )


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
        all_filters = [Filter(k, "eq", v) for k, v in (where or {}).items()] + list(filters)
        order = _Order(check_field(order_by), descending)
        space_id = self.space_id

        def work(conn: Conn) -> builtins.list[Record]:
            sql, params = _select(
                dialect_of(conn), space_id, collection, all_filters, order, include_deleted
            )
            if limit is not None:
                sql += " LIMIT ? OFFSET ?"
                params.extend([int(limit), int(offset)])
            return [_record(r) for r in conn.execute(sql, params)]

        return await self._runner.run(work)

    async def pages(
        self,
        collection: str,
        *,
        filters: Sequence[Filter] = (),
        order_by: str = "created_at",
        descending: bool = False,
        limit: int | None = None,
        page_size: int = PAGE_SIZE,
    ) -> AsyncGenerator[Page, None]:
        """The rows `list` would return for the same arguments, read `page_size` at a time.

        Each page continues after the last row of the one before in the list's own order
        (keyset: the order field's value, then the id), so a row written or deleted between two
        pages neither repeats a row nor shifts the rest, as OFFSET would. Pages are separate
        reads: a change committed between them is seen from the next page on. Raises
        `ValidationFailed` when a record holds an object or a list in the order field (no
        position to continue from)."""
        if page_size < 1:
            raise ValueError(f"page_size must be at least 1, got {page_size}")
        order = _Order(check_field(order_by), descending)
        space_id = self.space_id
        filters = builtins.list(filters)
        read = 0
        after: _After | None = None
        while limit is None or read < limit:
            want = page_size if limit is None else min(page_size, limit - read)

            def work(
                conn: Conn, after: _After | None = after, want: int = want
            ) -> builtins.list[Row]:
                sql, params = _select(
                    dialect_of(conn), space_id, collection, filters, order, False, after
                )
                # One row beyond the page says whether another page follows.
                rows: builtins.list[Row] = conn.execute(
                    f"{sql} LIMIT ?", [*params, want + 1]
                ).fetchall()
                return rows

            rows = await self._runner.run(work)
            records = [_record(r) for r in rows[:want]]
            read += len(records)
            more = len(rows) > want and (limit is None or read < limit)
            yield Page(records, more)
            if not more:
                return
            after = _After.of(records[-1], order.field)

    async def count(self, collection: str, *, filters: Sequence[Filter] = ()) -> int:
        clauses = ["space_id = ?", "collection = ?", "deleted_at IS NULL"]
        space_id = self.space_id

        def work(conn: Conn) -> int:
            dialect = dialect_of(conn)
            where_sql, params = _where(dialect, clauses, [space_id, collection], filters)
            sql = f"SELECT count(*) FROM {RECORDS_SOURCE[dialect]} WHERE {where_sql}"
            return int(conn.execute(sql, params).fetchone()[0])

        return await self._runner.run(work)

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
        Text and fields are folded by the database's `mana_fold`, so both sides of a match are
        folded alike on either backend.
        """
        for name in fields:
            check_field(name)
        space_id = self.space_id

        def work(conn: Conn) -> builtins.list[Record]:
            dialect = dialect_of(conn)
            score_parts: builtins.list[str] = []
            match_parts: builtins.list[str] = []
            for i, name in enumerate(fields):
                column = f"mana_fold({field_sql(dialect, name).text})"
                weight = 2 ** (len(fields) - i)
                score_parts.append(
                    f"(CASE WHEN instr({column}, mana_fold(?)) = 1 THEN {weight * 2} "
                    f"WHEN instr({column}, mana_fold(?)) > 1 THEN {weight} ELSE 0 END)"
                )
                match_parts.append(f"instr({column}, mana_fold(?)) > 0")
            clauses = [
                "space_id = ?",
                "collection = ?",
                "deleted_at IS NULL",
                f"({' OR '.join(match_parts)})",
            ]
            where_params = [space_id, collection, *[text] * len(fields)]
            where_sql, params = _where(dialect, clauses, where_params, filters)
            sql = (
                f"SELECT {_COLS}, ({' + '.join(score_parts)}) AS score "
                f"FROM {RECORDS_SOURCE[dialect]} "
                f"WHERE {where_sql} ORDER BY score DESC, updated_at DESC, id LIMIT ?"
            )
            params = [*[text] * (2 * len(fields)), *params, int(limit)]
            return [_record(r) for r in conn.execute(sql, params)]

        return await self._runner.run(work)

    async def my_spaces(self) -> builtins.list[SpaceAccess]:
        """The bound user's own memberships (used by `spaces.list`)."""
        user_id = self.user_id

        def work(conn: Conn) -> builtins.list[SpaceAccess]:
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

    async def destructive_mode(self) -> DestructiveMode:
        """What this space does with destructive tools not on its allowlist (any member)."""
        space_id = self.space_id
        return await self._runner.run(lambda c: destructive_mode(c, space_id))

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

        def work(conn: Conn) -> Record:
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

        def work(conn: Conn) -> Record:
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

        def work(conn: Conn) -> Record:
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

    async def run(self, fn: Callable[[Conn], T]) -> T:
        result: T = await self._db.read(fn)
        return result
