"""The global options (`--data-dir`, `--db`, `--database-url`, `--log-level`) work before or after
the command, so `mana init --database-url URL` and `mana --database-url URL init` are the same."""

from __future__ import annotations

from pathlib import Path

import pytest

from mana_cli.main import main
from tool_registry.store.postgres import is_postgres_url


def _target_args(database_target: str) -> list[str]:
    if is_postgres_url(database_target):
        return ["--database-url", database_target]
    return ["--db", database_target]


def test_options_after_the_command_select_the_database(
    database_target: str, capsys: pytest.CaptureFixture[str]
) -> None:
    target = _target_args(database_target)
    assert main(["init", *target]) == 0
    assert (
        main(
            [
                "users",
                "create",
                "--email",
                "ada@example.test",
                "--name",
                "Ada",
                "--password",
                "correct horse battery",
                *target,
            ]
        )
        == 0
    )
    capsys.readouterr()
    assert main([*target, "users", "list"]) == 0  # before the command: the same database
    assert "ada@example.test" in capsys.readouterr().out
    assert main(["users", "list", *target]) == 0
    assert "ada@example.test" in capsys.readouterr().out


def test_an_option_after_the_command_overrides_the_one_before(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first, second = tmp_path / "first.db", tmp_path / "second.db"
    assert main(["--db", str(first), "init", "--db", str(second)]) == 0
    assert second.is_file() and not first.exists()


def test_a_bad_url_after_the_command_is_one_line_without_the_password(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = main(["init", "--database-url", "postgresql://ada:s3cret@127.0.0.1:1/nowhere"])
    err = capsys.readouterr().err
    assert code == 1
    assert err.count("\n") == 1 and "127.0.0.1:1/nowhere" in err and "s3cret" not in err
