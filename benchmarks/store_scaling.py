"""Does a space's read cost depend on the rest of the database? (It must not.)

Measures `notes.search` and `habits.list` through the pipeline in a space holding 100 notes and
100 habits, first when the database holds only that space, then when it also holds
OTHER_ROWS rows in OTHER_SPACES other spaces. Prints the big/small ratio per tool (goal ≤ 1.5)
and the per-call cost of the pipeline over a direct store read, measured in the same run.

    .venv/bin/python benchmarks/store_scaling.py              # 1,000,000 rows in 10,000 spaces
    .venv/bin/python benchmarks/store_scaling.py --other-rows 100000 --other-spaces 1000
    .venv/bin/python benchmarks/store_scaling.py --backend postgres

`--backend postgres` starts a throwaway PostgreSQL server (tool_registry.testing.postgres) and
measures on two fresh databases of it; the other rows are generated inside the server (one
INSERT ... SELECT over generate_series, then ANALYZE), not sent a row at a time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

from tool_registry.clock import SystemClock, iso
from tool_registry.context import CallContext
from tool_registry.logging import configure_logging
from tool_registry.modules import build_registry
from tool_registry.pipeline import Pipeline
from tool_registry.store import Accounts, ScopedStore, open_database
from tool_registry.store.records import ReadRunner

ROWS_IN_SPACE = 100


async def _fill_target(pipeline: Pipeline) -> tuple[str, str]:
    user = await pipeline.accounts.create_user("bench@mana.test")
    for i in range(ROWS_IN_SPACE):
        for tool, args in (
            ("notes.create", {"title": f"Alpha note {i}", "body": f"body {i}"}),
            ("habits.create", {"name": f"Habit {i}"}),
        ):
            out = await pipeline.invoke(tool, args, CallContext(user_id=user.id))
            assert out.ok, out.public()
    space = await pipeline.accounts.personal_space(user.id)
    return user.id, space.id


def _bulk_other_spaces(path: Path, rows: int, spaces: int) -> None:
    """Insert other users' spaces and rows straight through SQLite (fast, same schema)."""
    import sqlite3

    conn = sqlite3.connect(path)
    now = iso(SystemClock().now())
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO users (id, email, name, kind, tier, created_at, updated_at) "
        "VALUES (?, ?, ?, 'human', 'free', ?, ?)",
        ((f"usr_o{i}", f"other{i}@bench.test", f"Other {i}", now, now) for i in range(spaces)),
    )
    conn.executemany(
        "INSERT INTO spaces (id, slug, name, type, created_by, created_at) "
        "VALUES (?, ?, ?, 'personal', ?, ?)",
        ((f"spc_o{i}", f"other-{i}", f"Other {i}", f"usr_o{i}", now) for i in range(spaces)),
    )
    conn.executemany(
        "INSERT INTO memberships (space_id, user_id, role, created_at) VALUES (?, ?, 'owner', ?)",
        ((f"spc_o{i}", f"usr_o{i}", now) for i in range(spaces)),
    )
    per_space = rows // spaces

    shapes = [_other_record(r, now) for r in range(per_space)]

    def records() -> Any:
        for s in range(spaces):
            for r, (collection, data, field_ts) in enumerate(shapes):
                yield (
                    f"rec_o{s}_{r}",
                    f"spc_o{s}",
                    collection,
                    f"usr_o{s}",
                    data,
                    field_ts,
                    now,
                    now,
                )

    conn.executemany(
        "INSERT INTO records (id, space_id, collection, author_id, data, field_updated_at, "
        "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        records(),
    )
    conn.execute("COMMIT")
    conn.execute("ANALYZE")
    conn.close()


def _other_record(r: int, now: str) -> tuple[str, str, str]:
    """(collection, data JSON, field timestamps JSON) of the r-th row of every other space."""
    data: dict[str, Any]
    if r % 2:
        collection = "notes"
        data = {"title": f"Alpha other {r}", "body": "alpha alpha", "tags": []}
    else:
        collection = "habits"
        data = {
            "name": f"H{r}",
            "frequency": "daily",
            "targetPerPeriod": 1,
            "archived": False,
            "description": None,
            "color": None,
        }
    return collection, json.dumps(data), json.dumps({k: now for k in data})


def _bulk_other_spaces_pg(url: str, rows: int, spaces: int) -> None:
    """The same rows as `_bulk_other_spaces`, generated inside PostgreSQL: users, spaces and
    memberships from generate_series, records as spaces x the per-space row shapes (passed once
    as arrays), all in one transaction; then ANALYZE."""
    import psycopg

    now = iso(SystemClock().now())
    per_space = rows // spaces
    shapes = [_other_record(r, now) for r in range(per_space)]
    last = spaces - 1
    with psycopg.connect(url) as conn:
        conn.execute(
            "INSERT INTO users (id, email, name, kind, tier, created_at, updated_at) "
            "SELECT 'usr_o' || i, 'other' || i || '@bench.test', 'Other ' || i, 'human', "
            "'free', %s, %s FROM generate_series(0, %s) AS i",
            (now, now, last),
        )
        conn.execute(
            "INSERT INTO spaces (id, slug, name, type, created_by, created_at) "
            "SELECT 'spc_o' || i, 'other-' || i, 'Other ' || i, 'personal', 'usr_o' || i, %s "
            "FROM generate_series(0, %s) AS i",
            (now, last),
        )
        conn.execute(
            "INSERT INTO memberships (space_id, user_id, role, created_at) "
            "SELECT 'spc_o' || i, 'usr_o' || i, 'owner', %s FROM generate_series(0, %s) AS i",
            (now, last),
        )
        conn.execute(
            "INSERT INTO records (id, space_id, collection, author_id, data, field_updated_at, "
            "created_at, updated_at) "
            "SELECT 'rec_o' || s || '_' || t.r, 'spc_o' || s, t.collection, 'usr_o' || s, "
            "t.data, t.field_ts, %s, %s "
            "FROM generate_series(0, %s) AS s CROSS JOIN "
            "unnest(%s::int[], %s::text[], %s::text[], %s::text[]) AS t(r, collection, data, "
            "field_ts)",
            (
                now,
                now,
                last,
                list(range(per_space)),
                [c for c, _, _ in shapes],
                [d for _, d, _ in shapes],
                [f for _, _, f in shapes],
            ),
        )
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("ANALYZE")


async def _time(fn: Callable[[], Awaitable[Any]], n: int) -> float:
    for _ in range(20):
        await fn()
    samples = []
    for _ in range(n):
        t0 = time.perf_counter()
        await fn()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples) * 1e6


async def _measure(target: str, other_rows: int, other_spaces: int, n: int) -> dict[str, float]:
    """Per-call medians in the database at `target` (a SQLite path or a PostgreSQL URL)."""
    db = await open_database(target)
    pipeline = Pipeline(build_registry(), db)
    user_id, space_id = await _fill_target(pipeline)
    await pipeline.aclose()
    await db.close()
    if other_rows:
        t0 = time.perf_counter()
        if db.dialect == "postgres":
            _bulk_other_spaces_pg(target, other_rows, other_spaces)
        else:
            _bulk_other_spaces(Path(target), other_rows, other_spaces)
        print(
            f"  inserted {other_rows:,} rows in {other_spaces:,} other spaces "
            f"({time.perf_counter() - t0:.1f} s)"
        )
    db = await open_database(target)
    pipeline = Pipeline(build_registry(), db)
    accounts = Accounts(db)
    access = await accounts.access(user_id, space_id)
    assert access is not None
    store = ScopedStore(
        ReadRunner(db), user_id=user_id, access=access, clock=SystemClock(), writable=False
    )
    call = CallContext(user_id=user_id, space=space_id)

    async def search() -> None:
        out = await pipeline.invoke("notes.search", {"query": "alpha", "limit": 10}, call)
        assert out.ok and out.result is not None

    async def habits() -> None:
        out = await pipeline.invoke("habits.list", {}, call)
        assert out.ok and out.result is not None and len(out.result["habits"]) == ROWS_IN_SPACE

    async def direct() -> None:
        assert len(await store.list("habits")) == ROWS_IN_SPACE

    result = {
        "notes.search": await _time(search, n),
        "habits.list": await _time(habits, n),
        "direct store read (habits)": await _time(direct, n),
    }
    await pipeline.aclose()
    await db.close()
    return result


@contextlib.contextmanager
def _targets(backend: str) -> Iterator[tuple[str, str]]:
    """Where the small and the big database live: two files in a temp dir, or two fresh
    databases on a throwaway PostgreSQL server (stopped afterwards)."""
    if backend == "sqlite":
        with tempfile.TemporaryDirectory() as tmp:
            yield str(Path(tmp) / "small.db"), str(Path(tmp) / "big.db")
        return
    from tool_registry.testing.postgres import ThrowawayPostgres, temporary_database

    with (
        ThrowawayPostgres() as pg,
        temporary_database(pg.admin_url, prefix="bench_small") as small,
        temporary_database(pg.admin_url, prefix="bench_big") as big,
    ):
        yield small, big


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--other-rows", type=int, default=1_000_000)
    parser.add_argument("--other-spaces", type=int, default=10_000)
    parser.add_argument("-n", type=int, default=300, help="timed calls per measurement")
    parser.add_argument("--backend", choices=("sqlite", "postgres"), default="sqlite")
    args = parser.parse_args()
    configure_logging("WARNING")
    print(f"backend: {args.backend}")
    with _targets(args.backend) as (small_db, big_db):
        print(f"small database: one space with {ROWS_IN_SPACE} notes and {ROWS_IN_SPACE} habits")
        small = await _measure(small_db, 0, 0, args.n)
        print(f"big database: the same space plus {args.other_rows:,} rows")
        big = await _measure(big_db, args.other_rows, args.other_spaces, args.n)
    print()
    print(f"{'median µs per call':32} {'small db':>10} {'big db':>10} {'big/small':>10}")
    for key in small:
        print(f"{key:32} {small[key]:10.0f} {big[key]:10.0f} {big[key] / small[key]:10.2f}")
    overhead = small["habits.list"] - small["direct store read (habits)"]
    print(
        f"\npipeline cost over a direct store read (habits.list, small db): {overhead:.0f} µs "
        f"per call ({small['habits.list'] / small['direct store read (habits)']:.2f}x)"
    )


if __name__ == "__main__":
    asyncio.run(main())
