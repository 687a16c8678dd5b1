"""habits module, through the real pipeline and SQLite store."""

from __future__ import annotations

from tool_registry.space_types import SpaceTypeCatalog
from tool_registry.store import Space, User
from tool_registry.testing import ToolKit, assert_space_isolated


async def _seed(kit: ToolKit, user: User, space: Space) -> None:
    await kit.call_ok(user, space, "habits.create", {"name": "Stretch"})


async def test_create_list_archive_roundtrip(mana_kit: ToolKit) -> None:
    alice = await mana_kit.user()
    habit = await mana_kit.call_ok(
        alice, None, "habits.create", {"name": "Water", "targetPerPeriod": 8, "color": "#00aaff"}
    )
    assert habit["targetPerPeriod"] == 8 and habit["archived"] is False
    await mana_kit.call_ok(alice, None, "habits.archive", {"id": habit["id"]})
    assert (await mana_kit.call_ok(alice, None, "habits.list"))["habits"] == []
    listed = await mana_kit.call_ok(alice, None, "habits.list", {"includeArchived": True})
    assert [h["id"] for h in listed["habits"]] == [habit["id"]]


async def test_log_and_recent_logs(mana_kit: ToolKit) -> None:
    alice = await mana_kit.user()
    habit = await mana_kit.call_ok(alice, None, "habits.create", {"name": "Read"})
    await mana_kit.call_ok(alice, None, "habits.log", {"habitId": habit["id"]})
    logs = await mana_kit.call_ok(alice, None, "habits.recentLogs", {"days": 1})
    assert [entry["habitId"] for entry in logs["logs"]] == [habit["id"]]


async def test_list_is_space_isolated(mana_kit: ToolKit) -> None:
    await assert_space_isolated(mana_kit, "habits.list", {}, _seed)


async def test_habits_not_allowed_in_family_space(mana_kit: ToolKit) -> None:
    alice = await mana_kit.user()
    family = await mana_kit.space(alice, "family")
    outcome = await mana_kit.call_as(alice, family, "habits.list")
    assert outcome.status == "denied" and outcome.error is not None
    assert outcome.error.reason == "module-not-allowed"
    assert not SpaceTypeCatalog.load().allows("family", "habits")
