"""2026-07-28 input-required rounds across two `mana serve --http` replicas on one PostgreSQL
database behind a round-robin proxy: a round's request state sealed by one replica is accepted
by the other (one shared secret), so a tool's two questions complete whichever replica serves
each retry."""

from __future__ import annotations

from collections.abc import Iterator

import httpx2
import mcp_types as types
import pytest
from mcp import Client
from mcp.client.context import ClientRequestContext
from mcp.client.streamable_http import streamable_http_client

from mana_cli.demo import DEMO_EMAIL
from tests.mcp.support import ServerProcess, World, headers, replica_pair
from tool_registry.testing.proxy import RoundRobinProxy

EXTRA = {"MANA_EXTRA_TOOLS": "tests.mcp.channel_tools:TOOLS"}


@pytest.fixture(scope="module")
def pair(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[World, ServerProcess, ServerProcess]]:
    data_dir = tmp_path_factory.mktemp("channel-replicas")
    with replica_pair(request, data_dir, env=EXTRA) as pair:
        yield pair


async def test_rounds_complete_across_replicas(
    pair: tuple[World, ServerProcess, ServerProcess],
) -> None:
    world, a, b = pair
    token = world.token(world.demo_id, email=DEMO_EMAIL)
    replies = {"name": {"name": "Rita"}, "colour": {"colour": "red"}}

    async def answer(
        context: ClientRequestContext, params: types.ElicitRequestParams
    ) -> types.ElicitResult:
        assert isinstance(params, types.ElicitRequestFormParams)
        field = next(iter(params.requested_schema["properties"]))
        return types.ElicitResult(action="accept", content=replies[field])

    proxy = RoundRobinProxy([("127.0.0.1", a.port), ("127.0.0.1", b.port)])
    async with (
        proxy,
        httpx2.AsyncClient(headers=headers(token), timeout=30.0) as http,
        Client(
            streamable_http_client(proxy.url + "/mcp", http_client=http),
            mode="2026-07-28",
            read_timeout_seconds=30,
            elicitation_callback=answer,
        ) as client,
    ):
        for _ in range(2):  # each call takes three rounds, alternating replicas
            result = await client.call_tool("chantest.ask", {"topic": "both"})
            assert result.structured_content is not None, result.content
            assert (result.structured_content["name"], result.structured_content["colour"]) == (
                "Rita",
                "red",
            )
    assert proxy.served_by(0) >= 3 and proxy.served_by(1) >= 3
