"""The PostgreSQL test infrastructure: the session's server (throwaway or
`MANA_TEST_DATABASE_URL`), per-test databases, and the binary finder."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from mana_cli.runtime import EXTRA_MIGRATIONS
from tool_registry.store.migrations import CORE_MIGRATIONS
from tool_registry.store.postgres import migrate
from tool_registry.testing.postgres import (
    DIR_PREFIX,
    OWNER_FILE,
    PostgresNotFound,
    TemplateDatabases,
    find_pg_bindir,
    reap_stale,
    temporary_database,
)


async def test_database_takes_writes_and_reads(postgres_database: str) -> None:
    async with await psycopg.AsyncConnection.connect(postgres_database) as conn:
        assert await (await conn.execute("SELECT 1")).fetchone() == (1,)
        await conn.execute("CREATE TABLE notes (id int PRIMARY KEY, body text NOT NULL)")
        await conn.execute("INSERT INTO notes VALUES (%s, %s)", (1, "grüße"))
        await conn.commit()
    async with await psycopg.AsyncConnection.connect(postgres_database) as conn:
        cur = await conn.execute("SELECT id, body FROM notes")
        assert await cur.fetchall() == [(1, "grüße")]
        cur = await conn.execute(
            "SELECT pg_encoding_to_char(encoding) FROM pg_database "
            "WHERE datname = current_database()"
        )
        assert await cur.fetchone() == ("UTF8",)


async def test_async_pool_serves_connections(postgres_database: str) -> None:
    async with AsyncConnectionPool(postgres_database, min_size=1, max_size=2, open=False) as pool:
        await pool.wait(timeout=30)
        async with pool.connection() as a, pool.connection() as b:
            pa = await (await a.execute("SELECT pg_backend_pid()")).fetchone()
            pb = await (await b.execute("SELECT pg_backend_pid()")).fetchone()
            assert pa is not None and pb is not None and pa != pb


def test_test_databases_are_isolated(postgres_url: str) -> None:
    with temporary_database(postgres_url) as first, temporary_database(postgres_url) as second:
        assert first != second
        with psycopg.connect(first) as conn:
            conn.execute("CREATE TABLE only_here (x int)")
        with psycopg.connect(second) as conn:
            found = conn.execute("SELECT to_regclass('only_here')").fetchone()
            assert found == (None,)
    with psycopg.connect(postgres_url) as conn:
        name = first.rsplit("/", 1)[1]
        gone = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        assert gone is None


def _database_exists(admin_url: str, name: str) -> bool:
    with psycopg.connect(admin_url) as conn:
        row = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
    return row is not None


def test_fresh_databases_start_with_the_runtime_schema_and_stay_apart(
    postgres_databases: TemplateDatabases,
) -> None:
    expected = {(m.component, m.version) for m in (*CORE_MIGRATIONS, *EXTRA_MIGRATIONS)}
    with postgres_databases.fresh() as first, postgres_databases.fresh() as second:
        assert first != second
        with psycopg.connect(first) as conn:
            applied = set(conn.execute("SELECT component, version FROM schema_migrations"))
            conn.execute(
                "INSERT INTO users (id, email, name, kind, created_at, updated_at) VALUES "
                "('u1', 'a@mana.test', 'A', 'human', '2026-01-01T00:00:00.000Z', "
                "'2026-01-01T00:00:00.000Z')"
            )
        with psycopg.connect(second) as conn:
            users = conn.execute("SELECT count(*) FROM users").fetchone()
    assert applied == expected
    assert users == (0,)


def test_database_target_is_a_new_file_or_a_copy_of_the_template(
    database_target: str, database_backend: str, tmp_path: Path
) -> None:
    if database_backend == "sqlite":
        assert Path(database_target) == tmp_path / "mana.db"
        assert not Path(database_target).exists()  # created by whatever opens it
        return
    with psycopg.connect(database_target) as conn:
        found = conn.execute("SELECT count(*) FROM schema_migrations").fetchone()
    assert found == (len(CORE_MIGRATIONS) + len(EXTRA_MIGRATIONS),)


def test_template_databases_survive_a_lost_admin_connection(postgres_url: str) -> None:
    databases = TemplateDatabases(postgres_url, lambda conn: migrate(conn, CORE_MIGRATIONS))
    databases.start()
    template = databases.template
    assert template is not None
    try:
        with databases.fresh():
            pass
        with psycopg.connect(postgres_url, autocommit=True) as admin:
            killed = admin.execute(  # what a server restart does to the admin connection
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = %s",
                (databases.application_name,),
            ).fetchall()
        assert killed
        with databases.fresh() as url, psycopg.connect(url) as conn:
            assert conn.execute("SELECT count(*) FROM users").fetchone() == (0,)
    finally:
        databases.close()
    assert not _database_exists(postgres_url, template)
    assert not _database_exists(postgres_url, url.rsplit("/", 1)[1])  # dropped behind


def test_throwaway_server_listens_on_loopback_only(postgres_url: str) -> None:
    if os.environ.get("MANA_TEST_DATABASE_URL"):
        pytest.skip("MANA_TEST_DATABASE_URL: not a throwaway server")
    with psycopg.connect(postgres_url) as conn:
        row = conn.execute(
            "SELECT current_setting('listen_addresses'), host(inet_server_addr()), "
            "current_setting('unix_socket_directories'), current_setting('fsync')"
        ).fetchone()
    assert row is not None
    listen, server_addr, socket_dir, fsync = row
    assert (listen, server_addr, fsync) == ("127.0.0.1", "127.0.0.1", "off")
    assert Path(socket_dir).name.startswith(DIR_PREFIX)
    # TCP asks for the password (another local user cannot walk in on the loopback port).
    parts = urlsplit(postgres_url)
    wrong = parts._replace(netloc=f"{parts.username}:wrong@{parts.hostname}:{parts.port}")
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(urlunsplit(wrong), connect_timeout=10).close()


def _fake_bindir(
    directory: Path, names: tuple[str, ...] = ("initdb", "pg_ctl", "postgres")
) -> Path:
    directory.mkdir(parents=True)
    for name in names:
        exe = directory / name
        exe.write_text("#!/bin/sh\nexit 0\n")
        exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    return directory


def test_finder_names_what_it_searched(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(PostgresNotFound) as caught:
        find_pg_bindir(str(empty), versioned_roots=[tmp_path / "no-lib"], environ={})
    message = str(caught.value)
    assert f"PATH={empty}" in message
    assert "no pg_config on PATH" in message
    assert str(tmp_path / "no-lib") in message
    assert "apt-get install postgresql" in message


def test_finder_search_order(tmp_path: Path) -> None:
    half = _fake_bindir(tmp_path / "half", ("initdb",))  # no pg_ctl: not a server bindir
    full = _fake_bindir(tmp_path / "full")
    assert find_pg_bindir(f"{half}:{full}", versioned_roots=[], environ={}) == full

    root = tmp_path / "lib"
    for version in ("9.6", "13", "15"):
        _fake_bindir(root / version / "bin")
    assert find_pg_bindir(str(half), versioned_roots=[root], environ={}) == root / "15" / "bin"

    override = _fake_bindir(tmp_path / "override")
    env = {"MANA_PG_BINDIR": str(override)}
    assert find_pg_bindir(str(full), versioned_roots=[], environ=env) == override


def test_finder_asks_pg_config(tmp_path: Path) -> None:
    target = _fake_bindir(tmp_path / "server-bin")
    tools = tmp_path / "tools"
    tools.mkdir()
    pg_config = tools / "pg_config"
    pg_config.write_text(f"#!/bin/sh\necho {target}\n")
    pg_config.chmod(0o755)
    assert find_pg_bindir(str(tools), versioned_roots=[], environ={}) == target


def test_reaper_removes_dirs_of_dead_owners_only(tmp_path: Path) -> None:
    dead, alive, unowned = (tmp_path / f"{DIR_PREFIX}{n}" for n in ("dead", "alive", "new"))
    for directory in (dead, alive, unowned):
        directory.mkdir()
    (dead / OWNER_FILE).write_text("999999999\n")  # beyond any pid_max
    (alive / OWNER_FILE).write_text(f"{os.getpid()}\n")
    assert reap_stale(tmp_path) == [dead]
    assert not dead.exists() and alive.exists() and unowned.exists()


NO_SERVER_CONFTEST = """
import pytest

from tool_registry.testing.postgres import PostgresNotFound, ThrowawayPostgres


@pytest.fixture(autouse=True, scope="session")
def _no_binaries():
    def start(self):
        raise PostgresNotFound("no PostgreSQL server binaries (this test's stand-in)")

    ThrowawayPostgres.start = start
"""


@pytest.mark.parametrize(("ci", "exit_code", "summary"), [
    ("true", 1, "1 passed, 1 error"),
    ("", 0, "1 passed, 1 skipped"),
])  # fmt: skip
def test_the_postgres_leg_skips_without_a_server_and_fails_under_ci(
    tmp_path: Path, ci: str, exit_code: int, summary: str
) -> None:
    (tmp_path / "conftest.py").write_text(NO_SERVER_CONFTEST)
    (tmp_path / "test_both.py").write_text("def test_x(database_target):\n    pass\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MANA_", "CI"))}
    env.update({"CI": ci, "MANA_TEST_BACKEND": "both"})
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rfEs", "test_both.py"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == exit_code, done.stdout + done.stderr
    assert summary in done.stdout
    expected = "CI=true requires PostgreSQL" if ci else "PostgreSQL unavailable"
    assert expected in done.stdout and "this test's stand-in" in done.stdout


def test_a_copy_made_ahead_that_failed_is_made_again_when_asked_for(postgres_url: str) -> None:
    databases = TemplateDatabases(postgres_url, lambda conn: migrate(conn, CORE_MIGRATIONS))
    databases.start()
    template = databases.template
    assert template is not None
    template_url = urlunsplit(urlsplit(postgres_url)._replace(path="/" + template))
    try:
        with databases.fresh():
            pass
        assert databases._ahead is not None
        databases._ahead.result()  # the next copy is ready before anyone holds the template
        with psycopg.connect(template_url):  # PostgreSQL copies no template in use
            with databases.fresh():
                pass
            ahead = databases._ahead
            assert ahead is not None
            assert isinstance(ahead.exception(), psycopg.OperationalError)
        with databases.fresh() as url, psycopg.connect(url) as conn:
            assert conn.execute("SELECT count(*) FROM users").fetchone() == (0,)
    finally:
        databases.close()
    assert not _database_exists(postgres_url, template)
