"""Denial texts name the tool exactly as it is called: `habits.delete`, never `Habits.delete`
(a capitalised sentence start) or `habits_delete` (a vendor's wire name)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import pytest

from mana_cli.runtime import open_runtime
from mana_http.testing import McpTestServer
from mcp_server import error_text
from tool_registry.pipeline import Outcome, OutcomeError
from tool_registry.testing import ToolKit

from .support import Installation


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_mcp_denial_text_keeps_the_exact_tool_name(
    tmp_path: Path, database_target: str, mode: Literal["auto", "legacy"]
) -> None:
    settings = Installation(tmp_path / "data", database_target).settings()
    async with open_runtime(settings, create=True) as rt:  # the real policy gate
        kit = ToolKit(rt.pipeline)
        ann = await kit.user()
        habit = await kit.call_ok(ann, None, "habits.create", {"name": "Walk"})
        async with (
            McpTestServer(rt.pipeline, tmp_path / "keys") as server,
            server.client(ann, mode=mode) as client,
        ):
            result = await client.call_tool("habits.delete", {"id": habit["id"]})
    assert result.is_error
    text = " ".join(getattr(block, "text", "") for block in result.content)
    assert text.startswith("habits.delete was denied by policy (destructive-not-allowed)"), text
    assert "habits.archive" in text
    assert "Habits.delete" not in text and "habits_delete" not in text
    assert result.meta is not None
    assert result.meta["mana/error"]["reminder"].startswith("habits.delete deletes data")


@pytest.mark.parametrize(
    ("message", "shown"),
    [
        ("not a member of this space", "Not a member of this space"),
        ("todo.complete was denied by policy (x)", "todo.complete was denied by policy (x)"),
        ("dueDate must be a date", "dueDate must be a date"),
        ("me.listReferenceImages failed", "me.listReferenceImages failed"),
    ],
)
def test_only_a_plain_first_word_is_capitalised(message: str, shown: str) -> None:
    outcome = Outcome(
        tool="x.y",
        status="denied",
        request_id="req_1",
        error=OutcomeError(reason="r", message=message),
    )
    assert error_text(outcome) == shown
