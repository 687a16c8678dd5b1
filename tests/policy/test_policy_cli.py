"""`mana policy show|allow|revoke|audit` and the gate as wired by the composition root."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mana_cli.main import main

OWNER = "owner@cli.test"
MEMBER = "member@cli.test"


@pytest.fixture
def db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    for var in ("MANA_POLICY_MODE", "MANA_RATE_LIMIT", "MANA_RATE_LIMITS", "MANA_DB"):
        monkeypatch.delenv(var, raising=False)
    path = str(tmp_path / "mana.db")
    assert mana(path, "init") == 0
    assert mana(path, "users", "create", "--email", OWNER) == 0
    assert mana(path, "users", "create", "--email", MEMBER) == 0
    assert mana(path, "spaces", "create", "--as", OWNER, "--type", "team", "--name", "Crew",
                "--slug", "crew") == 0  # fmt: skip
    assert mana(path, "spaces", "add-member", "--as", OWNER, "--space", "crew", "--email",
                MEMBER) == 0  # fmt: skip
    return path


def mana(db: str, *argv: str) -> int:
    return main(["--db", db, *argv])


def out(capsys: pytest.CaptureFixture[str]) -> tuple[str, str]:
    captured = capsys.readouterr()
    return captured.out, captured.err


def test_show_allow_revoke_audit(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    out(capsys)
    assert mana(db, "policy", "show", "--space", "crew", "--as", MEMBER) == 0
    text, _ = out(capsys)
    assert "destructive tools allowed here: none" in text
    assert "notes.delete" in text and "mode enforce" in text
    assert "only the space's owner or an admin can change" in text

    assert mana(db, "policy", "allow", "notes.delete", "calendar.delete", "--space", "crew",
                "--as", OWNER, "--acknowledge") == 0  # fmt: skip
    assert "allowed in crew: notes.delete, calendar.delete" in out(capsys)[0]

    assert mana(db, "policy", "show", "--space", "crew", "--as", MEMBER) == 0
    text, _ = out(capsys)
    assert "TOOL" in text and OWNER in text and "calendar.delete" in text

    assert mana(db, "policy", "revoke", "calendar.delete", "--space", "crew", "--as", OWNER) == 0
    assert "revoked in crew: calendar.delete" in out(capsys)[0]

    assert mana(db, "policy", "audit", "--space", "crew", "--as", MEMBER) == 0
    lines = out(capsys)[0].splitlines()
    assert lines[0].split() == ["AT", "ACTION", "TOOL", "ACTOR"]
    assert [line.split()[1:] for line in lines[1:]] == [
        ["revoke", "calendar.delete", OWNER],
        ["allow", "calendar.delete", OWNER],
        ["allow", "notes.delete", OWNER],
    ]


def test_allow_requires_acknowledge(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    out(capsys)
    assert mana(db, "policy", "allow", "notes.delete", "--space", "crew", "--as", OWNER) == 1
    _, err = out(capsys)
    assert err.count("\n") == 1 and "--acknowledge" in err and "delete data" in err


def test_member_cannot_change(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    out(capsys)
    code = mana(db, "policy", "allow", "notes.delete", "--space", "crew", "--as", MEMBER,
                "--acknowledge")  # fmt: skip
    assert code == 1
    _, err = out(capsys)
    assert "owner or an admin" in err and err.count("\n") == 1


def test_unknown_and_non_destructive_names_are_rejected(
    db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    out(capsys)
    code = mana(db, "policy", "allow", "notes.create", "nope.gone", "--space", "crew", "--as",
                OWNER, "--acknowledge")  # fmt: skip
    assert code == 1
    _, err = out(capsys)
    assert "nope.gone" in err and "notes.create" in err


def test_gate_is_wired_into_mana_call(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    out(capsys)
    assert mana(db, "call", "notes.create", "--as", OWNER, "--space", "crew", "--args",
                '{"title": "Plan"}') == 0  # fmt: skip
    note_id = json.loads(out(capsys)[0])["result"]["id"]
    delete = ["call", "notes.delete", "--as", OWNER, "--space", "crew", "--args",
              json.dumps({"id": note_id})]  # fmt: skip
    assert mana(db, *delete) == 1
    body = json.loads(out(capsys)[0])
    assert body["error"]["reason"] == "destructive-not-allowed" and body["reminder"]
    assert mana(db, "policy", "allow", "notes.delete", "--space", "crew", "--as", OWNER,
                "--acknowledge") == 0  # fmt: skip
    out(capsys)
    assert mana(db, *delete) == 0
    assert json.loads(out(capsys)[0])["status"] == "ok"


def test_admin_tool_is_denied_through_mana_call(
    db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    out(capsys)
    args = json.dumps({"email": MEMBER, "tier": "pro"})
    assert mana(db, "call", "users.setTier", "--as", OWNER, "--args", args) == 1
    body = json.loads(out(capsys)[0])
    assert body["status"] == "denied" and body["error"]["reason"] == "admin-scope-not-invokable"


def test_log_only_mode_from_the_environment(
    db: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MANA_POLICY_MODE", "log-only")
    out(capsys)
    assert mana(db, "call", "notes.create", "--as", OWNER, "--args", '{"title": "x"}') == 0
    note_id = json.loads(out(capsys)[0])["result"]["id"]
    assert mana(db, "call", "notes.delete", "--as", OWNER, "--args",
                json.dumps({"id": note_id})) == 0  # fmt: skip
    body = json.loads(out(capsys)[0])
    assert body["status"] == "ok" and body["flagged"] is True
    assert "would have been denied" in body["reminder"]


def test_bad_policy_configuration_is_one_clear_line(
    db: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MANA_RATE_LIMITS", "habits.log=ten")
    out(capsys)
    assert mana(db, "policy", "show", "--as", OWNER) == 1
    _, err = out(capsys)
    assert "MANA_RATE_LIMITS" in err and err.count("\n") == 1
    monkeypatch.setenv("MANA_RATE_LIMITS", "nope.gone=3")
    assert mana(db, "policy", "show", "--as", OWNER) == 1
    assert "nope.gone" in out(capsys)[1]
