"""Core migration 3 on a database that already has policy history: the SQLite change log is
rebuilt with its rows (ids, actions, tools, times kept), then takes destructive-mode rows; a
space without a stored mode is in `deny`."""

from __future__ import annotations

from pathlib import Path

from policy.allowlist import DestructiveAllowlist
from tests.policy.policy_helpers import T0
from tool_registry.clock import FixedClock
from tool_registry.modules import build_registry
from tool_registry.store import Accounts, Database, SqliteDatabase, open_database
from tool_registry.store.migrations import CORE_MIGRATIONS

LOG = "SELECT id, space_id, actor_id, action, tool, at FROM space_policy_audit ORDER BY id"


async def test_the_change_log_keeps_its_rows_across_the_upgrade(tmp_path: Path) -> None:
    path = tmp_path / "mana.db"
    before_v3 = tuple(m for m in CORE_MIGRATIONS if m.version < 3)
    clock = FixedClock(T0)
    registry = build_registry()
    db: Database = await SqliteDatabase.open(path, before_v3)
    try:
        accounts = Accounts(db, clock)
        owner = await accounts.create_user("owner@upgrade.test")
        space = await accounts.personal_space(owner.id)
        allowlist = DestructiveAllowlist(db, registry, accounts=accounts, clock=clock)
        await allowlist.allow(owner.id, None, ["notes.delete"], acknowledge=True)
        await allowlist.revoke(owner.id, None, ["notes.delete"])
        old = await db.read(lambda c: [tuple(r) for r in c.execute(LOG).fetchall()])
        assert len(old) == 2
    finally:
        await db.close()

    db = await open_database(path)
    try:
        accounts = Accounts(db, clock)
        allowlist = DestructiveAllowlist(db, registry, accounts=accounts, clock=clock)
        assert await db.read(lambda c: [tuple(r) for r in c.execute(LOG).fetchall()]) == old
        assert await allowlist.mode(space.id) == "deny"
        await allowlist.set_mode(owner.id, None, "confirm", acknowledge=False)
        entries = await allowlist.audit(owner.id, None)
        assert [(e.action, e.tool, e.mode) for e in entries] == [
            ("destructive-mode", None, "confirm"),
            ("revoke", "notes.delete", None),
            ("allow", "notes.delete", None),
        ]
        assert await allowlist.mode(space.id) == "confirm"
    finally:
        await db.close()
