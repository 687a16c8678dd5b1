"""`logging/setLevel` against real `mana serve` processes (HTTP and stdio) with the real `mcp`
client: the level a 2025-11-25 client sets is kept by its session (the database row over HTTP,
the connection over stdio) and filters the `notifications/message` of later calls; an unknown
level is refused naming the valid ones; 2026-07-28 has no such method. The stdio connection
also delivers `notifications/resources/updated` for its subscriptions."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TextIO

import httpx
import httpx2
import mcp_types as types
import pytest
from mcp import Client, MCPError, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client

from mana_cli.demo import DEMO_EMAIL
from tests.mcp.support import (
    JSON_ACCEPT,
    PY,
    REPO,
    Mode,
    ServerProcess,
    World,
    headers,
    http_client,
    mana_argv,
    seeded_world,
)

pytestmark = pytest.mark.filterwarnings("ignore::mcp.shared.exceptions.MCPDeprecationWarning")

EXTRA = {"MANA_EXTRA_TOOLS": "tests.mcp.channel_tools:TOOLS"}
LEGACY = "2025-11-25"
ARRIVAL_GUARD_SECONDS = 20.0


@pytest.fixture(scope="module")
def world(
    tmp_path_factory: pytest.TempPathFactory, database_backend: str, request: pytest.FixtureRequest
) -> Iterator[World]:
    with seeded_world(request, database_backend, tmp_path_factory.mktemp("levels")) as world:
        yield world


@pytest.fixture(scope="module")
def server(world: World) -> Iterator[ServerProcess]:
    with ServerProcess(world.installation, env=EXTRA) as proc:
        yield proc


class Logs:
    def __init__(self) -> None:
        self.levels: list[str] = []

    async def __call__(self, params: types.LoggingMessageNotificationParams) -> None:
        self.levels.append(params.level)

    def take(self) -> list[str]:
        taken, self.levels = self.levels, []
        return taken


async def _report(client: Client) -> None:
    """One call of the test tool that logs at debug, info and warning."""
    result = await client.call_tool("chantest.report", {})
    assert not result.is_error, result.content


@asynccontextmanager
async def _http(server: ServerProcess, world: World, **options: Any) -> AsyncIterator[Client]:
    token = world.token(world.demo_id, email=DEMO_EMAIL)
    async with (
        httpx2.AsyncClient(headers=headers(token), timeout=30.0) as http,
        Client(
            streamable_http_client(server.mcp_url, http_client=http),
            mode="legacy",
            read_timeout_seconds=30,
            **options,
        ) as client,
    ):
        yield client


async def test_the_level_is_kept_by_the_session_and_filters_log_messages(
    server: ServerProcess, world: World
) -> None:
    logs = Logs()
    token = world.token(world.demo_id, email=DEMO_EMAIL)
    async with (
        httpx_session(server, token) as other_sid,  # another session of the same user
        _http(server, world, logging_callback=logs) as client,
    ):
        assert client.server_capabilities.logging is not None
        await _report(client)
        assert logs.take() == ["info", "warning"]  # never set: info and above

        await client.set_logging_level("warning")
        rows = await world.installation.query(
            "SELECT log_level FROM mcp_sessions WHERE user_id = ? AND log_level IS NOT NULL",
            world.demo_id,
        )
        assert rows == [("warning",)]  # this session only
        await _report(client)
        assert logs.take() == ["warning"]

        await client.set_logging_level("debug")
        await _report(client)
        assert logs.take() == ["debug", "info", "warning"]
        other = await world.installation.query(
            "SELECT log_level FROM mcp_sessions WHERE id = ?", other_sid
        )
        assert other == [(None,)]


@asynccontextmanager
async def httpx_session(server: ServerProcess, token: str) -> AsyncIterator[str]:
    """A raw 2025-11-25 session (initialize + initialized); its id. Ended with DELETE."""
    hdrs = {**JSON_ACCEPT, **headers(token)}
    async with httpx.AsyncClient(timeout=30.0) as http:
        opened = await http.post(
            server.mcp_url,
            headers=hdrs,
            json={
                "jsonrpc": "2.0",
                "id": 0,
                "method": "initialize",
                "params": {
                    "protocolVersion": LEGACY,
                    "capabilities": {},
                    "clientInfo": {"name": "levels-test", "version": "0"},
                },
            },
        )
        assert opened.status_code == 200, opened.text
        sid = opened.headers["mcp-session-id"]
        in_session = {**hdrs, "mcp-session-id": sid, "mcp-protocol-version": LEGACY}
        done = await http.post(
            server.mcp_url,
            headers=in_session,
            json={"jsonrpc": "2.0", "method": "notifications/initialized"},
        )
        assert done.status_code == 202
        try:
            yield sid
        finally:
            await http.delete(server.mcp_url, headers=in_session)


async def _rpc(server: ServerProcess, hdrs: dict[str, str], body: dict[str, Any]) -> Any:
    async with httpx.AsyncClient(timeout=30.0) as http:
        resp = await http.post(server.mcp_url, headers=hdrs, json=body)
    assert resp.status_code == 200, resp.text
    text = resp.text
    if resp.headers["content-type"].startswith("text/event-stream"):
        data = [line[5:] for line in text.splitlines() if line.startswith("data:")]
        text = data[-1]
    return httpx.Response(200, content=text).json()


async def test_an_unknown_level_is_refused_naming_the_valid_ones(
    server: ServerProcess, world: World
) -> None:
    token = world.token(world.demo_id, email=DEMO_EMAIL)
    async with httpx_session(server, token) as sid:
        hdrs = {
            **JSON_ACCEPT,
            **headers(token),
            "mcp-session-id": sid,
            "mcp-protocol-version": LEGACY,
        }
        body = {"jsonrpc": "2.0", "id": 1, "method": "logging/setLevel"}
        answer = await _rpc(server, hdrs, {**body, "params": {"level": "loud"}})
        assert answer["error"]["code"] == types.INVALID_PARAMS
        message = answer["error"]["message"]
        assert "'loud'" in message and "debug" in message and "emergency" in message
        rows = await world.installation.query(
            "SELECT log_level FROM mcp_sessions WHERE id = ?", sid
        )
        assert rows == [(None,)]
        ok = await _rpc(server, hdrs, {**body, "params": {"level": "error"}})
        assert ok["result"] == {}
        rows = await world.installation.query(
            "SELECT log_level FROM mcp_sessions WHERE id = ?", sid
        )
        assert rows == [("error",)]


async def test_the_2026_era_has_no_set_level(server: ServerProcess, world: World) -> None:
    token = world.token(world.demo_id, email=DEMO_EMAIL)
    async with http_client(server.mcp_url, token, mode="auto") as (client, _):
        assert client.protocol_version == "2026-07-28"
        with pytest.raises(MCPError) as refused:
            await client.session.set_logging_level("debug")
        assert refused.value.error.code == types.METHOD_NOT_FOUND


def _append(path: Path) -> TextIO:
    return open(path, "a")


@asynccontextmanager
async def _stdio(world: World, mode: Mode, **options: Any) -> AsyncIterator[Client]:
    installation = world.installation
    params = StdioServerParameters(
        command=PY,
        args=mana_argv(installation.data_dir, "serve", "--stdio", "--as", DEMO_EMAIL)[1:],
        env=installation.env(EXTRA),
        cwd=str(REPO),
    )
    with _append(installation.data_dir / "stdio.err") as errlog:
        async with Client(
            stdio_client(params, errlog=errlog), mode=mode, read_timeout_seconds=30, **options
        ) as client:
            yield client


async def test_stdio_keeps_the_level_and_delivers_resource_updates(world: World) -> None:
    logs = Logs()
    updated: list[str] = []
    arrived = asyncio.Event()

    async def on_message(message: Any) -> None:
        if isinstance(message, types.ResourceUpdatedNotification):
            updated.append(str(message.params.uri))
            arrived.set()

    async with _stdio(world, "legacy", logging_callback=logs, message_handler=on_message) as c:
        caps = c.server_capabilities
        assert caps.logging is not None
        assert caps.resources is not None and caps.resources.subscribe is True
        await c.set_logging_level("warning")
        await _report(c)
        assert logs.take() == ["warning"]

        await c.subscribe_resource("mana://space")
        created = await c.call_tool("notes.create", {"title": "From stdio"})
        assert not created.is_error
        await asyncio.wait_for(arrived.wait(), ARRIVAL_GUARD_SECONDS)
        assert updated == ["mana://space"]
