"""`/health` proves the write path; `/metrics` counts `error` outcomes per tool and reason; a
failing pipeline step is an audited `internal-error` outcome, never an escaped exception."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import mcp_types as types
import pytest

from mana_http.metrics import Metrics
from mana_http.testing import McpTestServer
from tool_registry.context import ToolContext
from tool_registry.models import ToolInput, ToolOutput
from tool_registry.modules import build_registry
from tool_registry.spec import ToolSpec
from tool_registry.store import database
from tool_registry.store.database import Transaction
from tool_registry.testing import ToolKit, hold_write_lock, tool_kit

# What each backend says when a write cannot start: SQLite's busy timeout, PostgreSQL's
# lock_timeout on the write advisory lock.
LOCKED_REASON = {"sqlite": "database is locked", "postgres": "lock timeout"}


async def test_health_is_503_with_the_reason_while_another_session_holds_the_write_lock(
    database_target: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(database, "WRITE_PROBE_SECONDS", 0.2)
    async with (
        tool_kit(database_target) as kit,
        McpTestServer(kit.pipeline, tmp_path / "mcp-keys") as server,
        server.http() as http,
    ):
        healthy = await http.get("/health")
        with hold_write_lock(kit.db):  # as another process would
            locked = await http.get("/health")
        again = await http.get("/health")
    assert healthy.status_code == 200 and healthy.json() == {"status": "ok", "database": "ok"}
    assert locked.status_code == 503
    body = locked.json()
    assert body["status"] == "unavailable" and body["database"] == "cannot-write"
    assert LOCKED_REASON[kit.db.dialect] in body["reason"]
    password = urlsplit(database_target).password
    assert password is None or password not in body["reason"]
    assert again.status_code == 200


async def test_a_failing_write_transaction_is_an_audited_counted_internal_error(
    mana_kit: ToolKit, mana_mcp: McpTestServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = await mana_kit.user()

    @asynccontextmanager
    async def refused(scopes: Sequence[str] = ()) -> AsyncIterator[Transaction]:
        raise OSError("disk I/O error")  # what a broken disk or server raises
        yield  # pragma: no cover - makes this an async generator

    monkeypatch.setattr(mana_kit.db, "transaction", refused)
    async with mana_mcp.client(user) as client:
        result = await client.call_tool("habits.create", {"name": "never"})
    monkeypatch.undo()
    assert result.is_error
    block = result.content[0]
    assert isinstance(block, types.TextContent) and "failed unexpectedly" in block.text
    assert "disk I/O" not in block.text  # no internals leak
    async with mana_mcp.http() as http:
        text = (await http.get("/metrics")).text
    assert 'mana_tool_errors_total{reason="internal-error",tool="habits.create"} 1.0' in text
    assert 'mana_tool_calls_total{outcome="error",tool="habits.create"} 1.0' in text
    rows = await mana_kit.pipeline.audit.recent(tool="habits.create")
    assert [(r["outcome"], r["reason"]) for r in rows] == [("error", "internal-error")]


class _Empty(ToolInput):
    pass


class _Count(ToolOutput):
    n: int


async def _boom(inp: _Empty, ctx: ToolContext) -> _Count:
    raise RuntimeError("crash")


BOOM: ToolSpec[Any, Any] = ToolSpec(
    name="test.boom",
    title="Boom",
    description="Always crashes.",
    module="test",
    scope="user-space",
    policy_hint="read",
    input=_Empty,
    output=_Count,
    handler=_boom,
)


async def test_metrics_count_handler_errors_per_tool(database_target: str) -> None:
    async with tool_kit(database_target, registry=build_registry([BOOM])) as kit:
        metrics = Metrics()
        kit.pipeline.observers.append(metrics.observe)
        user = await kit.user()
        for _ in range(2):
            out = await kit.call_as(user, None, "test.boom")
            assert out.status == "error"
        text = metrics.render().decode()
    assert 'mana_tool_errors_total{reason="handler-error",tool="test.boom"} 2.0' in text
    assert 'mana_tool_calls_total{outcome="error",tool="test.boom"} 2.0' in text
