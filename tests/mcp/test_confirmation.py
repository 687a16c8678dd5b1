"""A destructive call in a `confirm` space over a real `mana serve --http` process with the real
Python `mcp` client, in both protocol eras: the user is asked "Delete the habit '...'? It
cannot be undone." (2025-11-25: elicitation/create during the call; 2026-07-28: an
input-required result and a retry), accepting deletes the habit (the answer in its audit row),
declining keeps it and the call is denied `destructive-declined`, and a client without the
elicitation capability gets the denial with a reminder that says why; the same over stdio, as
Claude Desktop runs the server."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import mcp_types as types
import pytest
from mcp import Client

from mana_cli.demo import DEMO_EMAIL
from mana_cli.runtime import open_runtime
from mcp_adapter.results import META_ERROR, META_REQUEST_ID
from policy.allowlist import DestructiveAllowlist
from tests.mcp.elicit_client import Answers, demo_client
from tests.mcp.support import (
    JSON_ACCEPT,
    MODES,
    Mode,
    ServerProcess,
    World,
    seeded_world,
    stdio_client_for,
)


@pytest.fixture(scope="module")
def world(
    tmp_path_factory: pytest.TempPathFactory, database_backend: str, request: pytest.FixtureRequest
) -> Iterator[World]:
    with seeded_world(request, database_backend, tmp_path_factory.mktemp("confirm")) as world:
        asyncio.run(_confirm_mode(world))
        yield world


async def _confirm_mode(world: World) -> None:
    """The demo user's personal space asks for confirmation (as `mana policy destructive`)."""
    async with open_runtime(world.installation.settings()) as rt:
        allowlist = DestructiveAllowlist(rt.db, rt.registry, accounts=rt.accounts)
        await allowlist.set_mode(world.demo_id, world.personal_id, "confirm", acknowledge=False)


@pytest.fixture(scope="module")
def server(world: World) -> Iterator[ServerProcess]:
    with ServerProcess(world.installation) as proc:
        yield proc


async def new_habit(client: Client, name: str) -> str:
    result = await client.call_tool("habits.create", {"name": name})
    assert not result.is_error and result.structured_content is not None, result.content
    return str(result.structured_content["id"])


async def habit_ids(client: Client) -> set[str]:
    result = await client.call_tool("habits.list", {})
    assert result.structured_content is not None
    return {h["id"] for h in result.structured_content["habits"]}


def error_of(result: types.CallToolResult) -> dict[str, Any]:
    assert result.is_error and result.meta is not None, result.content
    error: dict[str, Any] = result.meta[META_ERROR]
    return error


@pytest.mark.parametrize("mode", MODES)
async def test_accepting_the_question_deletes_the_habit(
    server: ServerProcess, world: World, mode: Mode
) -> None:
    name = f"Walk {mode}"
    answers = Answers(types.ElicitResult(action="accept", content={"confirm": True}))
    async with demo_client(server, world, mode, elicitation_callback=answers) as client:
        habit = await new_habit(client, name)
        result = await client.call_tool("habits.delete", {"id": habit})
        assert not result.is_error, result.content
        assert habit not in await habit_ids(client)
    [asked] = answers.asked
    assert asked.message == f"Delete the habit '{name}'? It cannot be undone."
    assert asked.requested_schema["required"] == ["confirm"]
    assert result.meta is not None
    rows = await world.installation.query(
        "SELECT outcome, confirmation FROM audit_log WHERE request_id = ?",
        result.meta[META_REQUEST_ID],
    )
    assert rows == [("ok", "accept")]


@pytest.mark.parametrize("mode", MODES)
async def test_declining_keeps_the_habit_and_denies_the_call(
    server: ServerProcess, world: World, mode: Mode
) -> None:
    answers = Answers(types.ElicitResult(action="decline"))
    async with demo_client(server, world, mode, elicitation_callback=answers) as client:
        habit = await new_habit(client, f"Read {mode}")
        result = await client.call_tool("habits.delete", {"id": habit})
        assert habit in await habit_ids(client)
    error = error_of(result)
    assert (error["status"], error["reason"]) == ("denied", "destructive-declined")
    assert len(answers.asked) == 1


@pytest.mark.parametrize("mode", MODES)
async def test_a_client_without_elicitation_is_denied_with_the_reason(
    server: ServerProcess, world: World, mode: Mode
) -> None:
    async with demo_client(server, world, mode) as client:
        habit = await new_habit(client, f"Stretch {mode}")
        result = await client.call_tool("habits.delete", {"id": habit})
        assert habit in await habit_ids(client)
    error = error_of(result)
    assert (error["status"], error["reason"]) == ("denied", "destructive-not-allowed")
    assert "asks the user to confirm habits.delete" in error["reminder"]
    assert "did not declare the elicitation capability" in error["reminder"]


@pytest.mark.parametrize("mode", MODES)
async def test_over_stdio_as_claude_desktop_runs_it(world: World, mode: Mode) -> None:
    answers = Answers(
        types.ElicitResult(action="accept", content={"confirm": True}),
        types.ElicitResult(action="decline"),
    )
    async with stdio_client_for(
        world.installation, "--as", DEMO_EMAIL, mode=mode, elicitation_callback=answers
    ) as client:
        walk = await new_habit(client, f"Swim {mode}")
        deleted = await client.call_tool("habits.delete", {"id": walk})
        assert not deleted.is_error, deleted.content
        run = await new_habit(client, f"Row {mode}")
        declined = await client.call_tool("habits.delete", {"id": run})
        ids = await habit_ids(client)
    assert walk not in ids and run in ids
    assert error_of(declined)["reason"] == "destructive-declined"
    assert answers.messages == [
        f"Delete the habit 'Swim {mode}'? It cannot be undone.",
        f"Delete the habit 'Row {mode}'? It cannot be undone.",
    ]


def _modern_delete(
    server: ServerProcess, token: str, habit: str, extra: dict[str, Any]
) -> dict[str, Any]:
    """One raw 2026-07-28 habits.delete, declaring elicitation, with `extra` params."""
    body = {
        "jsonrpc": "2.0",
        "id": 7,
        "method": "tools/call",
        "params": {
            "name": "habits.delete",
            "arguments": {"id": habit},
            "_meta": {
                "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                "io.modelcontextprotocol/clientCapabilities": {"elicitation": {"form": {}}},
            },
            **extra,
        },
    }
    response = httpx.post(
        server.mcp_url,
        json=body,
        headers={
            **JSON_ACCEPT,
            "authorization": f"Bearer {token}",
            "mcp-protocol-version": "2026-07-28",
            "mcp-method": "tools/call",
            "mcp-name": "habits.delete",
        },
        timeout=30.0,
    )
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()["result"]
    return result


async def test_an_accept_sent_before_the_question_was_asked_does_not_delete(
    server: ServerProcess, world: World
) -> None:
    """The person must have seen the question: an `inputResponses` accept that no earlier
    round of this call asked for is ignored and the question is asked; the answer to the
    question the server did ask (with its signed state) deletes."""
    accept = {"mana.confirm": {"action": "accept", "content": {"confirm": True}}}
    async with demo_client(server, world, "auto") as client:
        habit = await new_habit(client, "Unasked")
        token = world.token(world.demo_id, email=DEMO_EMAIL)
        first = _modern_delete(server, token, habit, {"inputResponses": accept})
        assert first["resultType"] == "input_required", first
        assert "mana.confirm" in first["inputRequests"]
        assert habit in await habit_ids(client)
        state = first["requestState"]
        done = _modern_delete(
            server, token, habit, {"inputResponses": accept, "requestState": state}
        )
        assert done.get("isError") is not True, done
        assert habit not in await habit_ids(client)
