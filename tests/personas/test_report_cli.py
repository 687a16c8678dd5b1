"""`mana personas report` numbers and chart; the CLI commands end to end on a database file."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import pytest

from mana_cli.main import main
from personas.report import build_report, change_text, table, write_chart
from personas.runner import Ratings
from personas.seed import Seeder
from personas.store import FAILED_RATING, PersonaStore
from tests.personas.conftest import small_catalog
from tool_registry.clock import FixedClock
from tool_registry.registry import Registry
from tool_registry.store import Accounts, Database, User
from tool_registry.store.postgres import is_postgres_url

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


async def _history(
    seeder: Seeder,
    raw: dict[str, Any],
    registry: Registry,
    accounts: Accounts,
    db: Database,
    clock: FixedClock,
) -> PersonaStore:
    await seeder.seed(
        small_catalog(raw, registry, ["maya.chen@mana.test", "sam.lindqvist@mana.test"])
    )
    store = PersonaStore(db, clock)
    maya = await accounts.require_user("maya.chen@mana.test")
    sam = await accounts.require_user("sam.lindqvist@mana.test")
    now = clock.now()
    old = now - timedelta(days=10)  # previous period
    recent = now - timedelta(days=2)  # this period
    history: list[tuple[str, datetime, User, Ratings]] = [
        ("old-1", old, maya, {"todo": (3, None), "habits": (4, None)}),
        ("old-2", old, sam, {"todo": (2, None), "notes": (4, None)}),
        ("new-1", recent, maya, {"todo": (5, "fast"), "habits": (3, None)}),
        ("new-2", recent, sam, {"todo": (4, None), "calendar": (4, None)}),
        ("new-3", now, sam, {FAILED_RATING: (None, "not JSON")}),
    ]
    for tick, at, who, ratings in history:
        await store.record_feedback(
            tick=tick, persona_id=who.id, persona_email=who.email, ratings=ratings, at=at
        )
    actions: list[tuple[str, Literal["ok", "error"], datetime]] = [
        ("todo.create", "ok", recent),
        ("todo.list", "ok", recent),
        ("habits.log", "error", recent),
        ("calendar.create", "ok", now),
        ("notes.create", "ok", old),
    ]
    for i, (tool, result, at) in enumerate(actions):
        await store.record_action(
            tick="t",
            persona_id=maya.id,
            persona_email=maya.email,
            call_index=i,
            space_id=None,
            tool=tool,
            input_hash="h",
            result=result,
            error_message=None,
            latency_ms=12.0,
            at=at,
        )
    return store


async def test_report_numbers(
    seeder: Seeder,
    raw_catalog: dict[str, Any],
    registry: Registry,
    accounts: Accounts,
    db: Database,
    clock: FixedClock,
    tmp_path: Path,
) -> None:
    store = await _history(seeder, raw_catalog, registry, accounts, db, clock)
    report = await build_report(store, 7)
    rows = {r.module: r for r in report.rows}
    assert list(rows) == ["calendar", "habits", "notes", "todo"]
    todo = rows["todo"]
    assert todo.average == pytest.approx(4.5) and todo.previous == pytest.approx(2.5)
    assert todo.change == pytest.approx(2.0) and change_text(todo) == "+2.00"
    assert (todo.ratings, todo.actions, todo.errors) == (2, 2, 0)
    assert rows["habits"].change == pytest.approx(-1.0) and rows["habits"].errors == 1
    assert change_text(rows["calendar"]) == "new" and rows["calendar"].actions == 1
    assert rows["notes"].average is None and rows["notes"].previous == pytest.approx(4.0)
    assert rows["notes"].previous_actions == 1 and rows["notes"].actions == 0
    assert report.failed_ratings == 1
    headers, cells = table(report)
    assert headers[:4] == ["MODULE", "AVG", "PREV", "CHANGE"]
    assert cells[-1][:4] == ["todo", "4.50", "2.50", "+2.00"]

    png = write_chart(report, tmp_path / "charts" / "report.png")
    data = png.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 10_000
    empty = write_chart(
        await build_report(PersonaStore(db, FixedClock(clock.now() + timedelta(days=400))), 7),
        tmp_path / "empty.png",
    )
    assert empty.read_bytes().startswith(PNG_MAGIC)


def _mana(db: str, *argv: str) -> int:
    """`mana` on the test's database: `--db FILE` or `--database-url URL`."""
    flag = "--database-url" if is_postgres_url(db) else "--db"
    return main([flag, db, *argv])


def test_cli_seed_list_show_report_cleanup(
    database_target: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for var in ("MANA_ENV", "PERSONA_SEED_SECRET", "MANA_DB", "MANA_DATA_DIR", "MANA_DATABASE_URL"):
        monkeypatch.delenv(var, raising=False)
    db = database_target
    assert _mana(db, "init") == 0
    assert _mana(db, "personas", "seed", "--dry-run") == 0
    out = capsys.readouterr().out
    assert "would make 15 change(s)" in out and "create-space    weber-family" in out
    assert _mana(db, "personas", "list") == 0
    assert "no personas yet" in capsys.readouterr().out
    assert _mana(db, "personas", "seed") == 0
    assert "made 15 change(s)" in capsys.readouterr().out
    assert _mana(db, "personas", "seed") == 0
    assert "nothing to change" in capsys.readouterr().out
    assert _mana(db, "personas", "list") == 0
    listing = capsys.readouterr().out
    assert "ACTIONS 7D" in listing and listing.count("@mana.test") == 10
    assert _mana(db, "personas", "show", "lena.weber@mana.test") == 0
    shown = capsys.readouterr().out
    assert "Lena Weber <lena.weber@mana.test>" in shown and "weber-family (family, owner)" in shown
    assert "(no actions yet)" in shown
    assert _mana(db, "personas", "report", "--output", str(tmp_path / "r.png")) == 0
    assert "no persona ratings or actions" in capsys.readouterr().out
    assert (tmp_path / "r.png").read_bytes().startswith(PNG_MAGIC)

    assert _mana(db, "users", "create", "--email", "ana@example.com", "--password", "x" * 12) == 0
    capsys.readouterr()
    assert _mana(db, "personas", "cleanup", "--email", "ana@example.com") == 1
    assert "refusing to delete ana@example.com" in capsys.readouterr().err
    assert _mana(db, "personas", "show", "ana@example.com") == 1
    assert "is a human user, not a persona" in capsys.readouterr().err
    assert _mana(db, "personas", "cleanup", "--dry-run") == 0
    would = capsys.readouterr().out
    assert _mana(db, "personas", "cleanup") == 0
    done = capsys.readouterr().out
    assert "deleted 10 persona user(s)" in done
    assert would.replace("would delete", "deleted").replace("would make", "made") == done
    assert _mana(db, "users", "list") == 0
    users = capsys.readouterr().out
    assert "ana@example.com" in users and "@mana.test" not in users


def test_cli_production_refuses_the_development_secret(
    database_target: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MANA_ENV", "production")
    monkeypatch.delenv("PERSONA_SEED_SECRET", raising=False)
    monkeypatch.delenv("MANA_DATABASE_URL", raising=False)
    db = database_target
    assert _mana(db, "init") == 0
    assert _mana(db, "personas", "seed") == 1
    assert "with MANA_ENV=production the built-in development secret is refused" in (
        capsys.readouterr().err
    )
    from personas.passwords import DEVELOPMENT_SECRET

    monkeypatch.setenv("PERSONA_SEED_SECRET", DEVELOPMENT_SECRET)
    assert _mana(db, "personas", "seed") == 1
    assert "is the built-in development secret" in capsys.readouterr().err
    assert _mana(db, "personas", "run", "--once", "--llm", "scripted:/nonexistent") == 1
    assert "development secret" in capsys.readouterr().err
