"""A 2025-11-25 client's answers to the server's questions reach the replica that asked, over two
`mana serve --http` replicas on one PostgreSQL database.

The tool call runs on replica A, which sends `elicitation/create` (or `sampling/createMessage`)
on the call's stream; the client's answer is POSTed to replica B, which relays it to A
(`mana_http.answers`), and the call completes with the answer. Without the relay B's SDK drops
the answer and A waits for one that never comes: these tests then fail on the client's read
timeout. Two load balancers: one that sends every answer to the other replica (and everything
else to A), and the plain round-robin proxy."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import httpx
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
# more than a PostgreSQL NOTIFY payload may carry (8000 bytes)
LONG_ANSWER = "ha " * 6000
REPLIES = {"name": {"name": "Rita"}, "colour": {"colour": "green"}}


@pytest.fixture(scope="module")
def pair(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[World, ServerProcess, ServerProcess]]:
    data_dir = tmp_path_factory.mktemp("answer-replicas")
    with replica_pair(request, data_dir, env=EXTRA) as pair:
        yield pair


def _is_answer(body: bytes) -> bool:
    """Whether a POST body is the client's answer to a server request (a JSON-RPC response)."""
    try:
        message = json.loads(body)
    except ValueError:
        return False
    return isinstance(message, dict) and "method" not in message and "id" in message


class AnswersElsewhere(httpx2.AsyncBaseTransport):
    """A load balancer that sends the client's answers to one replica and every other request
    (the handshake, the GET stream, the tool calls) to the other."""

    def __init__(self, asking: ServerProcess, answering: ServerProcess) -> None:
        self.asking = asking.port
        self.answering = answering.port
        self.inner = httpx2.AsyncHTTPTransport()
        self.answers = 0

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        body = await request.aread()
        port = self.asking
        if request.method == "POST" and _is_answer(body):
            port = self.answering
            self.answers += 1
        request.url = request.url.copy_with(port=port)
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def _answer_form(
    context: ClientRequestContext, params: types.ElicitRequestParams
) -> types.ElicitResult:
    assert isinstance(params, types.ElicitRequestFormParams)
    field = next(iter(params.requested_schema["properties"]))
    return types.ElicitResult(action="accept", content=REPLIES[field])


async def _answer_sample(
    context: ClientRequestContext, params: types.CreateMessageRequestParams
) -> types.CreateMessageResult:
    return types.CreateMessageResult(
        role="assistant",
        content=types.TextContent(text=LONG_ANSWER),
        model="replica-test",
        stop_reason="endTurn",
    )


@asynccontextmanager
async def _legacy_client(url: str, token: str, http: httpx2.AsyncClient) -> AsyncIterator[Client]:
    async with Client(
        streamable_http_client(url, http_client=http),
        mode="legacy",
        read_timeout_seconds=30,
        elicitation_callback=_answer_form,
        sampling_callback=_answer_sample,
    ) as client:
        yield client


def _answers_counted(server: ServerProcess, route: str) -> float:
    text = httpx.get(f"{server.url}/metrics", timeout=10).text
    found = re.search(rf'^mana_mcp_client_answers_total{{route="{route}"}} (\S+)$', text, re.M)
    return float(found.group(1)) if found else 0.0


async def test_answers_posted_to_the_other_replica_reach_the_asking_one(
    pair: tuple[World, ServerProcess, ServerProcess],
) -> None:
    world, a, b = pair
    token = world.token(world.demo_id, email=DEMO_EMAIL)
    balancer = AnswersElsewhere(asking=a, answering=b)
    forwarded_before = _answers_counted(b, "forwarded")
    delivered_before = _answers_counted(a, "delivered")
    async with (
        httpx2.AsyncClient(headers=headers(token), timeout=30.0, transport=balancer) as http,
        _legacy_client(a.mcp_url, token, http) as client,
    ):
        asked = await client.call_tool("chantest.ask", {"topic": "replicas"})
        assert asked.structured_content is not None, asked.content
        assert asked.structured_content["name"] == REPLIES["name"]["name"]
        assert asked.structured_content["colour"] == REPLIES["colour"]["colour"]
        assert asked.structured_content["actions"] == ["accept", "accept"]

        sampled = await client.call_tool("chantest.sample", {})
        assert sampled.structured_content is not None, sampled.content
        assert sampled.structured_content["text"] == LONG_ANSWER
        assert sampled.structured_content["model"] == "replica-test"
    # three answers went to B, and B handed each to A
    assert balancer.answers == 3
    assert _answers_counted(b, "forwarded") - forwarded_before == 3
    assert _answers_counted(a, "delivered") - delivered_before == 3
    # each answer's row was deleted as A took it
    assert await world.installation.query("SELECT id FROM mcp_answers") == []


async def test_answers_through_a_round_robin_proxy(
    pair: tuple[World, ServerProcess, ServerProcess],
) -> None:
    world, a, b = pair
    token = world.token(world.demo_id, email=DEMO_EMAIL)
    forwarded_before = _answers_counted(a, "forwarded") + _answers_counted(b, "forwarded")
    proxy = RoundRobinProxy([("127.0.0.1", a.port), ("127.0.0.1", b.port)])
    async with (
        proxy,
        httpx2.AsyncClient(headers=headers(token), timeout=30.0) as http,
        _legacy_client(proxy.url + "/mcp", token, http) as client,
    ):
        for _ in range(3):
            asked = await client.call_tool("chantest.ask", {"topic": "round robin"})
            assert asked.structured_content is not None, asked.content
            assert asked.structured_content["actions"] == ["accept", "accept"]
            assert asked.structured_content["colour"] == REPLIES["colour"]["colour"]
    assert proxy.served_by(0) > 0 and proxy.served_by(1) > 0
    # some answers landed on the replica that had not asked (and still arrived)
    forwarded = _answers_counted(a, "forwarded") + _answers_counted(b, "forwarded")
    assert forwarded > forwarded_before
