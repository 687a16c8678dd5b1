"""What a call may ask of its client, by what the client declared, over a real
`mana serve --http` in both protocol eras: the client's roots (`roots/list` on 2025-11-25, an
input request on 2026-07-28); independent questions asked together (one 2026-07-28 round with
every question, asked in order on 2025-11-25; nothing asked unless the client can answer them
all); and a tool that needs a capability the client did not declare: on 2026-07-28 the JSON-RPC
error -32021 naming it in `requiredCapabilities`, with HTTP status 400 (checked on the wire), on
2025-11-25 a clear tool error."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import httpx2
import mcp_types as types
import pytest
from mcp import Client
from mcp.client.context import ClientRequestContext
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from mana_cli.demo import DEMO_EMAIL
from tests.mcp.support import JSON_ACCEPT, MODES, Mode, ServerProcess, World, headers, seeded_world

EXTRA = {"MANA_EXTRA_TOOLS": "tests.mcp.channel_tools:TOOLS"}
MODERN = "2026-07-28"
ROOTS = ["file:///home/demo/notes", "file:///home/demo/photos"]


@pytest.fixture(scope="module")
def world(
    tmp_path_factory: pytest.TempPathFactory, database_backend: str, request: pytest.FixtureRequest
) -> Iterator[World]:
    with seeded_world(request, database_backend, tmp_path_factory.mktemp("caps")) as world:
        yield world


@pytest.fixture(scope="module")
def runs_dir(world: World) -> Path:
    folder = world.data_dir / "captest-runs"
    folder.mkdir(exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def server(world: World, runs_dir: Path) -> Iterator[ServerProcess]:
    proc = ServerProcess(world.installation, env={**EXTRA, "MANA_CHANTEST_DIR": str(runs_dir)})
    try:
        proc.wait_ready()
        yield proc
    finally:
        proc.stop()


def runs(folder: Path, tool: str) -> int:
    path = folder / f"{tool}.runs"
    return int(path.read_text()) if path.exists() else 0


class Client3:
    """Answers all three kinds of question (a form, the model, the roots), recording each."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    async def elicit(
        self, context: ClientRequestContext, params: types.ElicitRequestParams
    ) -> types.ElicitResult:
        self.asked.append("elicit")
        return types.ElicitResult(action="accept", content={"name": "Ann"})

    async def sample(
        self, context: ClientRequestContext, params: types.CreateMessageRequestParams
    ) -> types.CreateMessageResult:
        self.asked.append("sample")
        return types.CreateMessageResult(
            role="assistant", content=types.TextContent(text="Why not?"), model="test-model"
        )

    async def roots(self, context: ClientRequestContext) -> types.ListRootsResult:
        self.asked.append("roots")
        return types.ListRootsResult(roots=[types.Root(uri=uri) for uri in ROOTS])


@asynccontextmanager
async def client_for(
    server: ServerProcess, world: World, mode: Mode, **options: Any
) -> AsyncIterator[Client]:
    token = world.token(world.demo_id, email=DEMO_EMAIL)
    async with (
        httpx2.AsyncClient(headers=headers(token), timeout=30.0) as http,
        Client(
            streamable_http_client(server.mcp_url, http_client=http),
            mode=mode,
            read_timeout_seconds=30,
            **options,
        ) as client,
    ):
        yield client


def _modern_call(
    server: ServerProcess, world: World, tool: str, capabilities: dict[str, Any]
) -> httpx.Response:
    """One raw 2026-07-28 `tools/call` declaring `capabilities`."""
    token = world.token(world.demo_id, email=DEMO_EMAIL)
    body = {
        "jsonrpc": "2.0",
        "id": 41,
        "method": "tools/call",
        "params": {
            "name": tool,
            "arguments": {},
            "_meta": {
                "io.modelcontextprotocol/protocolVersion": MODERN,
                "io.modelcontextprotocol/clientCapabilities": capabilities,
            },
        },
    }
    return httpx.post(
        server.mcp_url,
        json=body,
        headers={
            **JSON_ACCEPT,
            "authorization": f"Bearer {token}",
            "mcp-protocol-version": MODERN,
            "mcp-method": "tools/call",
            "mcp-name": tool,
        },
        timeout=30.0,
    )


def test_an_undeclared_capability_is_error_32021_with_status_400(
    server: ServerProcess, world: World, runs_dir: Path
) -> None:
    before = runs(runs_dir, "needSample")
    response = _modern_call(server, world, "chantest.needSample", {})
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["id"] == 41
    assert body["error"]["code"] == types.MISSING_REQUIRED_CLIENT_CAPABILITY == -32021
    assert body["error"]["data"] == {"requiredCapabilities": {"sampling": {}}}
    assert "sampling capability" in body["error"]["message"]
    assert runs(runs_dir, "needSample") == before + 1  # the tool ran and needed it
    # declared: the question travels in an input-required result instead
    asked = _modern_call(server, world, "chantest.needSample", {"sampling": {}})
    assert asked.status_code == 200, asked.text
    result = asked.json()["result"]
    assert result["resultType"] == "input_required"
    assert result["inputRequests"]["needed"]["method"] == "sampling/createMessage"


async def test_an_undeclared_capability_is_a_clear_tool_error_on_2025_11_25(
    server: ServerProcess, world: World
) -> None:
    async with client_for(server, world, "legacy") as client:
        result = await client.call_tool("chantest.needSample", {})
    assert result.is_error
    assert result.meta is not None
    assert result.meta["mana/error"]["reason"] == "client-cannot-ask"
    text = result.content[0]
    assert isinstance(text, types.TextContent)
    assert "chantest.needSample needs to ask its client" in text.text
    assert "did not declare the sampling capability" in text.text


@pytest.mark.parametrize("mode", MODES)
async def test_a_tool_lists_the_clients_roots(
    server: ServerProcess, world: World, mode: Mode
) -> None:
    answers = Client3()
    async with client_for(server, world, mode, list_roots_callback=answers.roots) as client:
        result = await client.call_tool("chantest.roots", {})
    assert not result.is_error, result.content
    assert result.structured_content == {"roots": ROOTS}
    assert answers.asked == ["roots"]


@pytest.mark.parametrize("mode", MODES)
async def test_roots_need_the_roots_capability(
    server: ServerProcess, world: World, mode: Mode
) -> None:
    async with client_for(server, world, mode) as client:
        if mode == "legacy":
            result = await client.call_tool("chantest.roots", {})
            assert result.is_error and result.meta is not None
            assert result.meta["mana/error"]["reason"] == "client-cannot-ask"
            return
        with pytest.raises(MCPError) as caught:
            await client.call_tool("chantest.roots", {})
    assert caught.value.error.code == types.MISSING_REQUIRED_CLIENT_CAPABILITY
    assert caught.value.error.data == {"requiredCapabilities": {"roots": {}}}


@pytest.mark.parametrize("mode", MODES)
async def test_questions_asked_together(
    server: ServerProcess, world: World, runs_dir: Path, mode: Mode
) -> None:
    answers = Client3()
    before = runs(runs_dir, "askAll")
    async with client_for(
        server,
        world,
        mode,
        elicitation_callback=answers.elicit,
        sampling_callback=answers.sample,
        list_roots_callback=answers.roots,
    ) as client:
        result = await client.call_tool("chantest.askAll", {})
    assert not result.is_error, result.content
    assert result.structured_content == {
        "name": "Ann",
        "text": "Why not?",
        "roots": ROOTS,
        "refused": None,
    }
    assert sorted(answers.asked) == ["elicit", "roots", "sample"]
    # 2025-11-25 asks within one run; 2026-07-28 asks all three in one round, then completes
    assert runs(runs_dir, "askAll") - before == (1 if mode == "legacy" else 2)


async def test_questions_asked_together_travel_in_one_round(
    server: ServerProcess, world: World
) -> None:
    answers = Client3()
    async with client_for(
        server,
        world,
        "auto",
        elicitation_callback=answers.elicit,
        sampling_callback=answers.sample,
        list_roots_callback=answers.roots,
    ) as client:
        first = await client.session.call_tool("chantest.askAll", {}, allow_input_required=True)
    assert isinstance(first, types.InputRequiredResult)
    assert first.input_requests is not None
    assert {key: r.method for key, r in first.input_requests.items()} == {
        "name": "elicitation/create",
        "joke": "sampling/createMessage",
        "roots": "roots/list",
    }


@pytest.mark.parametrize("mode", MODES)
async def test_nothing_is_asked_unless_the_client_can_answer_every_question(
    server: ServerProcess, world: World, mode: Mode
) -> None:
    answers = Client3()
    async with client_for(
        server, world, mode, elicitation_callback=answers.elicit, sampling_callback=answers.sample
    ) as client:
        result = await client.call_tool("chantest.askAll", {})
    assert not result.is_error, result.content
    assert result.structured_content is not None
    assert "roots capability" in str(result.structured_content["refused"])
    assert answers.asked == []
