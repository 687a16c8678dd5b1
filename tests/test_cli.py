"""The `mana` CLI as a user runs it: exit codes, one-line errors, JSON output."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mana_cli.config import Settings
from mana_cli.main import main


@pytest.fixture
def mana(tmp_path: Path, capsys: pytest.CaptureFixture[str]):  # type: ignore[no-untyped-def]
    db = tmp_path / "cli.db"

    def run(*argv: str) -> tuple[int, str, str]:
        code = main(["--db", str(db), *argv])
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


@pytest.mark.parametrize(
    "argv",
    [
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
    ],
)
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
