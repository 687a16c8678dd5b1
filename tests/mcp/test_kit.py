"""The in-process MCP client of the testing kit (`mana_mcp`), and server behaviour that is
easiest to pin down in-process: handler crashes, idle expiry, the per-user session cap,
bounded memory under session churn, and list_changed pushed after a backend is configured."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import mcp_types as types
import pytest
from mcp import MCPError
from pydantic import BaseModel

from mana_http import HttpConfig
from mana_http.testing import McpTestServer
from tool_registry.context import ToolContext
from tool_registry.modules import build_registry
from tool_registry.modules.me import IMAGE_GENERATOR, GeneratedImage, ReferenceImage
from tool_registry.spec import ToolSpec
from tool_registry.testing import ToolKit, tool_kit

INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-11-25",
        "capabilities": {},
        "clientInfo": {"name": "raw-test", "version": "0"},
    },
}
ACCEPT = {"accept": "application/json, text/event-stream", "content-type": "application/json"}


def _text(result: types.CallToolResult) -> str:
    block = result.content[0]
    assert isinstance(block, types.TextContent)
    return block.text


async def test_kit_client_carries_identity(mana_kit: ToolKit, mana_mcp: McpTestServer) -> None:
    ann = await mana_kit.user("ann@kit.test")
    family = await mana_kit.space(ann, "family")
    await mana_kit.call_ok(ann, family, "notes.create", {"title": "Shopping"})
    async with mana_mcp.client(ann) as client:
        created = await client.call_tool("habits.create", {"name": "Walk"})
        assert not created.is_error
    async with mana_mcp.client(ann, family, mode="legacy") as client:
        names = {t.name for t in (await client.list_tools()).tools}
        assert "notes.search" in names and not any(n.startswith("habits.") for n in names)
        found = await client.call_tool("notes.search", {"query": "Shopping"})
        assert not found.is_error and found.structured_content is not None
        assert [n["title"] for n in found.structured_content["notes"]] == ["Shopping"]
    rows = await mana_kit.audit(tool="habits.create")
    assert rows and rows[0]["invoker"] == "mcp"


async def test_kit_client_is_refused_outside_its_spaces(
    mana_kit: ToolKit, mana_mcp: McpTestServer
) -> None:
    ann, bob = await mana_kit.user(), await mana_kit.user()
    bobs = await mana_kit.space(bob, "team")
    async with mana_mcp.http(ann, bobs) as http:
        resp = await http.post("/mcp", json=INITIALIZE, headers=ACCEPT)
    assert resp.status_code == 403
    with pytest.raises((MCPError, BaseExceptionGroup)):  # a generic error, no status
        async with mana_mcp.client(ann, bobs) as client:
            await client.list_tools()


# -- a crashing handler --------------------------------------------------------------------------


class _Empty(BaseModel):
    pass


async def _explode(inp: _Empty, ctx: ToolContext) -> _Empty:
    raise RuntimeError("database password is hunter2; see /etc/secret")


BOOM = ToolSpec(
    name="boom.explode",
    title="Explode",
    description="Always fails (test tool).",
    module="boom",
    scope="user-space",
    policy_hint="read",
    input=_Empty,
    output=_Empty,
    handler=_explode,
)


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_handler_crash_is_a_short_error_with_request_id(
    tmp_path: Path, database_target: str, mode: Any
) -> None:
    registry = build_registry()
    registry.register(BOOM)
    async with (
        tool_kit(database_target, registry=registry) as kit,
        McpTestServer(kit.pipeline, tmp_path) as server,
    ):
        ann = await kit.user()
        async with server.client(ann, mode=mode) as client:
            result = await client.call_tool("boom.explode", {})
    text = _text(result)
    assert result.is_error
    assert result.meta is not None
    request_id = result.meta["mana/requestId"]
    assert request_id in text and "failed unexpectedly" in text
    assert "hunter2" not in text and "Traceback" not in text and "RuntimeError" not in text


# -- sessions ------------------------------------------------------------------------------------


async def _open_raw_session(server: McpTestServer, user: Any) -> str:
    async with server.http(user) as http:
        resp = await http.post("/mcp", json=INITIALIZE, headers=ACCEPT)
    assert resp.status_code == 200, resp.text
    session_id = resp.headers["mcp-session-id"]
    assert isinstance(session_id, str)
    return session_id


async def _tools_list(server: McpTestServer, user: Any, session_id: str) -> int:
    body = {"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {}}
    hdrs = {**ACCEPT, "mcp-session-id": session_id, "mcp-protocol-version": "2025-11-25"}
    async with server.http(user) as http:
        return (await http.post("/mcp", json=body, headers=hdrs)).status_code


async def test_idle_sessions_expire(tmp_path: Path, database_target: str) -> None:
    async with (
        tool_kit(database_target) as kit,
        McpTestServer(kit.pipeline, tmp_path, config=HttpConfig(session_idle_seconds=0.5)) as srv,
    ):
        ann = await kit.user()
        session_id = await _open_raw_session(srv, ann)
        assert await _tools_list(srv, ann, session_id) == 200
        for _ in range(200):  # bounded wait: the sweeper runs every 0.2 s
            if len(srv.app.sessions) == 0:
                break
            await asyncio.sleep(0.05)
        assert len(srv.app.sessions) == 0
        assert await _tools_list(srv, ann, session_id) == 404


async def test_session_cap_evicts_oldest_and_memory_stays_bounded(
    tmp_path: Path, database_target: str
) -> None:
    # no protection window: every session that has nothing in flight may be evicted
    config = HttpConfig(sessions_per_user=3, session_protect_seconds=0)
    async with (
        tool_kit(database_target) as kit,
        McpTestServer(kit.pipeline, tmp_path, config=config) as srv,
    ):
        ann, bob = await kit.user(), await kit.user()
        first = await _open_raw_session(srv, ann)
        bobs = await _open_raw_session(srv, bob)
        for _ in range(60):  # churn: clients that open sessions and never close them
            await _open_raw_session(srv, ann)
        assert len(srv.app.sessions.of_user(ann.id)) == 3
        assert len(srv.app.sessions) == 4
        assert len(srv.app.manager._server_instances) == 4  # the SDK let go of evicted ones too
        assert await _tools_list(srv, ann, first) == 404  # evicted
        assert await _tools_list(srv, bob, bobs) == 200  # other users are unaffected
        async with srv.http() as http:
            metrics = (await http.get("/metrics")).text
        assert "mana_mcp_open_sessions 4.0" in metrics


# -- list_changed after a backend is configured -----------------------------------------------


class _FakeGenerator:
    async def generate(
        self, prompt: str, references: list[ReferenceImage], size: str
    ) -> GeneratedImage:
        return GeneratedImage(url="https://img.example/1.png", width=1024, height=1024)


async def test_backend_configured_sends_list_changed(
    mana_kit: ToolKit, mana_mcp: McpTestServer
) -> None:
    ann = await mana_kit.user()
    received: list[Any] = []
    changed = asyncio.Event()

    async def on_message(message: Any) -> None:
        received.append(message)
        if "list_changed" in repr(message):
            changed.set()

    async with mana_mcp.client(ann, mode="legacy", message_handler=on_message) as client:
        before = {t.name for t in (await client.list_tools()).tools}
        assert "me.generateWithReference" not in before
        # The client opens its GET stream in the background; a push before that cannot reach
        # it (that case is covered below), so wait until the server sees the stream.
        (entry,) = mana_mcp.app.sessions.of_user(ann.id)
        for _ in range(400):
            if entry.watch.listening:
                break
            await asyncio.sleep(0.025)
        assert entry.watch.listening
        mana_kit.pipeline.backends.set(IMAGE_GENERATOR, _FakeGenerator())
        assert await mana_mcp.app.backends_changed() == 1
        await asyncio.wait_for(changed.wait(), 10)
        after = {t.name for t in (await client.list_tools()).tools}
        assert "me.generateWithReference" in after


async def test_list_changed_without_a_get_stream_rides_the_next_call(
    mana_kit: ToolKit, mana_mcp: McpTestServer
) -> None:
    ann = await mana_kit.user()
    session_id = await _open_raw_session(mana_mcp, ann)
    assert await _tools_list(mana_mcp, ann, session_id) == 200
    (entry,) = mana_mcp.app.sessions.of_user(ann.id)
    assert not entry.watch.listening  # this client never opened a GET stream
    mana_kit.pipeline.backends.set(IMAGE_GENERATOR, _FakeGenerator())
    assert await mana_mcp.app.backends_changed() == 0  # nobody to push to now...
    call = {
        "jsonrpc": "2.0",
        "id": 3,
        "method": "tools/call",
        "params": {"name": "habits.list", "arguments": {}},
    }
    hdrs = {**ACCEPT, "mcp-session-id": session_id, "mcp-protocol-version": "2025-11-25"}
    async with mana_mcp.http(ann) as http:
        first = (await http.post("/mcp", json=call, headers=hdrs)).text
        second = (await http.post("/mcp", json={**call, "id": 4}, headers=hdrs)).text
    # ...so the next call's response carries it, ahead of the result, and only once.
    assert "notifications/tools/list_changed" in first
    assert first.index("notifications/tools/list_changed") < first.index('"id":3')
    assert "notifications/tools/list_changed" not in second
    assert '"id":4' in second
