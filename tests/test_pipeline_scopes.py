"""Access scopes in the one pipeline: a scoped caller (an OAuth connection) is refused every tool
its scopes do not cover, on both backends, audited like any denial; listings leave such tools
out; an unscoped caller (None) keeps full access."""

from __future__ import annotations

from typing import Any

import pytest

from tool_registry.access_scopes import READ_SCOPE, WRITE_SCOPE, missing_scope
from tool_registry.context import CallContext
from tool_registry.pipeline import INSUFFICIENT_SCOPE
from tool_registry.testing import ToolKit, tool_kit

READ_ONLY = frozenset({READ_SCOPE})
READ_WRITE = frozenset({READ_SCOPE, WRITE_SCOPE})


@pytest.fixture
async def kit(database_target: str) -> Any:
    async with tool_kit(database_target) as k:
        yield k


def _call(user_id: str, scopes: frozenset[str] | None) -> CallContext:
    return CallContext(user_id=user_id, invoker="mcp", scopes=scopes)


async def _habit_count(kit: ToolKit) -> int:
    return int(
        await kit.db.read(
            lambda c: c.execute(
                "SELECT count(*) FROM records WHERE collection = 'habits'"
            ).fetchone()[0]
        )
    )


async def test_read_only_caller_cannot_write_and_is_audited(kit: ToolKit) -> None:
    user = await kit.user()
    out = await kit.pipeline.invoke("habits.create", {"name": "Walk"}, _call(user.id, READ_ONLY))
    assert out.status == "denied"
    assert out.error is not None and out.error.reason == INSUFFICIENT_SCOPE
    assert WRITE_SCOPE in out.error.message and "habits.create" in out.error.message
    assert await _habit_count(kit) == 0
    (row,) = await kit.audit(tool="habits.create")
    assert row["outcome"] == "denied" and row["reason"] == INSUFFICIENT_SCOPE
    assert row["user_id"] == user.id


async def test_read_only_caller_may_read(kit: ToolKit) -> None:
    user = await kit.user()
    out = await kit.pipeline.invoke("habits.list", {}, _call(user.id, READ_ONLY))
    assert out.ok, out.public()


async def test_destructive_tool_needs_write_scope(kit: ToolKit) -> None:
    user = await kit.user()
    created = await kit.call_ok(user, None, "habits.create", {"name": "Walk"})
    out = await kit.pipeline.invoke(
        "habits.delete", {"id": created["id"]}, _call(user.id, READ_ONLY)
    )
    assert out.status == "denied" and out.reason == INSUFFICIENT_SCOPE


async def test_write_scope_allows_writes(kit: ToolKit) -> None:
    user = await kit.user()
    out = await kit.pipeline.invoke("habits.create", {"name": "Walk"}, _call(user.id, READ_WRITE))
    assert out.ok, out.public()
    assert await _habit_count(kit) == 1


async def test_unscoped_caller_is_unrestricted(kit: ToolKit) -> None:
    user = await kit.user()
    out = await kit.pipeline.invoke("habits.create", {"name": "Walk"}, _call(user.id, None))
    assert out.ok, out.public()


async def test_no_read_scope_refuses_even_reads(kit: ToolKit) -> None:
    user = await kit.user()
    for scopes in (frozenset(), frozenset({WRITE_SCOPE}), frozenset({"openid"})):
        out = await kit.pipeline.invoke("habits.list", {}, _call(user.id, scopes))
        assert out.status == "denied" and out.error is not None
        assert out.error.reason == INSUFFICIENT_SCOPE and READ_SCOPE in out.error.message


async def test_scope_is_checked_before_input_validation(kit: ToolKit) -> None:
    """A read-only caller learns nothing about a write tool's arguments."""
    user = await kit.user()
    out = await kit.pipeline.invoke("habits.create", {"bogus": 1}, _call(user.id, READ_ONLY))
    assert out.status == "denied" and out.reason == INSUFFICIENT_SCOPE


async def test_listing_follows_the_scopes(kit: ToolKit) -> None:
    every = kit.pipeline.visible_tools("personal")
    read_only = kit.pipeline.visible_tools("personal", "mcp", READ_ONLY)
    assert {s.name for s in read_only} == {s.name for s in every if s.read_only}
    assert read_only and len(read_only) < len(every)
    assert kit.pipeline.visible_tools("personal", "mcp", READ_WRITE) == kit.pipeline.visible_tools(
        "personal", "mcp"
    )
    assert kit.pipeline.visible_tools("personal", "mcp", frozenset()) == []
    assert all(missing_scope(s, READ_ONLY) is None for s in read_only)
