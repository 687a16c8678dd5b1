"""`mana db copy`: a realistic install moves SQLite → PostgreSQL → SQLite with every row intact
(compared from the outside, not with the copy's own checksums); a non-empty target is refused
unless `--force`; an unreachable URL is one line; a row altered on the way is caught and the
copy rolled back; a source at other schema versions is refused."""

from __future__ import annotations

import asyncio
import hashlib
import socket
import sqlite3
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from mana_cli.config import Settings
from mana_cli.demo import DEMO_EMAIL, seed_demo
from mana_cli.main import main
from mana_cli.runtime import EXTRA_MIGRATIONS, open_runtime
from personas.catalog import load_catalog
from personas.passwords import DEVELOPMENT_SECRET, PersonaSecret
from personas.seed import Seeder
from personas.store import FAILED_RATING, PersonaStore
from tests.missions.helpers import HOURLY, call, open_world, scripted, turn
from tool_registry.clock import SystemClock
from tool_registry.modules import build_registry
from tool_registry.store import open_database
from tool_registry.store.copy import TableChecksum, copy_order, encode_value
from tool_registry.store.copy import TableInfo as CopyTable
from tool_registry.store.postgres import is_postgres_url

# Tables a realistic install fills (a table added later is still copied and compared, but the
# seed below does not promise it rows).
SEEDED_TABLES = {
    "agents",
    "audit_log",
    "idempotency_keys",
    "iterations",
    "memberships",
    "mission_skips",
    "missions",
    "persona_actions",
    "persona_feedback",
    "persona_ticks",
    "personas",
    "proposals",
    "records",
    "space_destructive_allowlist",
    "space_policy_audit",
    "spaces",
    "users",
}
# Text that a careless copy would mangle: quotes, placeholders, percent signs, non-BMP
# characters, a NUL-free control character, and a float that needs all its digits.
AWKWARD = 'it\'s 100% ? "quoted" — Grüße 🌱\t(tab)'
AWKWARD_LATENCY = 0.1 + 0.2


async def _seed(path: Path) -> None:
    """Every kind of row an install has: the demo (users, spaces, records, audit, idempotency
    keys, rate-limit rows), personas with ticks, actions and ratings, agents, missions,
    iterations, a proposal, a skipped window, and a destructive-tool allowlist change."""
    settings = Settings.load({"db": str(path)}, environ={})
    async with open_runtime(settings, create=True) as rt:
        await seed_demo(rt)
        demo = await rt.accounts.require_user(DEMO_EMAIL)
        personal = await rt.accounts.personal_space(demo.id)
        from tool_registry.context import CallContext

        out = await rt.pipeline.invoke(
            "notes.create",
            {"title": AWKWARD, "body": AWKWARD * 3},
            CallContext(user_id=demo.id, space=personal.id),
        )
        assert out.ok, out.public()
        registry = build_registry()
        secret = PersonaSecret(DEVELOPMENT_SECRET.encode(), "development")
        await Seeder(rt.db, rt.accounts, secret, SystemClock()).seed(load_catalog(registry))
        store = PersonaStore(rt.db)
        maya = await rt.accounts.require_user("maya.chen@mana.test")
        now = store.clock.now()
        await store.start_tick("tick-1", maya.id, space_id=personal.id, focus_module="notes")
        for i, (tool, result) in enumerate([("notes.create", "ok"), ("todo.list", "error")]):
            await store.record_action(
                tick="tick-1",
                persona_id=maya.id,
                persona_email=maya.email,
                call_index=i,
                space_id=None,
                tool=tool,
                input_hash=f"hash-{i}",
                result=result,  # type: ignore[arg-type]
                error_message=AWKWARD if result == "error" else None,
                latency_ms=AWKWARD_LATENCY * (i + 1),
                at=now - timedelta(minutes=i),
            )
        await store.record_feedback(
            tick="tick-1",
            persona_id=maya.id,
            persona_email=maya.email,
            ratings={"notes": (4, AWKWARD), FAILED_RATING: (None, None)},
            at=now,
        )
        await store.finish_tick("tick-1", maya.id, status="ok", calls=2, input_tokens=10)

    async with open_world(path) as world:
        owner = await world.user("owner@copy.test")
        admin = await world.user("admin@copy.test")
        team = await world.pipeline.accounts.create_space(owner.id, type_="team", name="Team")
        await world.pipeline.accounts.add_member(team.id, admin.id, "admin")
        await world.allowlist.allow(
            owner.id, team.id, world.allowlist.destructive_tools()[:1], acknowledge=True
        )
        # A shared space's write is proposed, not run: an iteration and a pending proposal.
        agent = await world.agent(owner, team)
        mission = await world.mission(owner, team, agent)
        llm = scripted([turn("Note.", call("notes.create", title=AWKWARD)), turn("ok")])
        await world.runner(llm).run_now(team.id, mission.id)
        # An agent over its token budget: the next due window is skipped and recorded.
        space = await world.personal(owner)
        thrifty = await world.agent(owner, space, name="thrifty", max_tokens_per_day=500)
        hourly = await world.mission(owner, space, thrifty, cadence=HOURLY)
        await world.make_due(hourly.id)
        await world.daemon(scripted([turn("Busy.", usage=(400, 200))])).run_once()
        world.clock.advance(hours=1)
        await world.daemon(scripted([turn("Busy.")])).run_once()


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One seeded SQLite install, shared by the tests of this module (none writes to it)."""
    path = tmp_path_factory.mktemp("copy-source") / "mana.db"
    asyncio.run(_seed(path))
    return path


# -- reading a database from the outside ---------------------------------------------------------


def _typed(row: Any) -> tuple[tuple[str, Any], ...]:
    # 1 == 1.0 == True in Python: keep the type, so an int that became a float is a difference.
    return tuple((type(v).__name__, v) for v in row)


def contents(target: str | Path) -> dict[str, list[tuple[tuple[str, Any], ...]]]:
    """Every row of every table, by table, sorted; `schema_migrations` without its timestamps
    (each database records when it applied a step)."""
    out: dict[str, list[tuple[tuple[str, Any], ...]]] = {}
    if is_postgres_url(target):
        with psycopg.connect(str(target)) as pg:
            tables = [
                r[0]
                for r in pg.execute(
                    "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
                )
            ]
            for table in tables:
                cols = "component, version, name" if table == "schema_migrations" else "*"
                rows = pg.execute(f'SELECT {cols} FROM "{table}"').fetchall()  # noqa: S608
                out[table] = sorted((_typed(r) for r in rows), key=repr)
        return out
    conn = sqlite3.connect(target)
    try:
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            )
        ]
        for table in tables:
            cols = "component, version, name" if table == "schema_migrations" else "*"
            rows = conn.execute(f'SELECT {cols} FROM "{table}"').fetchall()  # noqa: S608
            out[table] = sorted((_typed(r) for r in rows), key=repr)
    finally:
        conn.close()
    return out


def execute(target: str | Path, *statements: str) -> None:
    """Run statements on a database from outside Mana (as an operator or attacker would)."""
    if is_postgres_url(target):
        with psycopg.connect(str(target), autocommit=True) as pg:
            for statement in statements:
                pg.execute(statement)
        return
    conn = sqlite3.connect(target, isolation_level=None)
    try:
        for statement in statements:
            conn.execute(statement)
    finally:
        conn.close()


def state(target: str) -> dict[str, list[tuple[tuple[str, Any], ...]]] | None:
    """The database's rows, or None when there is no SQLite file (yet)."""
    if not is_postgres_url(target) and not Path(target).exists():
        return None
    return contents(target)


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def mana_copy(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["db", "copy", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def empty_schema(target: str) -> None:
    """The runtime's schema and no rows, as `mana db copy` would make it."""

    async def make() -> None:
        db = await open_database(target, EXTRA_MIGRATIONS)
        await db.close()

    asyncio.run(make())


# -- the round trip ------------------------------------------------------------------------------


def test_the_source_install_has_rows_in_every_table(source: Path) -> None:
    found = contents(source)
    assert set(found) >= SEEDED_TABLES
    assert sorted(t for t in SEEDED_TABLES if not found[t]) == []


def test_sqlite_to_postgres_and_back_keeps_every_row(
    source: Path, postgres_database: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    original = contents(source)
    before = file_digest(source)

    code, out, err = mana_copy(
        capsys, "--from", str(source), "--to", postgres_database, "--batch-size", "3"
    )
    assert code == 0, err
    assert contents(postgres_database) == original
    assert file_digest(source) == before  # the source was only read
    lines = out.splitlines()
    assert lines[0].split() == ["table", "source", "rows", "target", "rows", "checksum"]
    table_lines = {line.split()[0]: line.split() for line in lines[1:-1]}
    assert set(table_lines) == set(original) - {"schema_migrations"}
    for name, (_, rows, copied, verdict) in table_lines.items():
        assert int(rows) == int(copied) == len(original[name]) and verdict == "match"
    assert "every table verified" in lines[-1]
    assert "postgresql://127.0.0.1" in lines[-1]
    password = psycopg.conninfo.conninfo_to_dict(postgres_database).get("password")
    assert password and str(password) not in out

    back = tmp_path / "back" / "mana.db"
    code, out, err = mana_copy(capsys, "--from", postgres_database, "--to", str(back))
    assert code == 0, err
    assert contents(back) == original


def test_identity_columns_continue_after_the_copied_ids(
    source: Path, postgres_database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert mana_copy(capsys, "--from", str(source), "--to", postgres_database)[0] == 0
    with psycopg.connect(postgres_database) as pg:
        largest = pg.execute("SELECT max(id) FROM audit_log").fetchone()
        row = pg.execute(
            "INSERT INTO audit_log (at, request_id, tool, invoker, outcome, latency_ms) "
            "VALUES ('2026-01-01T00:00:00.000Z', 'req', 't.x', 'cli', 'ok', 1.0) "
            "RETURNING id"
        ).fetchone()
    assert largest is not None and largest[0] is not None
    assert row is not None and row[0] == largest[0] + 1


def test_a_non_empty_target_is_refused_unless_forced(
    source: Path, database_target: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert mana_copy(capsys, "--from", str(source), "--to", database_target)[0] == 0
    execute(
        database_target,
        "INSERT INTO users (id, email, name, kind, tier, password_hash, created_at, updated_at) "
        "VALUES ('usr_extra', 'extra@copy.test', 'Extra', 'human', 'free', NULL, "
        "'2026-01-01T00:00:00.000Z', '2026-01-01T00:00:00.000Z')",
    )
    tampered = contents(database_target)

    code, out, err = mana_copy(capsys, "--from", str(source), "--to", database_target)
    assert code == 1 and out == ""
    assert len(err.strip().splitlines()) == 1
    assert "is not empty" in err and "users" in err and "--force" in err
    assert contents(database_target) == tampered

    code, out, err = mana_copy(capsys, "--from", str(source), "--to", database_target, "--force")
    assert code == 0, err
    assert contents(database_target) == contents(source)  # the extra user is gone


def test_a_row_altered_on_the_way_fails_verification_and_rolls_back(
    source: Path, database_target: str, capsys: pytest.CaptureFixture[str]
) -> None:
    empty_schema(database_target)
    if is_postgres_url(database_target):
        execute(
            database_target,
            "CREATE FUNCTION tamper() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN NEW.name := NEW.name || ' (changed)'; RETURN NEW; END $$",
            f"CREATE TRIGGER tamper BEFORE INSERT ON users FOR EACH ROW "
            f"WHEN (NEW.email = '{DEMO_EMAIL}') EXECUTE FUNCTION tamper()",
        )
    else:
        execute(
            database_target,
            f"CREATE TRIGGER tamper AFTER INSERT ON users WHEN NEW.email = '{DEMO_EMAIL}' "  # noqa: S608
            "BEGIN UPDATE users SET name = name || ' (changed)' WHERE id = NEW.id; END",
        )
    before = contents(database_target)

    code, out, _ = mana_copy(capsys, "--from", str(source), "--to", database_target)
    assert code == 1, out
    verdicts = {line.split()[0]: line.split()[-1] for line in out.splitlines()[1:-1]}
    assert verdicts.pop("users") == "MISMATCH"
    assert set(verdicts.values()) == {"match"}
    assert out.splitlines()[-1].startswith("verification failed for users")
    assert contents(database_target) == before  # rolled back: still no rows


def test_sqlite_to_sqlite(source: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "copy.db"
    code, _, err = mana_copy(capsys, "--from", str(source), "--to", str(target))
    assert code == 0, err
    assert contents(target) == contents(source)
    same = mana_copy(capsys, "--from", str(source), "--to", str(source))
    assert same[0] == 1 and "the same database" in same[2]


def test_an_unreachable_url_is_one_line_naming_host_and_database(
    source: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once closed
    url = f"postgresql://mana:s3cret-pw@127.0.0.1:{port}/nowhere"
    for argv in (("--from", str(source), "--to", url), ("--from", url, "--to", str(source))):
        code, out, err = mana_copy(capsys, *argv)
        assert code == 1 and out == ""
        assert len(err.strip().splitlines()) == 1
        assert f"127.0.0.1:{port}/nowhere" in err
        assert "s3cret-pw" not in err


def test_a_source_at_other_schema_versions_is_refused(
    tmp_path: Path, database_target: str, capsys: pytest.CaptureFixture[str]
) -> None:
    older = tmp_path / "older.db"

    async def core_only() -> None:
        db = await open_database(older, ())
        await db.close()

    asyncio.run(core_only())
    before = state(database_target)
    code, _, err = mana_copy(capsys, "--from", str(older), "--to", database_target)
    assert code == 1 and len(err.strip().splitlines()) == 1
    assert "lacks schema versions" in err and "personas:1" in err
    assert state(database_target) == before

    newer = tmp_path / "newer.db"
    empty_schema(str(newer))
    execute(
        newer, "INSERT INTO schema_migrations (component, version, name) VALUES ('later', 1, 'x')"
    )
    code, _, err = mana_copy(capsys, "--from", str(newer), "--to", database_target)
    assert code == 1 and "does not know (later:1)" in err
    assert state(database_target) == before


# -- the parts -----------------------------------------------------------------------------------


def test_values_encode_distinctly() -> None:
    values = [None, 0, 0.0, "", "0", b"0", 1, True, "None", 1.5, "1.5"]
    encoded = [encode_value(v) for v in values]
    assert encode_value(True) == encode_value(1)  # PostgreSQL booleans are stored as 0/1 here
    assert len(set(encoded)) == len(values) - 1
    a, b = TableChecksum(), TableChecksum()
    a.add([("ab", "c")])
    b.add([("a", "bc")])
    assert a.hexdigest != b.hexdigest


def test_copy_order_puts_referenced_tables_first() -> None:
    def table(name: str, *parents: str) -> CopyTable:
        return CopyTable(name, ("id",), ("id",), frozenset(), frozenset(parents))

    tables = {
        t.name: t
        for t in (
            table("records", "spaces"),
            table("spaces", "users"),
            table("users"),
            table("tree", "tree", "users"),  # a self-reference does not block
        )
    }
    assert copy_order(tables) == ["users", "spaces", "tree", "records"]


def test_a_file_that_is_not_a_database_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not a database at all " * 100)
    code, out, err = mana_copy(capsys, "--from", str(junk), "--to", str(tmp_path / "t.db"))
    assert code == 1 and out == "" and len(err.strip().splitlines()) == 1
    assert str(junk) in err and "not a database" in err
