"""Session state across two `mana serve --http` replicas on one PostgreSQL database: a client
subscribed through replica A (whose GET stream A holds) hears of a note changed through replica
B (the update travels on LISTEN/NOTIFY to A); a log level set through one replica filters the
log messages of calls that a round-robin proxy sends to either."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx2
import mcp_types as types
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from mana_cli.demo import DEMO_EMAIL
from tests.mcp.support import ServerProcess, World, headers, http_client, replica_pair
from tool_registry.testing.proxy import RoundRobinProxy

pytestmark = pytest.mark.filterwarnings("ignore::mcp.shared.exceptions.MCPDeprecationWarning")

EXTRA = {"MANA_EXTRA_TOOLS": "tests.mcp.channel_tools:TOOLS"}
# Only a failure guard: a notification that never comes fails the test after this long.
ARRIVAL_GUARD_SECONDS = 20.0


@pytest.fixture(scope="module")
def pair(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[World, ServerProcess, ServerProcess]]:
    data_dir = tmp_path_factory.mktemp("state-replicas")
    with replica_pair(request, data_dir, env=EXTRA) as pair:
        yield pair


async def test_an_update_written_on_one_replica_reaches_a_stream_on_the_other(
    pair: tuple[World, ServerProcess, ServerProcess],
) -> None:
    world, a, b = pair
    token = world.token(world.demo_id, email=DEMO_EMAIL)
    uris: list[str] = []
    arrived = asyncio.Event()

    async def on_message(message: Any) -> None:
        if isinstance(message, types.ResourceUpdatedNotification):
            uris.append(str(message.params.uri))
            arrived.set()

    async with (
        http_client(b.mcp_url, token, mode="auto") as (writer, _),
        http_client(a.mcp_url, token, mode="legacy", message_handler=on_message) as (sub, _),
    ):
        made = await writer.call_tool("notes.create", {"title": "Shared"})
        note = made.structured_content
        assert note is not None
        uri = f"mana://notes/{note['id']}"
        await sub.subscribe_resource(uri)
        for _ in range(400):  # the GET stream (on A) opens in the background
            rows = await world.installation.query(
                "SELECT listener FROM mcp_sessions WHERE user_id = ? AND listener IS NOT NULL",
                world.demo_id,
            )
            if rows:
                break
            await asyncio.sleep(0.05)
        assert rows, "the client's GET stream never opened"
        await writer.call_tool("notes.update", {"id": note["id"], "body": "written on B"})
        await asyncio.wait_for(arrived.wait(), ARRIVAL_GUARD_SECONDS)
        assert uris == [uri]


async def test_a_log_level_holds_on_every_replica(
    pair: tuple[World, ServerProcess, ServerProcess],
) -> None:
    world, a, b = pair
    token = world.token(world.demo_id, email=DEMO_EMAIL)
    levels: list[str] = []

    async def on_log(params: types.LoggingMessageNotificationParams) -> None:
        levels.append(params.level)

    proxy = RoundRobinProxy([("127.0.0.1", a.port), ("127.0.0.1", b.port)])
    async with (
        proxy,
        httpx2.AsyncClient(headers=headers(token), timeout=30.0) as http,
        Client(
            streamable_http_client(proxy.url + "/mcp", http_client=http),
            mode="legacy",
            read_timeout_seconds=30,
            logging_callback=on_log,
        ) as client,
    ):
        await client.set_logging_level("warning")
        for _ in range(4):
            result = await client.call_tool("chantest.report", {})
            assert not result.is_error, result.content
        assert levels == ["warning"] * 4
    assert proxy.served_by(0) >= 2 and proxy.served_by(1) >= 2
