"""The `mana` CLI as a user runs it: exit codes, one-line errors, JSON output."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import psycopg
import pytest

from mana_auth import KeyStore, TokenIssuer
from mana_cli.config import Settings
from mana_cli.main import main
from tests.mcp.support import (
    JSON_ACCEPT,
    MODERN_HEADERS,
    REPO,
    Installation,
    ServerProcess,
    mana_argv,
    modern_tools_list,
)


@pytest.fixture
def mana(tmp_path: Path, database_target: str, capsys: pytest.CaptureFixture[str]):  # type: ignore[no-untyped-def]
    """`mana` on this test's database (SQLite file or PostgreSQL URL), after `mana init`."""
    flags = Installation(tmp_path / "data", database_target).flags()

    def run(*argv: str) -> tuple[int, str, str]:
        code = main([*flags, *argv])
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    assert run("init")[0] == 0
    return run


def test_users_spaces_and_call(mana) -> None:  # type: ignore[no-untyped-def]
    code, out, _ = mana("users", "create", "--email", "ann@x.test", "--password", "long-enough")
    assert code == 0 and "ann@x.test" in out
    assert mana("users", "create", "--email", "bob@x.test", "--password", "long-enough")[0] == 0
    code, out, _ = mana(
        "spaces", "create", "--as", "ann@x.test", "--type", "family", "--name", "Home"
    )
    assert code == 0 and "home" in out
    code, _, err = mana(
        "spaces", "add-member", "--as", "bob@x.test", "--space", "home", "--email", "bob@x.test"
    )
    assert code == 1 and "not a member of space 'home'" in err
    assert (
        mana(
            "spaces",
            "add-member",
            "--as",
            "ann@x.test",
            "--space",
            "home",
            "--email",
            "bob@x.test",
            "--role",
            "member",
        )[0]
        == 0
    )
    code, out, _ = mana("spaces", "list", "--as", "bob@x.test")
    assert "home" in out and "member" in out

    code, out, _ = mana(
        "call",
        "notes.create",
        "--as",
        "bob@x.test",
        "--space",
        "home",
        "--args",
        '{"title": "Groceries", "body": "milk"}',
    )
    body = json.loads(out)
    assert code == 0 and body["status"] == "ok" and body["result"]["title"] == "Groceries"

    code, out, _ = mana("call", "habits.list", "--as", "bob@x.test", "--space", "home")
    body = json.loads(out)
    assert code == 1 and body["error"]["reason"] == "module-not-allowed"


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["call", "habits.list", "--as", "ann@x.test", "--args", "{bad"], "not valid JSON"),
        (["call", "habits.list", "--as", "ann@x.test", "--args", "[1]"], "must be a JSON object"),
        (
            ["call", "habits.list", "--as", "ann@x.test", "--args", "[" * 5000 + "]" * 5000],
            "nest deeper than 64 levels",
        ),
        (
            ["call", "habits.list", "--as", "ann@x.test", "--args", "[" * 100 + "]" * 100],
            "nest deeper than 64 levels",
        ),
        (["call", "habits.list", "--as", "ghost@x.test"], "no user with email ghost@x.test"),
        (["users", "create", "--email", "short@x.test", "--password", "abc"], "at least 8"),
        (
            ["spaces", "create", "--as", "ann@x.test", "--type", "castle", "--name", "X"],
            "invalid choice",
        ),
    ],
)
def test_bad_arguments_give_one_line_errors(mana, argv: list[str], needle: str) -> None:  # type: ignore[no-untyped-def]
    mana("users", "create", "--email", "ann@x.test", "--password", "long-enough")
    try:
        code, _out, err = mana(*argv)
    except SystemExit as exc:  # argparse usage errors exit 2
        code, err = int(exc.code or 0), ""
        assert code == 2
        return
    assert code != 0
    assert needle in err
    assert len(err.strip().splitlines()) == 1
    assert "Traceback" not in err


def test_tools_list_by_space_type(mana) -> None:  # type: ignore[no-untyped-def]
    code, out, _ = mana("tools", "list", "--space-type", "family")
    assert code == 0
    assert "notes.search" in out and "habits." not in out and "users.setTier" not in out


def test_tools_export_check_detects_drift(mana, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    target = tmp_path / "tools.json"
    assert mana("tools", "export", "--output", str(target))[0] == 0
    assert mana("tools", "export", "--output", str(target), "--check")[0] == 0
    target.write_text("{}\n")
    code, _, err = mana("tools", "export", "--output", str(target), "--check")
    assert code == 1 and "mana tools export" in err


def test_bad_environment_is_reported(mana, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("MANA_PORT", "99999")
    code, _, err = mana("init")
    assert code == 1 and "MANA_PORT='99999' is out of range (1-65535)" in err


@pytest.mark.parametrize(
    ("argv", "env", "needle"),
    [
        (
            ["users", "list"],
            {"MANA_LOG_LEVEL": "loud"},
            "MANA_LOG_LEVEL='loud' is not a log level (debug, info, warning, error)",
        ),
        (
            ["--log-level", "loud", "users", "list"],
            {"MANA_LOG_LEVEL": "debug"},
            "--log-level loud is not a log level (debug, info, warning, error)",
        ),
        (["run", "--port", "99999"], {}, "--port 99999 is out of range (1-65535)"),
        (["serve", "--http", "--port", "0"], {}, "--port 0 is out of range (1-65535)"),
        (["serve", "--http"], {"MANA_HOST": "my box"}, "MANA_HOST='my box' is not an IP"),
        (["users", "list"], {"MANA_ENV": "prod"}, "MANA_ENV='prod' is not an environment"),
        (
            ["users", "list"],
            {"MANA_SESSIONS_PER_USER": "many"},
            "MANA_SESSIONS_PER_USER='many' is not an integer",
        ),
    ],
)
def test_config_errors_name_the_flag_or_variable(  # type: ignore[no-untyped-def]
    mana, monkeypatch: pytest.MonkeyPatch, argv: list[str], env: dict[str, str], needle: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    code, _out, err = mana(*argv)
    assert code == 1 and needle in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_log_level_flag_beats_environment_beats_default() -> None:
    assert Settings.load({}, {}).log_level == "INFO"
    assert Settings.load({}, {}, default_log_level="WARNING").log_level == "WARNING"
    assert Settings.load({}, {"MANA_LOG_LEVEL": "debug"}).log_level == "DEBUG"
    both = Settings.load({"log_level": "error"}, {"MANA_LOG_LEVEL": "debug"})
    assert both.log_level == "ERROR"


COMMANDS_ON_EXISTING_DATA = [
    ["users", "list"],
    ["users", "create", "--email", "ann@x.test", "--password", "long-enough"],
    ["spaces", "list", "--as", "ann@x.test"],
    ["call", "habits.list", "--as", "ann@x.test"],
    ["seed", "demo"],
    ["token", "issue", "--as", "ann@x.test", "--password", "long-enough"],
    ["serve", "--stdio", "--as", "ann@x.test"],
    ["serve", "--http", "--port", "3999"],
    ["daemon", "--once", "--llm", "scripted:examples/mission-demo.json"],
    ["agents", "list", "--as", "ann@x.test"],
    ["personas", "list"],
]


@pytest.mark.parametrize("argv", COMMANDS_ON_EXISTING_DATA)
def test_a_missing_database_is_never_created(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    data_dir = tmp_path / "typo"
    code = main(["--data-dir", str(data_dir), *argv])
    err = capsys.readouterr().err
    assert code == 1
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    message = err if err.startswith("mana: error:") else json.loads(err)["event"]
    assert str(data_dir / "mana.db") in message
    assert "mana init" in message and "--data-dir" in message
    assert not data_dir.exists()


def test_init_and_run_may_create_the_database(tmp_path: Path) -> None:
    data_dir = tmp_path / "fresh"
    assert main(["--data-dir", str(data_dir), "init"]) == 0
    assert (data_dir / "mana.db").is_file()


# -- PostgreSQL: the same contracts for a URL ----------------------------------------------------


@pytest.mark.parametrize("argv", COMMANDS_ON_EXISTING_DATA)
def test_an_uninitialised_postgres_database_is_refused_in_one_line(
    postgres_database: str, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    code = main(["--database-url", postgres_database, *argv])
    err = capsys.readouterr().err
    assert code == 1
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    parts = urlsplit(postgres_database)
    assert f"{parts.hostname}:{parts.port}{parts.path}" in err
    assert "not initialised" in err and "mana init" in err
    assert parts.password is not None and parts.password not in err
    with psycopg.connect(postgres_database) as conn:  # nothing was created on the way
        assert conn.execute("SELECT to_regclass('schema_migrations')").fetchone() == (None,)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.mark.parametrize("argv", [["init"], ["users", "list"], ["serve", "--http"]])
def test_an_unreachable_postgres_url_is_one_line_naming_host_and_database(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, argv: list[str]
) -> None:
    port = _closed_port()  # nothing listens there
    monkeypatch.setenv("MANA_DATABASE_URL", f"postgresql://mana:s3cret-pw@127.0.0.1:{port}/shop")
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 1
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert f"127.0.0.1:{port}/shop" in err
    assert "s3cret-pw" not in err


def test_a_missing_postgres_database_is_one_line_without_the_password(
    postgres_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    parts = urlsplit(postgres_url)
    missing = urlunsplit(parts._replace(path="/no_such_database"))
    code = main(["--database-url", missing, "init"])
    err = capsys.readouterr().err
    assert code == 1
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert f"{parts.hostname}:{parts.port}/no_such_database" in err
    assert parts.password is not None and parts.password not in err


def test_init_then_serve_http_on_a_postgres_url(postgres_database: str, tmp_path: Path) -> None:
    """`mana init --database-url URL`, then `mana serve --http` on the same URL serves MCP."""
    installation = Installation(tmp_path / "data", postgres_database)
    init = subprocess.run(
        [*mana_argv(installation.data_dir, "init")],
        cwd=REPO,
        env=installation.env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert init.returncode == 0, init.stderr
    assert "initialised postgresql://" in init.stdout
    password = urlsplit(postgres_database).password
    assert password is not None and password not in init.stdout + init.stderr
    create = subprocess.run(
        mana_argv(installation.data_dir, "users", "create", "--email", "ann@x.test"),
        cwd=REPO,
        env=installation.env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert create.returncode == 0, create.stderr
    server = ServerProcess(installation)
    try:
        server.wait_ready()
        health = httpx.get(f"{server.url}/health", timeout=30)
        ann = asyncio.run(_user_id(installation, "ann@x.test"))
        issuer = TokenIssuer(KeyStore(installation.data_dir))
        token = issuer.issue(ann, email="ann@x.test", ttl=timedelta(minutes=5)).token
        listed = httpx.post(
            server.mcp_url,
            json=modern_tools_list(),
            headers={**MODERN_HEADERS, **JSON_ACCEPT, "Authorization": f"Bearer {token}"},
            timeout=30,
        )
    finally:
        assert server.stop() == 0, server.stderr()
    assert health.status_code == 200 and health.json() == {"status": "ok", "database": "ok"}
    assert listed.status_code == 200, listed.text
    assert "habits.create" in {t["name"] for t in listed.json()["result"]["tools"]}


async def _user_id(installation: Installation, email: str) -> str:
    ((user_id,),) = await installation.query("SELECT id FROM users WHERE email = ?", email)
    return str(user_id)
