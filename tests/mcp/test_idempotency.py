"""Idempotency keys over MCP: `_meta["mana/idempotencyKey"]` on `tools/call`, with the real
`mcp` client against the in-process HTTP server (`mana_mcp`) and the stdio adapter in memory."""

from __future__ import annotations

from typing import Any, cast

import mcp_types as types
import pytest
from mcp import Client

from mana_http.testing import ClientMode, McpTestServer
from mcp_server import stdio_adapter
from tool_registry.testing import ToolKit

KEY = "mana/idempotencyKey"
FIELD = "_meta.mana/idempotencyKey"
MODES: list[ClientMode] = ["auto", "legacy"]


def meta(value: Any) -> types.RequestParamsMeta:
    return cast(types.RequestParamsMeta, {KEY: value})


def text_of(result: types.CallToolResult) -> str:
    block = result.content[0]
    assert isinstance(block, types.TextContent)
    return block.text


async def count(kit: ToolKit, sql: str, *params: Any) -> int:
    return int(await kit.db.read(lambda c: c.execute(sql, params).fetchone()[0]))


async def habits_of(kit: ToolKit, user_id: str) -> int:
    return await count(
        kit,
        "SELECT count(*) FROM records WHERE collection = 'habits' AND author_id = ?",
        user_id,
    )


@pytest.mark.parametrize("mode", MODES)
async def test_same_key_twice_writes_once_and_returns_the_same_result(
    mana_kit: ToolKit, mana_mcp: McpTestServer, mode: ClientMode
) -> None:
    ann = await mana_kit.user()
    async with mana_mcp.client(ann, mode=mode) as client:
        first = await client.call_tool("habits.create", {"name": "Walk"}, meta=meta("retry-1"))
        again = await client.call_tool("habits.create", {"name": "Walk"}, meta=meta("retry-1"))
    assert not first.is_error and not again.is_error
    assert again.structured_content == first.structured_content
    assert text_of(again) == text_of(first)
    assert first.meta is not None and again.meta is not None
    assert "mana/replayed" not in first.meta and again.meta["mana/replayed"] is True
    assert again.meta["mana/requestId"] != first.meta["mana/requestId"]
    assert await habits_of(mana_kit, ann.id) == 1
    assert await count(mana_kit, "SELECT count(*) FROM idempotency_keys WHERE key = ?", "retry-1")


async def test_the_stdio_adapter_honours_the_key_too(mana_kit: ToolKit) -> None:
    ann = await mana_kit.user()
    adapter = stdio_adapter(mana_kit.pipeline, user_id=ann.id, space=None)
    async with Client(adapter.server) as client:
        first = await client.call_tool("habits.create", {"name": "Read"}, meta=meta("s-1"))
        again = await client.call_tool("habits.create", {"name": "Read"}, meta=meta("s-1"))
    assert not first.is_error and not again.is_error
    assert again.structured_content == first.structured_content
    assert await habits_of(mana_kit, ann.id) == 1


async def test_users_with_the_same_key_are_independent(
    mana_kit: ToolKit, mana_mcp: McpTestServer
) -> None:
    ann, bob = await mana_kit.user(), await mana_kit.user()
    async with mana_mcp.client(ann) as client:
        made = await client.call_tool("habits.create", {"name": "Walk"}, meta=meta("shared"))
    async with mana_mcp.client(bob) as client:
        same_args = await client.call_tool("habits.create", {"name": "Walk"}, meta=meta("shared"))
        other_args = await client.call_tool("notes.create", {"title": "x"}, meta=meta("n-1"))
    async with mana_mcp.client(ann) as client:
        # ann's key "n-1" is still free: bob's use of it is his own
        anns_note = await client.call_tool("notes.create", {"title": "y"}, meta=meta("n-1"))
    for result in (made, same_args, other_args, anns_note):
        assert not result.is_error, text_of(result)
        assert result.meta is not None and "mana/replayed" not in result.meta
    assert made.structured_content is not None and same_args.structured_content is not None
    assert same_args.structured_content["id"] != made.structured_content["id"]
    assert await habits_of(mana_kit, ann.id) == 1 and await habits_of(mana_kit, bob.id) == 1
    bobs_space = (await mana_kit.personal(bob)).id
    assert await mana_kit.record_space(same_args.structured_content["id"]) == bobs_space
    assert other_args.structured_content is not None and anns_note.structured_content is not None
    assert other_args.structured_content["title"] == "x"
    assert anns_note.structured_content["title"] == "y"


async def test_reusing_a_key_for_other_arguments_is_refused(
    mana_kit: ToolKit, mana_mcp: McpTestServer
) -> None:
    ann = await mana_kit.user()
    async with mana_mcp.client(ann) as client:
        await client.call_tool("habits.create", {"name": "A"}, meta=meta("k"))
        out = await client.call_tool("habits.create", {"name": "B"}, meta=meta("k"))
    assert out.is_error and out.meta is not None
    assert out.meta["mana/error"]["reason"] == "idempotency-key-reused"
    assert "other arguments" in text_of(out) and "Traceback" not in text_of(out)
    assert await habits_of(mana_kit, ann.id) == 1


BAD_KEYS: list[tuple[Any, str]] = [
    ("", "must not be empty"),
    ("k" * 201, "at most 200 characters, got 201"),
    (5, "must be a string, got a number"),
    (True, "must be a string, got a boolean"),
    (["a"], "must be a string, got an array"),
    ({"a": 1}, "must be a string, got an object"),
    ("line\nbreak", "printable characters only"),
]


@pytest.mark.parametrize(("value", "problem"), BAD_KEYS, ids=lambda v: repr(v)[:20])
async def test_a_bad_key_is_a_clear_error_and_writes_nothing(
    mana_kit: ToolKit, mana_mcp: McpTestServer, value: Any, problem: str
) -> None:
    ann = await mana_kit.user()
    async with mana_mcp.client(ann, mode="legacy") as client:
        out = await client.call_tool("habits.create", {"name": "Walk"}, meta=meta(value))
    assert out.is_error and out.meta is not None
    text = text_of(out)
    assert FIELD in text and problem in text and "Traceback" not in text
    error = out.meta["mana/error"]
    assert error["status"] == "invalid-input" and error["reason"] == "invalid-input"
    assert error["fields"] == [{"field": FIELD, "message": error["fields"][0]["message"]}]
    assert problem in error["fields"][0]["message"]
    assert isinstance(out.meta["mana/requestId"], str)
    assert await habits_of(mana_kit, ann.id) == 0
    assert await count(mana_kit, "SELECT count(*) FROM idempotency_keys") == 0


async def test_an_explicit_null_key_is_refused_too(
    mana_kit: ToolKit, mana_mcp: McpTestServer
) -> None:
    """The `mcp` client drops a None `_meta` value, so this one goes out as raw JSON-RPC."""
    ann = await mana_kit.user()
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {
            "name": "habits.create",
            "arguments": {"name": "Walk"},
            "_meta": {
                "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                "io.modelcontextprotocol/clientCapabilities": {},
                KEY: None,
            },
        },
    }
    headers = {
        "accept": "application/json, text/event-stream",
        "content-type": "application/json",
        "mcp-protocol-version": "2026-07-28",
        "mcp-method": "tools/call",
        "mcp-name": "habits.create",
    }
    async with mana_mcp.http(ann) as http:
        response = await http.post("/mcp", json=body, headers=headers)
    assert response.status_code == 200, response.text
    result = response.json()["result"]
    assert result["isError"] is True
    assert FIELD in result["content"][0]["text"]
    assert "must be a string, got null" in result["content"][0]["text"]
    assert result["_meta"]["mana/error"]["reason"] == "invalid-input"
    assert await habits_of(mana_kit, ann.id) == 0


async def test_the_longest_printable_key_is_accepted(
    mana_kit: ToolKit, mana_mcp: McpTestServer
) -> None:
    ann = await mana_kit.user()
    key = "ü" + "k" * 198 + " "
    async with mana_mcp.client(ann) as client:
        first = await client.call_tool("habits.create", {"name": "Walk"}, meta=meta(key))
        again = await client.call_tool("habits.create", {"name": "Walk"}, meta=meta(key))
    assert not first.is_error and not again.is_error, text_of(first)
    assert again.meta is not None and again.meta["mana/replayed"] is True
    assert await habits_of(mana_kit, ann.id) == 1


@pytest.mark.parametrize("mode", MODES)
async def test_calls_without_a_key_behave_as_before(
    mana_kit: ToolKit, mana_mcp: McpTestServer, mode: ClientMode
) -> None:
    ann = await mana_kit.user()
    async with mana_mcp.client(ann, mode=mode) as client:
        first = await client.call_tool("habits.create", {"name": "Walk"})
        again = await client.call_tool("habits.create", {"name": "Walk"})
        other = await client.call_tool("habits.create", {"name": "Walk"}, meta=cast(Any, {}))
    for result in (first, again, other):
        assert not result.is_error and result.meta is not None
        assert "mana/replayed" not in result.meta
    assert await habits_of(mana_kit, ann.id) == 3
    assert await count(mana_kit, "SELECT count(*) FROM idempotency_keys") == 0


async def test_a_key_on_a_read_is_accepted_and_stores_nothing(
    mana_kit: ToolKit, mana_mcp: McpTestServer
) -> None:
    ann = await mana_kit.user()
    async with mana_mcp.client(ann) as client:
        out = await client.call_tool("habits.list", {}, meta=meta("read-1"))
    assert not out.is_error
    assert await count(mana_kit, "SELECT count(*) FROM idempotency_keys") == 0
