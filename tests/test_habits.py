"""habits module, through the real pipeline and SQLite store."""

from __future__ import annotations

from typing import Any

from tool_registry.pipeline import OutcomeError
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


async def _invalid(kit: ToolKit, user: User, args: dict[str, Any]) -> OutcomeError:
    outcome = await kit.call_as(user, None, "habits.update", args)
    assert outcome.status == "invalid-input", outcome.public()
    assert outcome.error is not None
    return outcome.error


async def test_clear_removes_description_and_colour(mana_kit: ToolKit) -> None:
    alice = await mana_kit.user()
    habit = await mana_kit.call_ok(
        alice,
        None,
        "habits.create",
        {"name": "Run", "description": "5k", "color": "#ff0000", "targetPerPeriod": 3},
    )
    uncoloured = await mana_kit.call_ok(
        alice, None, "habits.update", {"id": habit["id"], "clear": ["color"]}
    )
    assert uncoloured["color"] is None
    assert uncoloured["description"] == "5k"
    listed = await mana_kit.call_ok(alice, None, "habits.list")
    assert listed["habits"] == [uncoloured]

    bare = await mana_kit.call_ok(
        alice,
        None,
        "habits.update",
        {"id": habit["id"], "clear": ["description", "color"], "frequency": "weekly"},
    )
    assert (bare["description"], bare["color"]) == (None, None)
    assert (bare["name"], bare["frequency"], bare["targetPerPeriod"]) == ("Run", "weekly", 3)
    listed = await mana_kit.call_ok(alice, None, "habits.list")
    assert listed["habits"] == [bare]
    # Already cleared: a no-op that succeeds.
    again = await mana_kit.call_ok(
        alice, None, "habits.update", {"id": habit["id"], "clear": ["description"]}
    )
    assert again == bare


async def test_update_with_null_fields_keeps_values(mana_kit: ToolKit) -> None:
    alice = await mana_kit.user()
    habit = await mana_kit.call_ok(
        alice,
        None,
        "habits.create",
        {"name": "Floss", "description": "nightly", "color": "#00ff00"},
    )
    same = await mana_kit.call_ok(
        alice,
        None,
        "habits.update",
        {"id": habit["id"], "description": None, "color": None, "clear": None},
    )
    assert same == habit
    renamed = await mana_kit.call_ok(
        alice, None, "habits.update", {"id": habit["id"], "name": "Floss teeth"}
    )
    assert (renamed["description"], renamed["color"]) == ("nightly", "#00ff00")


async def test_clear_conflicts_and_unknown_names_are_invalid(mana_kit: ToolKit) -> None:
    alice = await mana_kit.user()
    habit = await mana_kit.call_ok(
        alice, None, "habits.create", {"name": "Walk", "color": "#000000"}
    )
    error = await _invalid(
        mana_kit, alice, {"id": habit["id"], "color": "#ffffff", "clear": ["color"]}
    )
    assert [f.field for f in error.fields] == ["clear"]
    assert "'color'" in error.message
    for name in ("name", "frequency", "targetPerPeriod", "archived", "colour"):
        error = await _invalid(mana_kit, alice, {"id": habit["id"], "clear": [name]})
        assert [f.field for f in error.fields] == ["clear.0"], name
    listed = await mana_kit.call_ok(alice, None, "habits.list")
    assert listed["habits"] == [habit]
