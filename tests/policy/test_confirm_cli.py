"""`mana policy destructive deny|confirm|allow`: owners and admins set the mode, `allow` needs
--acknowledge, `mana policy show` shows it, `mana policy audit` lists each change, and the
mode reaches the gate of the composition root (a `mana call` in `confirm` cannot be asked and
is denied with the reminder)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from mana_cli.main import main
from tests.mcp.support import Installation

OWNER = "owner@confirm.test"
MEMBER = "member@confirm.test"

Run = Callable[..., tuple[int, str, str]]


@pytest.fixture
def mana(tmp_path: Path, database_target: str, capsys: pytest.CaptureFixture[str]) -> Run:
    flags = Installation(tmp_path / "data", database_target).flags()

    def run(*argv: str) -> tuple[int, str, str]:
        code = main([*flags, *argv])
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    assert run("init")[0] == 0
    assert run("users", "create", "--email", OWNER)[0] == 0
    assert run("users", "create", "--email", MEMBER)[0] == 0
    assert run("spaces", "create", "--as", OWNER, "--type", "team", "--name", "Crew",
               "--slug", "crew")[0] == 0  # fmt: skip
    assert run("spaces", "add-member", "--as", OWNER, "--space", "crew", "--email",
               MEMBER)[0] == 0  # fmt: skip
    return run


def test_owners_set_the_mode_and_every_change_is_audited(mana: Run) -> None:
    code, out, _ = mana("policy", "show", "--space", "crew", "--as", MEMBER)
    assert code == 0 and "destructive mode: deny" in out

    code, _, err = mana("policy", "destructive", "confirm", "--space", "crew", "--as", MEMBER)
    assert code != 0 and "owner or an admin" in err

    code, out, _ = mana("policy", "destructive", "confirm", "--space", "crew", "--as", OWNER)
    assert code == 0 and "destructive mode of crew: deny -> confirm" in out
    code, out, _ = mana("policy", "destructive", "confirm", "--space", "crew", "--as", OWNER)
    assert code == 0 and "already confirm" in out

    code, _, err = mana("policy", "destructive", "allow", "--space", "crew", "--as", OWNER)
    assert code != 0 and "--acknowledge" in err
    code, out, _ = mana("policy", "destructive", "allow", "--space", "crew", "--as", OWNER,
                        "--acknowledge")  # fmt: skip
    assert code == 0 and "confirm -> allow" in out

    code, out, _ = mana("policy", "show", "--space", "crew", "--as", MEMBER)
    assert "destructive mode: allow" in out

    code, out, _ = mana("policy", "audit", "--space", "crew", "--as", MEMBER)
    assert code == 0
    rows = [line.split() for line in out.splitlines()[1:]]
    # Newest first; the unchanged repeat and the refused attempts left no row.
    assert [(r[1], r[2], r[3], r[4]) for r in rows] == [
        ("destructive-mode", "(mode", "allow)", OWNER),
        ("destructive-mode", "(mode", "confirm)", OWNER),
    ]


def test_a_cli_call_in_a_confirm_space_is_denied_with_the_reminder(mana: Run) -> None:
    assert mana("policy", "destructive", "confirm", "--space", "crew", "--as", OWNER)[0] == 0
    code, out, _ = mana("call", "notes.create", "--args", '{"title": "Plan"}', "--space", "crew",
                        "--as", OWNER)  # fmt: skip
    assert code == 0, out
    note = json.loads(out)["result"]["id"]
    code, out, _ = mana("call", "notes.delete", "--args", json.dumps({"id": note}), "--space", "crew",
                        "--as", OWNER)  # fmt: skip
    body = json.loads(out)
    assert body["status"] == "denied"
    assert body["error"]["reason"] == "destructive-not-allowed"
    assert "asks the user to confirm notes.delete" in body["reminder"]
