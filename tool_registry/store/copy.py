"""Copy every row of one Mana database into another: SQLite file ⇄ PostgreSQL (or file → file).

`copy_database(source, target, migrations)` is what `mana db copy` runs:

1. The source is opened read-only and read in one snapshot (SQLite: one read transaction;
   PostgreSQL: `REPEATABLE READ READ ONLY`). Its schema versions must be exactly the ones this
   Mana's migrations give, else it is refused before the target is touched.
2. The target is created (a SQLite file) and migrated with the same migrations as the runtime;
   a target whose schema has versions this Mana does not know is refused. A target with any row
   in any table but `schema_migrations` is refused unless `force`.
3. In ONE write transaction on the target: with `force`, every table is emptied first (children
   before parents); then every table found in the schema is copied in foreign-key order (parents
   first), in batches of `batch_size` rows so memory stays bounded; identity columns on
   PostgreSQL are moved past the copied ids; then every table is read back and verified.
4. Verification is per table: row count and a SHA-256 over the rows in primary-key order (text
   keys in byte order on both sides), each value encoded the same way whatever the backend (see
   `encode_value`). All tables match: COMMIT. Any mismatch: ROLLBACK, so the target is left as
   it was, and the report says which tables differ.

`schema_migrations` is not copied: the target has its own rows for the same versions (checked).
No label this module prints or raises carries a password (`describe_target`).
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo
from psycopg.rows import tuple_row

from tool_registry.errors import ManaError
from tool_registry.store.connection import Dialect
from tool_registry.store.database import Migration, apply_migrations
from tool_registry.store.database import connect as sqlite_connect
from tool_registry.store.postgres import (
    CONNECT_TIMEOUT_SECONDS,
    WRITE_LOCK_KEY,
    check_reachable,
    describe_url,
    is_postgres_url,
    migrate,
)

SCHEMA_TABLE = "schema_migrations"
DEFAULT_BATCH_SIZE = 1000
Version = tuple[str, int, str]  # (component, version, name)
Values = tuple[Any, ...]


class CopyRefused(ManaError):
    """The copy did not start: the source or target is not what a copy needs (wrong schema
    versions, a non-empty target without `force`, the same database twice). Nothing changed
    in the target's rows."""

    reason = "copy-refused"


class CopyFailed(ManaError):
    """The copy started but a statement failed; the target's transaction was rolled back."""

    reason = "copy-failed"


def describe_target(target: str | Path) -> str:
    """The printable form of a source or target: `postgresql://host:port/db` (never a user or
    password) or the file path."""
    if is_postgres_url(target):
        return "postgresql://" + describe_url(str(target))
    return str(target)


# -- checksums -----------------------------------------------------------------------------------


def encode_value(value: Any) -> bytes:
    """One column value as bytes, the same on both backends: a type tag, then the value (text
    as UTF-8 and binary data prefixed by their length, integers in decimal, floats by `repr`,
    which round-trips exactly), so NULL, 0, '' and '0' all differ and no two rows run together."""
    if value is None:
        return b"n;"
    if isinstance(value, bool):
        value = int(value)
    if isinstance(value, int):
        return b"i" + str(value).encode() + b";"
    if isinstance(value, float):
        return b"f" + repr(value).encode() + b";"
    if isinstance(value, str):
        data = value.encode("utf-8")
        return b"s" + str(len(data)).encode() + b":" + data
    if isinstance(value, bytes | bytearray | memoryview):
        raw = bytes(value)
        return b"b" + str(len(raw)).encode() + b":" + raw
    raise CopyFailed(f"cannot checksum a value of type {type(value).__name__}")


class TableChecksum:
    """Row count and SHA-256 of a table's rows, fed in primary-key order."""

    def __init__(self) -> None:
        self.rows = 0
        self._hash = hashlib.sha256()

    def add(self, rows: Iterable[Values]) -> None:
        for row in rows:
            self.rows += 1
            self._hash.update(b"r" + str(len(row)).encode() + b"|")
            for value in row:
                self._hash.update(encode_value(value))

    @property
    def hexdigest(self) -> str:
        return self._hash.hexdigest()


# -- the schema as found -------------------------------------------------------------------------


@dataclass(frozen=True)
class TableInfo:
    """A table as its database describes it."""

    name: str
    columns: tuple[str, ...]
    key: tuple[str, ...]  # primary-key columns in key order (all columns if there is none)
    text_columns: frozenset[str]
    parents: frozenset[str]  # tables its foreign keys reference
    identity: tuple[str, ...] = ()  # PostgreSQL identity/serial columns


def copy_order(tables: dict[str, TableInfo]) -> list[str]:
    """Table names with every referenced table before the tables that reference it (ties by
    name). Tables in a reference cycle come last, by name: SQLite checks their foreign keys at
    COMMIT; PostgreSQL refuses the copy if a row arrives before the row it references."""
    order: list[str] = []
    placed: set[str] = set()
    pending = sorted(tables)
    while pending:
        ready = [
            name
            for name in pending
            if all(p in placed or p == name or p not in tables for p in tables[name].parents)
        ]
        if not ready:
            order.extend(pending)
            break
        order.extend(ready)
        placed.update(ready)
        pending = [name for name in pending if name not in placed]
    return order


# -- one side of a copy --------------------------------------------------------------------------


class Endpoint(Protocol):
    """A source or a target, on one raw connection. The dialect differences live in its two
    implementations and nowhere else."""

    label: str
    dialect: Dialect

    def versions(self) -> set[Version] | None:
        """The applied schema steps, or None when there is no `schema_migrations` table."""
        ...

    def tables(self) -> dict[str, TableInfo]: ...

    def begin_snapshot(self) -> None:
        """Start the read transaction every later read of the source sees."""
        ...

    def begin_write(self) -> None: ...

    def commit(self) -> None: ...

    def rollback(self) -> None: ...

    def migrate(self, migrations: Sequence[Migration]) -> None: ...

    def has_rows(self, table: TableInfo) -> bool: ...

    def rows(self, table: TableInfo, columns: Sequence[str], batch: int) -> Iterator[list[Values]]:
        """The table's rows (the given columns) in key order, `batch` rows at a time."""
        ...

    def delete_all(self, table: TableInfo) -> None: ...

    def insert(self, table: TableInfo, columns: Sequence[str], rows: Sequence[Values]) -> None: ...

    def reset_identity(self, table: TableInfo) -> None:
        """Make the next generated id come after the largest one in the table."""
        ...

    def close(self) -> None: ...


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _text_affinity(declared: str) -> bool:
    """SQLite's rule for a column with TEXT affinity."""
    upper = declared.upper()
    return "INT" not in upper and any(word in upper for word in ("CHAR", "CLOB", "TEXT"))


class SqliteEndpoint:
    """A SQLite file. Read-only when it is a source (`mode=ro`), migrated when a target."""

    dialect: Dialect = "sqlite"

    def __init__(self, path: Path, *, read_only: bool) -> None:
        self.label = str(path)
        if read_only:
            if not path.is_file():
                raise CopyRefused(f"no database at {path}")
            self.conn = sqlite3.connect(
                f"{path.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None
            )
            self.conn.execute("PRAGMA query_only = ON")
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.conn = sqlite_connect(path)

    def versions(self) -> set[Version] | None:
        found = self.conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (SCHEMA_TABLE,)
        ).fetchone()
        if found is None:
            return None
        rows = self.conn.execute(f"SELECT component, version, name FROM {SCHEMA_TABLE}")
        return {(str(c), int(v), str(n)) for c, v, n in rows}

    def tables(self) -> dict[str, TableInfo]:
        names = [
            str(r[0])
            for r in self.conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' "
                "AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name"
            )
        ]
        out: dict[str, TableInfo] = {}
        for name in names:
            info = self.conn.execute(f"PRAGMA table_info({_quote(name)})").fetchall()
            columns = tuple(str(c[1]) for c in info)
            key = tuple(str(c[1]) for c in sorted((c for c in info if c[5]), key=lambda c: c[5]))
            text = frozenset(str(c[1]) for c in info if _text_affinity(str(c[2])))
            fks = self.conn.execute(f"PRAGMA foreign_key_list({_quote(name)})").fetchall()
            out[name] = TableInfo(
                name, columns, key or columns, text, frozenset(str(f[2]) for f in fks)
            )
        return out

    def begin_snapshot(self) -> None:
        self.conn.execute("BEGIN")

    def begin_write(self) -> None:
        self.conn.execute("BEGIN IMMEDIATE")
        # Foreign keys are checked at COMMIT, so rows of tables in a reference cycle can arrive
        # in any order.
        self.conn.execute("PRAGMA defer_foreign_keys = ON")

    def commit(self) -> None:
        self.conn.execute("COMMIT")

    def rollback(self) -> None:
        if self.conn.in_transaction:
            self.conn.execute("ROLLBACK")

    def migrate(self, migrations: Sequence[Migration]) -> None:
        apply_migrations(self.conn, migrations)

    def has_rows(self, table: TableInfo) -> bool:
        return (
            self.conn.execute(f"SELECT 1 FROM {_quote(table.name)} LIMIT 1").fetchone() is not None
        )

    def rows(self, table: TableInfo, columns: Sequence[str], batch: int) -> Iterator[list[Values]]:
        # BINARY is byte order of the UTF-8 text, the order PostgreSQL's "C" collation gives.
        order = ", ".join(f"{_quote(k)} COLLATE BINARY" for k in table.key)
        cur = self.conn.execute(
            f"SELECT {', '.join(_quote(c) for c in columns)} FROM {_quote(table.name)} "
            f"ORDER BY {order}"
        )
        try:
            while chunk := cur.fetchmany(batch):
                yield [tuple(r) for r in chunk]
        finally:
            cur.close()

    def delete_all(self, table: TableInfo) -> None:
        self.conn.execute(f"DELETE FROM {_quote(table.name)}")

    def insert(self, table: TableInfo, columns: Sequence[str], rows: Sequence[Values]) -> None:
        marks = ", ".join("?" for _ in columns)
        self.conn.executemany(
            f"INSERT INTO {_quote(table.name)} ({', '.join(_quote(c) for c in columns)}) "
            f"VALUES ({marks})",
            [tuple(bytes(v) if isinstance(v, memoryview) else v for v in r) for r in rows],
        )

    def reset_identity(self, table: TableInfo) -> None:
        """Nothing to do: an INTEGER PRIMARY KEY continues after the largest id by itself."""

    def close(self) -> None:
        self.conn.close()


class PostgresEndpoint:
    """A PostgreSQL database on one autocommit connection with explicit transactions."""

    dialect: Dialect = "postgres"

    def __init__(self, url: str, *, read_only: bool) -> None:
        self.label = describe_target(url)
        check_reachable(url)  # one line naming host and database when it cannot connect
        # A source is read in read-only sessions: the copy cannot change it.
        options = {"options": "-c default_transaction_read_only=on"} if read_only else {}
        self.raw: psycopg.Connection[Values] = psycopg.connect(
            make_conninfo(url, **options),
            autocommit=True,
            row_factory=tuple_row,
            connect_timeout=int(CONNECT_TIMEOUT_SECONDS),
            application_name="mana-db-copy",
        )
        self._cursors = 0

    def versions(self) -> set[Version] | None:
        found = self.raw.execute("SELECT to_regclass(%s) IS NOT NULL", (SCHEMA_TABLE,)).fetchone()
        if not found or not found[0]:
            return None
        rows = self.raw.execute(f"SELECT component, version, name FROM {SCHEMA_TABLE}")
        return {(str(c), int(v), str(n)) for c, v, n in rows}

    def tables(self) -> dict[str, TableInfo]:
        names = [
            str(r[0])
            for r in self.raw.execute(
                "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE c.relkind IN ('r', 'p') AND n.nspname = current_schema() "
                "ORDER BY c.relname"
            )
        ]
        out: dict[str, TableInfo] = {}
        for name in names:
            cols = self.raw.execute(
                "SELECT column_name, data_type, is_identity, column_default "
                "FROM information_schema.columns WHERE table_schema = current_schema() "
                "AND table_name = %s ORDER BY ordinal_position",
                (name,),
            ).fetchall()
            columns = tuple(str(c[0]) for c in cols)
            text = frozenset(
                str(c[0]) for c in cols if str(c[1]) in ("text", "character varying", "character")
            )
            identity = tuple(
                str(c[0]) for c in cols if c[2] == "YES" or str(c[3] or "").startswith("nextval(")
            )
            key = tuple(
                str(r[0])
                for r in self.raw.execute(
                    "SELECT a.attname FROM pg_index i JOIN pg_attribute a "
                    "ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) "
                    "WHERE i.indrelid = to_regclass(%s) AND i.indisprimary "
                    "ORDER BY array_position(i.indkey::int2[], a.attnum)",
                    (_quote(name),),
                )
            )
            parents = frozenset(
                str(r[0])
                for r in self.raw.execute(
                    "SELECT p.relname FROM pg_constraint k JOIN pg_class p ON p.oid = k.confrelid "
                    "WHERE k.contype = 'f' AND k.conrelid = to_regclass(%s)",
                    (_quote(name),),
                )
            )
            out[name] = TableInfo(name, columns, key or columns, text, parents, identity)
        return out

    def begin_snapshot(self) -> None:
        self.raw.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")

    def begin_write(self) -> None:
        # The write lock every serialised unit of a running Mana takes: no Mana write lands in
        # the target while it is being filled.
        self.raw.execute("BEGIN")
        self.raw.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK_KEY,))

    def commit(self) -> None:
        self.raw.execute("COMMIT")

    def rollback(self) -> None:
        status = self.raw.info.transaction_status
        if not self.raw.broken and status != psycopg.pq.TransactionStatus.IDLE:
            self.raw.execute("ROLLBACK")

    def migrate(self, migrations: Sequence[Migration]) -> None:
        migrate(self.raw, migrations)

    def has_rows(self, table: TableInfo) -> bool:
        query = sql.SQL("SELECT 1 FROM {} LIMIT 1").format(sql.Identifier(table.name))
        return self.raw.execute(query).fetchone() is not None

    def rows(self, table: TableInfo, columns: Sequence[str], batch: int) -> Iterator[list[Values]]:
        # "C" orders text by its bytes, like SQLite's BINARY, so both sides hash rows in the
        # same order.
        order = sql.SQL(", ").join(
            sql.SQL('{} COLLATE "C"').format(sql.Identifier(k))
            if k in table.text_columns
            else sql.Identifier(k)
            for k in table.key
        )
        query = sql.SQL("SELECT {} FROM {} ORDER BY {}").format(
            sql.SQL(", ").join(sql.Identifier(c) for c in columns),
            sql.Identifier(table.name),
            order,
        )
        self._cursors += 1
        # A server-side cursor streams the rows inside the current transaction.
        with self.raw.cursor(name=f"mana_copy_{self._cursors}") as cur:
            cur.itersize = batch
            cur.execute(query)
            while chunk := cur.fetchmany(batch):
                yield list(chunk)

    def delete_all(self, table: TableInfo) -> None:
        self.raw.execute(sql.SQL("DELETE FROM {}").format(sql.Identifier(table.name)))

    def insert(self, table: TableInfo, columns: Sequence[str], rows: Sequence[Values]) -> None:
        # Copied ids are kept as they are, whether an identity column is BY DEFAULT or ALWAYS.
        overriding = sql.SQL(" OVERRIDING SYSTEM VALUE" if table.identity else "")
        query = sql.SQL("INSERT INTO {} ({}){} VALUES ({})").format(
            sql.Identifier(table.name),
            sql.SQL(", ").join(sql.Identifier(c) for c in columns),
            overriding,
            sql.SQL(", ").join(sql.Placeholder() for _ in columns),
        )
        with self.raw.cursor() as cur:
            cur.executemany(query, rows)

    def reset_identity(self, table: TableInfo) -> None:
        for column in table.identity:
            self.raw.execute(
                sql.SQL(
                    "SELECT setval(pg_get_serial_sequence(%s, %s), "
                    "COALESCE((SELECT max({col}) FROM {table}), 1), "
                    "(SELECT max({col}) FROM {table}) IS NOT NULL)"
                ).format(col=sql.Identifier(column), table=sql.Identifier(table.name)),
                (_quote(table.name), column),
            )

    def close(self) -> None:
        self.raw.close()


def open_endpoint(target: str | Path, *, read_only: bool) -> Endpoint:
    """A `postgresql://` URL is PostgreSQL; anything else is a SQLite file path."""
    if is_postgres_url(target):
        return PostgresEndpoint(str(target), read_only=read_only)
    return SqliteEndpoint(Path(target), read_only=read_only)


# -- the copy ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TableResult:
    name: str
    source_rows: int
    target_rows: int
    source_checksum: str
    target_checksum: str

    @property
    def matches(self) -> bool:
        return self.source_rows == self.target_rows and self.source_checksum == self.target_checksum


@dataclass
class CopyReport:
    """What a copy did: per table, rows and checksums on both sides. `committed` is False when
    verification failed and the target's transaction was rolled back."""

    source: str
    target: str
    tables: list[TableResult] = field(default_factory=list)
    emptied: bool = False
    committed: bool = False

    @property
    def ok(self) -> bool:
        return self.committed and all(t.matches for t in self.tables)

    @property
    def mismatched(self) -> list[str]:
        return [t.name for t in self.tables if not t.matches]

    @property
    def rows(self) -> int:
        return sum(t.source_rows for t in self.tables)

    def lines(self) -> list[str]:
        """The per-table table: name, rows in the source and the target, checksum match."""
        width = max([len("table"), *(len(t.name) for t in self.tables)])
        out = [f"{'table':<{width}}  {'source rows':>11}  {'target rows':>11}  checksum"]
        for t in self.tables:
            verdict = "match" if t.matches else "MISMATCH"
            out.append(f"{t.name:<{width}}  {t.source_rows:>11}  {t.target_rows:>11}  {verdict}")
        return out

    def summary(self) -> str:
        if self.ok:
            return (
                f"copied {self.rows} rows in {len(self.tables)} tables from {self.source} to "
                f"{self.target}; every table verified (row count and SHA-256)"
            )
        return (
            f"verification failed for {', '.join(self.mismatched)}: the copy was rolled back "
            f"and {self.target} was left as it was"
        )


def _version_text(versions: Iterable[Version]) -> str:
    return ", ".join(f"{c}:{v}" for c, v, _ in sorted(versions))


def _expected_versions(migrations: Sequence[Migration]) -> set[Version]:
    return {(m.component, m.version, m.name) for m in migrations}


def _check_source_versions(source: Endpoint, expected: set[Version]) -> None:
    found = source.versions()
    if found is None:
        raise CopyRefused(f"{source.label} is not a Mana database (it has no {SCHEMA_TABLE})")
    if found == expected:
        return
    missing, unknown = expected - found, found - expected
    if unknown:
        raise CopyRefused(
            f"{source.label} has schema versions this Mana does not know ({_version_text(unknown)}): "
            "copy it with the Mana version that wrote it"
        )
    raise CopyRefused(
        f"{source.label} lacks schema versions this Mana has ({_version_text(missing)}): "
        "open it once with this Mana (e.g. `mana init`) to migrate it, then copy"
    )


def _check_target_versions(target: Endpoint, expected: set[Version]) -> None:
    found = target.versions() or set()
    unknown = found - expected
    if unknown:
        raise CopyRefused(
            f"{target.label} has schema versions this Mana does not know ({_version_text(unknown)}): "
            "copy into an empty database or one made by this Mana"
        )


def _matching_tables(
    source: dict[str, TableInfo], target: dict[str, TableInfo], target_label: str
) -> None:
    only_source = sorted(set(source) - set(target))
    only_target = sorted(set(target) - set(source))
    if only_source or only_target:
        raise CopyRefused(
            f"the schemas differ: tables only in the source: {', '.join(only_source) or 'none'}; "
            f"only in {target_label}: {', '.join(only_target) or 'none'}"
        )
    for name, info in source.items():
        if set(info.columns) != set(target[name].columns):
            raise CopyRefused(
                f"the schemas differ in table {name}: source columns {', '.join(info.columns)}; "
                f"target columns {', '.join(target[name].columns)}"
            )


def _failure(what: str, exc: BaseException) -> CopyFailed:
    detail = " ".join(str(exc).split()) or type(exc).__name__
    return CopyFailed(f"{what} failed: {detail}; the target was left as it was")


def copy_database(
    source: str | Path,
    target: str | Path,
    migrations: Sequence[Migration],
    *,
    force: bool = False,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> CopyReport:
    """Copy every row of `source` into `target` and verify it (see the module docstring).
    Raises `CopyRefused` before any row is written, `CopyFailed` when a statement fails (the
    target's transaction rolled back); a verification mismatch is in the report (`ok` False)."""
    if batch_size < 1:
        raise CopyRefused("the batch size must be at least 1")
    if describe_target(source) == describe_target(target) or (
        not is_postgres_url(source)
        and not is_postgres_url(target)
        and Path(source).resolve() == Path(target).resolve()
    ):
        raise CopyRefused(
            f"the source and the target are the same database ({describe_target(source)})"
        )
    expected = _expected_versions(migrations)
    with _step(f"opening {describe_target(source)}"):
        src = open_endpoint(source, read_only=True)
    try:
        with _step(f"reading the schema versions of {src.label}"):
            _check_source_versions(src, expected)
        with _step(f"opening {describe_target(target)}"):
            dst = open_endpoint(target, read_only=False)
        try:
            with _step(f"migrating {dst.label}"):
                _check_target_versions(dst, expected)
                dst.migrate(migrations)
            return _copy(src, dst, force=force, batch_size=batch_size)
        finally:
            dst.close()
    finally:
        src.close()


def _copy(src: Endpoint, dst: Endpoint, *, force: bool, batch_size: int) -> CopyReport:
    report = CopyReport(src.label, dst.label, emptied=force)
    with _step(f"reading the tables of {src.label} and {dst.label}"):
        src.begin_snapshot()
    try:
        with _step(f"reading the tables of {src.label} and {dst.label}"):
            source_tables = {n: t for n, t in src.tables().items() if n != SCHEMA_TABLE}
            target_tables = {n: t for n, t in dst.tables().items() if n != SCHEMA_TABLE}
        _matching_tables(source_tables, target_tables, dst.label)
        order = copy_order(source_tables)
        with _step(f"starting a write transaction on {dst.label}"):
            dst.begin_write()
        try:
            # Checked under the target's write lock, so no row can arrive before the copy's.
            with _step(f"reading {dst.label}"):
                filled = [n for n in order if dst.has_rows(target_tables[n])]
            if filled and not force:
                raise CopyRefused(
                    f"{dst.label} is not empty (rows in {', '.join(filled)}): copy into an "
                    "empty database, or pass --force to empty it first"
                )
            if force:
                for name in reversed(order):  # rows that reference others go first
                    with _step(f"emptying {name} in {dst.label}"):
                        dst.delete_all(target_tables[name])
            sums = {
                name: _copy_table(src, dst, source_tables[name], target_tables[name], batch_size)
                for name in order
            }
            for name in order:
                copied = TableChecksum()
                view = _target_view(source_tables[name], target_tables[name])
                with _step(f"verifying {name} in {dst.label}"):
                    for batch in dst.rows(view, source_tables[name].columns, batch_size):
                        copied.add(batch)
                report.tables.append(
                    TableResult(
                        name, sums[name].rows, copied.rows, sums[name].hexdigest, copied.hexdigest
                    )
                )
            if report.mismatched:
                dst.rollback()
            else:
                with _step(f"committing to {dst.label}"):
                    dst.commit()
                report.committed = True
        except BaseException:
            dst.rollback()
            raise
    finally:
        src.rollback()
    return report


def _copy_table(
    src: Endpoint, dst: Endpoint, table: TableInfo, target: TableInfo, batch_size: int
) -> TableChecksum:
    """Stream one table from the source into the target, `batch_size` rows at a time; the
    checksum of what was read from the source."""
    read = TableChecksum()
    with _step(f"copying {table.name}"):
        for batch in src.rows(table, table.columns, batch_size):
            read.add(batch)
            dst.insert(target, table.columns, batch)
        dst.reset_identity(target)
    return read


def _target_view(source: TableInfo, target: TableInfo) -> TableInfo:
    """The target table read in the source's key order (its own text columns for collation)."""
    return TableInfo(
        target.name,
        target.columns,
        source.key,
        target.text_columns,
        target.parents,
        target.identity,
    )


@contextmanager
def _step(what: str) -> Iterator[None]:
    """A database error inside the block becomes a one-line `CopyFailed` naming the step (the
    caller rolls the target back)."""
    try:
        yield
    except (sqlite3.Error, psycopg.Error) as exc:
        raise _failure(what, exc) from exc


__all__ = [
    "CopyFailed",
    "CopyRefused",
    "CopyReport",
    "TableChecksum",
    "TableInfo",
    "TableResult",
    "copy_database",
    "copy_order",
    "describe_target",
    "encode_value",
]
