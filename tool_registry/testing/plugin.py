"""pytest plugin (auto-loaded via the `pytest11` entry point): `mana_kit` and `mana_mcp`
fixtures, `database_target` (each test once per backend), and `postgres_url` /
`postgres_database` / `postgres_databases` for tests that need a real PostgreSQL."""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import pytest
import pytest_asyncio

from tool_registry.testing import ToolKit, tool_kit

if TYPE_CHECKING:  # the MCP layer and psycopg are imported only when a fixture needs them
    from mana_http.testing import McpTestServer
    from tool_registry.store import Migration
    from tool_registry.testing.postgres import TemplateDatabases


@pytest_asyncio.fixture
async def mana_kit(database_target: str) -> AsyncIterator[ToolKit]:
    """A `ToolKit` over every bundled module on a fresh database of each backend (through
    `database_target`, so a test using it runs once per backend)."""
    async with tool_kit(database_target) as kit:
        yield kit


@pytest_asyncio.fixture
async def mana_mcp(mana_kit: ToolKit, tmp_path: Path) -> AsyncIterator[McpTestServer]:
    """The MCP HTTP server over `mana_kit`'s pipeline, in-process: `mana_mcp.client(user,
    space)` is an `mcp.Client` that carries that identity (a real token and the space header),
    so calls go through auth, the space check and the gate like a remote client's."""
    from mana_http.testing import McpTestServer

    async with McpTestServer(mana_kit.pipeline, tmp_path / "mcp-keys") as server:
        yield server


BACKENDS = ("sqlite", "postgres")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--mana-backend",
        choices=("both", *BACKENDS),
        default=os.environ.get("MANA_TEST_BACKEND", "both"),
        help="which database backend(s) `database_target` tests run on (env MANA_TEST_BACKEND; "
        "default both)",
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Every test that uses `database_backend` (directly or through a fixture such as
    `database_target` or `mana_kit`) runs once per backend: `test_x[sqlite]` and
    `test_x[postgres]`. The parameter is module-scoped, so a module's shared fixtures (one
    server for a module's tests) are built once per backend."""
    if "database_backend" in metafunc.fixturenames:
        chosen = metafunc.config.getoption("--mana-backend")
        backends = BACKENDS if chosen == "both" else (chosen,)
        metafunc.parametrize("database_backend", backends, indirect=True, scope="module")


@pytest.fixture(scope="module")
def database_backend(request: pytest.FixtureRequest) -> str:
    """The backend ("sqlite" or "postgres") this test and its module's shared fixtures run on."""
    backend: str = getattr(request, "param", "sqlite")
    return backend


@contextlib.contextmanager
def new_database(request: pytest.FixtureRequest, backend: str, sqlite_path: Path) -> Iterator[str]:
    """A new database for `backend`, what `open_database` and `mana --database-url` take: the
    SQLite path `sqlite_path` (no file yet), or the URL of a fresh PostgreSQL database that
    already holds the schema (`postgres_databases`' template), dropped at the block's end. For
    fixtures of any scope; `database_target` is the per-test one."""
    if backend == "sqlite":
        yield str(sqlite_path)
        return
    databases: TemplateDatabases = request.getfixturevalue("postgres_databases")
    with databases.fresh() as url:
        yield url


@pytest.fixture
def database_target(
    request: pytest.FixtureRequest, database_backend: str, tmp_path: Path
) -> Iterator[str]:
    """This test's database on its backend (see `new_database`): `tmp_path / "mana.db"` or a
    fresh PostgreSQL database."""
    with new_database(request, database_backend, tmp_path / "mana.db") as target:
        yield target


@pytest.fixture(scope="session")
def database_template_migrations() -> Sequence[Migration]:
    """The migrations, beside the core ones, that every PostgreSQL `database_target` database
    starts with. None here; an application's conftest.py overrides this fixture with its own
    (Mana's suite: the runtime's), so a test pays for a copy instead of a migration."""
    return ()


@pytest.fixture(scope="session")
def postgres_databases(
    postgres_url: str, database_template_migrations: Sequence[Migration]
) -> Iterator[TemplateDatabases]:
    """Fresh databases on the session's server, each a copy of a template migrated once with
    the core migrations plus `database_template_migrations`; the template is dropped at the
    session's end."""
    from tool_registry.store.migrations import CORE_MIGRATIONS
    from tool_registry.store.postgres import migrate
    from tool_registry.testing.postgres import TemplateDatabases

    migrations = [*CORE_MIGRATIONS, *database_template_migrations]
    databases = TemplateDatabases(postgres_url, lambda conn: migrate(conn, migrations))
    databases.start()
    try:
        yield databases
    finally:
        databases.close()


def postgres_unavailable(reason: str) -> NoReturn:
    """Skip, except under `CI=true`, where the PostgreSQL leg is mandatory."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true requires PostgreSQL for this test: {reason}", pytrace=False)
    pytest.skip(f"PostgreSQL unavailable: {reason}")


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A URL of a PostgreSQL database whose user may create databases: `MANA_TEST_DATABASE_URL`
    when set (a `postgresql://` URL), else a `ThrowawayPostgres` started once per session and
    stopped at its end. Neither: the requesting tests skip (fail under `CI=true`)."""
    from tool_registry.testing.postgres import PostgresUnavailable, ThrowawayPostgres

    given = os.environ.get("MANA_TEST_DATABASE_URL")
    if given:
        import psycopg

        try:
            psycopg.connect(given, connect_timeout=10).close()
        except psycopg.Error as exc:
            postgres_unavailable(f"MANA_TEST_DATABASE_URL does not connect: {exc}")
        yield given
        return
    server = ThrowawayPostgres()
    try:
        server.start()
    except PostgresUnavailable as exc:
        postgres_unavailable(str(exc))
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def postgres_database(postgres_url: str) -> Iterator[str]:
    """The URL of a fresh database (created from template0, uniquely named) on the session's
    server, dropped after the test, so no test sees another's tables."""
    from tool_registry.testing.postgres import temporary_database

    with temporary_database(postgres_url) as url:
        yield url
