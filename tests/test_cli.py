"""The `mana` CLI as a user runs it: exit codes, one-line errors, JSON output."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mana_cli.main import main


@pytest.fixture
def mana(tmp_path: Path, capsys: pytest.CaptureFixture[str]):  # type: ignore[no-untyped-def]
    db = tmp_path / "cli.db"

    def run(*argv: str) -> tuple[int, str, str]:
        code = main(["--db", str(db), *argv])
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


def test_users_spaces_and_call(mana) -> None:  # type: ignore[no-untyped-def]
    assert mana("init")[0] == 0
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
    assert code == 1 and "not an owner or admin" in err
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
    assert code == 1 and "MANA_PORT must be between 1 and 65535" in err
