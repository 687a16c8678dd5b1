"""MCP prompts and completions through the real `mcp` client over the in-process HTTP server,
in both protocol eras: prompts built from the active space's data, listed by space type,
arguments checked, and completions drawn from the active space only."""

from __future__ import annotations

import pytest
from mcp import MCPError
from mcp.types import PromptReference, ResourceTemplateReference

from mana_http.testing import McpTestServer
from tests.mcp.support import MODES, Mode
from tool_registry.testing import ToolKit


def _prompt_text(result: object) -> str:
    messages = result.messages  # type: ignore[attr-defined]
    assert len(messages) == 1 and messages[0].role == "user"
    return str(messages[0].content.text)


@pytest.mark.parametrize("mode", MODES)
async def test_prompts_are_listed_by_space_type(
    mana_kit: ToolKit, mana_mcp: McpTestServer, mode: Mode
) -> None:
    alice = await mana_kit.user()
    family = await mana_kit.space(alice, "family")
    async with mana_mcp.client(alice, None, mode=mode) as client:
        personal = {p.name: p for p in (await client.list_prompts()).prompts}
    assert set(personal) == {"weekly-review", "plan-my-day", "journal-reflection"}
    assert [a.name for a in personal["plan-my-day"].arguments or []] == ["date", "meetingWith"]
    async with mana_mcp.client(alice, family, mode=mode) as client:
        shared = [p.name for p in (await client.list_prompts()).prompts]
        assert shared == ["plan-my-day"]  # habits and journal stay out of shared spaces
        with pytest.raises(MCPError) as refused:
            await client.get_prompt("weekly-review")
        assert "not available in family spaces" in refused.value.error.message


@pytest.mark.parametrize("mode", MODES)
async def test_weekly_review_is_built_from_the_spaces_data(
    mana_kit: ToolKit, mana_mcp: McpTestServer, mode: Mode
) -> None:
    alice, bob = await mana_kit.user(), await mana_kit.user()
    walk = await mana_kit.call_ok(alice, None, "habits.create", {"name": "Walk"})
    await mana_kit.call_ok(alice, None, "habits.log", {"habitId": walk["id"]})
    await mana_kit.call_ok(alice, None, "todo.create", {"title": "File taxes"})
    await mana_kit.call_ok(bob, None, "habits.create", {"name": "Bob's habit"})
    async with mana_mcp.client(alice, None, mode=mode) as client:
        text = _prompt_text(await client.get_prompt("weekly-review", {"focusHabit": "Walk"}))
        assert "Walk: 1" in text and "File taxes" in text and "'Walk'" in text
        assert "Bob's habit" not in text
        with pytest.raises(MCPError) as bad:
            await client.get_prompt("weekly-review", {"weekEnding": "last friday"})
        assert bad.value.error.code == -32602 and "YYYY-MM-DD" in bad.value.error.message
        with pytest.raises(MCPError) as unknown:
            await client.get_prompt("weekly-review", {"colour": "red"})
        assert "unknown arguments: colour" in unknown.value.error.message
        with pytest.raises(MCPError):
            await client.get_prompt("no-such-prompt")
    rows = await mana_kit.audit(tool="prompt:weekly-review")
    assert sorted(r["outcome"] for r in rows) == ["invalid-input", "invalid-input", "ok"]


@pytest.mark.parametrize("mode", MODES)
async def test_plan_my_day_in_a_shared_space_shows_only_its_modules(
    mana_kit: ToolKit, mana_mcp: McpTestServer, mode: Mode
) -> None:
    alice = await mana_kit.user()
    family = await mana_kit.space(alice, "family")
    await mana_kit.call_ok(
        alice,
        family,
        "calendar.create",
        {"title": "Dentist", "start": "2026-03-02T09:00:00Z", "end": "2026-03-02T10:00:00Z"},
    )
    await mana_kit.call_ok(alice, None, "habits.create", {"name": "Stretch"})
    async with mana_mcp.client(alice, family, mode=mode) as client:
        text = _prompt_text(await client.get_prompt("plan-my-day", {"date": "2026-03-02"}))
    assert "Dentist" in text and "2026-03-02" in text
    assert "Habits" not in text and "Stretch" not in text


@pytest.mark.parametrize("mode", MODES)
async def test_completions_come_from_the_active_space_only(
    mana_kit: ToolKit, mana_mcp: McpTestServer, mode: Mode
) -> None:
    alice, bob = await mana_kit.user(), await mana_kit.user()
    family = await mana_kit.space(alice, "family")
    for name in ("Walk", "Water plants", "Read"):
        await mana_kit.call_ok(alice, None, "habits.create", {"name": name})
    await mana_kit.call_ok(bob, None, "habits.create", {"name": "Wander"})
    await mana_kit.call_ok(alice, family, "contacts.create", {"name": "Grandma"})
    await mana_kit.call_ok(alice, None, "contacts.create", {"name": "Greg"})
    note = await mana_kit.call_ok(alice, family, "notes.create", {"title": "Garden plan"})
    async with mana_mcp.client(alice, None, mode=mode) as client:
        habits = await client.complete(
            PromptReference(name="weekly-review"), {"name": "focusHabit", "value": "w"}
        )
        assert sorted(habits.completion.values) == ["Walk", "Water plants"]
        inner = await client.complete(
            PromptReference(name="weekly-review"), {"name": "focusHabit", "value": "PLANT"}
        )
        assert inner.completion.values == ["Water plants"]
        people = await client.complete(
            PromptReference(name="plan-my-day"), {"name": "meetingWith", "value": "g"}
        )
        assert people.completion.values == ["Greg"]
        none = await client.complete(
            PromptReference(name="plan-my-day"), {"name": "date", "value": "2"}
        )
        assert none.completion.values == []
    async with mana_mcp.client(alice, family, mode=mode) as client:
        people = await client.complete(
            PromptReference(name="plan-my-day"), {"name": "meetingWith", "value": "g"}
        )
        assert people.completion.values == ["Grandma"]
        ids = await client.complete(
            ResourceTemplateReference(uri="mana://notes/{id}"), {"name": "id", "value": "gard"}
        )
        assert ids.completion.values == [note["id"]]
        with pytest.raises(MCPError):
            await client.complete(
                ResourceTemplateReference(uri="mana://nothing/{x}"), {"name": "x", "value": ""}
            )
