"""The conformance suite's fixtures (`tool_registry.testing.conformance_fixtures`): registered
only under `MANA_TEST_FIXTURES=conformance`, served through the ordinary registry, pipeline and
MCP adapter under the suite's names, never listed or exported otherwise."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import mcp_types as types
import pytest
from mcp import Client, MCPError
from mcp.client.context import ClientRequestContext
from mcp.types import ImageContent, PromptReference, TextContent

from mana_cli.runtime import EXTRA_MIGRATIONS, build_runtime_registry
from mcp_server import McpAdapter, stdio_adapter
from tests.mcp.support import MODES, Mode
from tool_registry.errors import ValidationFailed
from tool_registry.space_types import CATALOG_DIR
from tool_registry.testing import tool_kit
from tool_registry.testing.conformance_fixtures import PROMPTS, RESOURCES, TOOLS

FLAG = {"MANA_TEST_FIXTURES": "conformance"}


@asynccontextmanager
async def adapter(database_target: str, environ: dict[str, str]) -> AsyncIterator[McpAdapter]:
    """The stdio adapter of a new user's personal space on a registry built from `environ`."""
    registry = build_runtime_registry(environ)
    async with tool_kit(database_target, registry=registry, migrations=EXTRA_MIGRATIONS) as kit:
        user = await kit.user()
        yield stdio_adapter(kit.pipeline, user_id=user.id, space=None)


def test_a_normal_registry_holds_no_fixtures_and_the_catalogs_name_none() -> None:
    registry = build_runtime_registry({})
    assert not [s for s in registry.all() if s.fixture or s.module == "conformance"]
    assert not [r for r in registry.resources() if r.fixture]
    assert not [p for p in registry.prompts() if p.fixture]
    for tool in TOOLS:
        assert registry.get(tool.mcp_name) is None
    for path in CATALOG_DIR.glob("*.json"):
        text = path.read_text(encoding="utf-8")
        assert "conformance" not in text and "test://" not in text, path.name


def test_the_flag_adds_every_fixture_and_refuses_an_unknown_value() -> None:
    registry = build_runtime_registry(FLAG)
    assert all(registry.get(t.mcp_name) is t for t in TOOLS)
    assert all(registry.prompt(p.mcp_name) is p for p in PROMPTS)
    assert {r.name for r in RESOURCES} <= {r.name for r in registry.resources()}
    assert registry.export() == build_runtime_registry({}).export()
    with pytest.raises(ValidationFailed, match="unknown fixtures 'everything'"):
        build_runtime_registry({"MANA_TEST_FIXTURES": "everything"})


@pytest.mark.parametrize("mode", MODES)
async def test_a_normal_server_lists_no_fixture(database_target: str, mode: Mode) -> None:
    async with adapter(database_target, {}) as served, Client(served.server, mode=mode) as client:
        tools = {t.name for t in (await client.list_tools()).tools}
        prompts = {p.name for p in (await client.list_prompts()).prompts}
        resources = {str(r.uri) for r in (await client.list_resources()).resources}
        templates = (await client.list_resource_templates()).resource_templates
        unknown = await client.call_tool("test_simple_text", {})
    exposed = {t.mcp_name for t in TOOLS} | {p.mcp_name for p in PROMPTS}
    assert tools and not tools & exposed
    assert not prompts & exposed
    assert not [u for u in resources if u.startswith("test://")]
    assert not [t for t in templates if t.uri_template.startswith("test://")]
    assert unknown.is_error


@pytest.mark.parametrize("mode", MODES)
async def test_the_flagged_server_serves_the_suites_names(database_target: str, mode: Mode) -> None:
    async with adapter(database_target, FLAG) as served, Client(served.server, mode=mode) as client:
        listed = {t.name: t for t in (await client.list_tools()).tools}
        assert {t.mcp_name for t in TOOLS} <= set(listed)
        schema = listed["json_schema_2020_12_tool"].input_schema
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        assert "address" in schema["$defs"] and schema["additionalProperties"] is False

        simple = await client.call_tool("test_simple_text", {})
        assert not simple.is_error
        assert simple.structured_content == {"text": "This is a simple text response for testing."}
        failed = await client.call_tool("test_error_handling", {})
        assert failed.is_error
        first = failed.content[0]
        assert isinstance(first, TextContent)
        assert "This tool intentionally returns an error for testing" in first.text

        text = await client.read_resource("test://static-text")
        assert text.contents[0].text == "This is the content of the static text resource."  # type: ignore[union-attr]
        data = await client.read_resource("test://template/123/data")
        body = json.loads(data.contents[0].text)  # type: ignore[union-attr]
        assert body == {"id": "123", "templateTest": True, "data": "Data for ID: 123"}
        listed_uris = {str(r.uri) for r in (await client.list_resources()).resources}
        assert {"test://static-text", "test://static-binary"} <= listed_uris

        prompt = await client.get_prompt(
            "test_prompt_with_arguments", {"arg1": "hello", "arg2": "world"}
        )
        content = prompt.messages[0].content
        assert isinstance(content, TextContent)
        assert content.text == "Prompt with arguments: arg1='hello', arg2='world'"
        image = await client.get_prompt("test_prompt_with_image")
        first_part = image.messages[0].content
        assert isinstance(first_part, ImageContent) and first_part.mime_type == "image/png"
        embedded = await client.get_prompt(
            "test_prompt_with_embedded_resource", {"resourceUri": "test://example-resource"}
        )
        assert embedded.messages[0].content.type == "resource"
        completed = await client.complete(
            PromptReference(name="test_prompt_with_arguments"), {"name": "arg1", "value": "par"}
        )
        assert completed.completion.values == ["paris", "park", "party"]


@pytest.mark.parametrize("mode", MODES)
async def test_the_input_required_fixtures_ask_under_the_suites_keys(
    database_target: str, mode: Mode
) -> None:
    """The multi-round fixture asks two questions and finishes with both answers: on
    2025-11-25 as two elicitation/create requests, on 2026-07-28 as input-required rounds the
    client retries (the suite's 0.2 scenarios look for the keys `step1` and `step2`)."""
    replies = iter([{"name": "Ann"}, {"color": "blue"}])
    asked: list[str] = []

    async def answer(
        context: ClientRequestContext, params: types.ElicitRequestParams
    ) -> types.ElicitResult:
        asked.append(params.message)
        return types.ElicitResult(action="accept", content=next(replies))

    async with (
        adapter(database_target, FLAG) as served,
        Client(served.server, mode=mode, elicitation_callback=answer) as client,
    ):
        result = await client.call_tool("test_input_required_result_multi_round", {})
    assert not result.is_error, result
    assert result.structured_content == {"text": "Ann likes blue."}
    assert asked == ["Step 1: What is your name?", "Step 2: What is your favorite color?"]


@pytest.mark.parametrize("mode", MODES)
async def test_the_roots_and_questions_together_fixtures(database_target: str, mode: Mode) -> None:
    """`test_input_required_result_list_roots` lists the client's roots and
    `test_input_required_result_multiple_inputs` asks a form, the model and the roots at once
    (the suite's 0.2 scenarios look for the three methods in one input-required result);
    `test_missing_capability` needs sampling: -32021 on 2026-07-28, a tool error before."""
    asked: list[str] = []

    async def elicit(
        context: ClientRequestContext, params: types.ElicitRequestParams
    ) -> types.ElicitResult:
        asked.append("elicit")
        return types.ElicitResult(action="accept", content={"name": "Alice"})

    async def sample(
        context: ClientRequestContext, params: types.CreateMessageRequestParams
    ) -> types.CreateMessageResult:
        asked.append("sample")
        return types.CreateMessageResult(
            role="assistant", content=types.TextContent(text="Hello there!"), model="m"
        )

    async def roots(context: ClientRequestContext) -> types.ListRootsResult:
        asked.append("roots")
        return types.ListRootsResult(roots=[types.Root(uri="file:///work")])

    async with adapter(database_target, FLAG) as served:
        async with Client(
            served.server,
            mode=mode,
            elicitation_callback=elicit,
            sampling_callback=sample,
            list_roots_callback=roots,
        ) as client:
            listed = await client.call_tool("test_input_required_result_list_roots", {})
            many = await client.call_tool("test_input_required_result_multiple_inputs", {})
        assert listed.structured_content == {"text": "The client offers 1 root(s): file:///work"}
        assert many.structured_content == {"text": "Hello there! Alice (1 root(s))"}
        assert sorted(asked) == ["elicit", "roots", "roots", "sample"]
        async with Client(served.server, mode=mode) as bare:
            if mode == "legacy":
                needs = await bare.call_tool("test_missing_capability", {})
                assert needs.is_error
                return
            with pytest.raises(MCPError) as caught:
                await bare.call_tool("test_missing_capability", {})
    assert caught.value.error.code == types.MISSING_REQUIRED_CLIENT_CAPABILITY
    assert caught.value.error.data == {"requiredCapabilities": {"sampling": {}}}


@pytest.mark.parametrize("mode", MODES)
async def test_a_resource_not_found_names_its_uri(database_target: str, mode: Mode) -> None:
    """Unknown URIs and unknown records answer the era's resource-not-found code with the URI
    in `data.uri` (SEP-2164), so a client can tell which of its reads failed."""
    code = -32002 if mode == "legacy" else -32602
    async with adapter(database_target, {}) as served, Client(served.server, mode=mode) as client:
        for uri in ("test://nonexistent-resource", "mana://notes/no-such-note"):
            with pytest.raises(MCPError) as refused:
                await client.read_resource(uri)
            assert refused.value.error.code == code, uri
            assert refused.value.error.data == {"uri": uri}


@pytest.mark.parametrize("mode", MODES)
async def test_a_prompt_may_ask_the_user_first(database_target: str, mode: Mode) -> None:
    """prompts/get whose renderer asks: elicitation/create on 2025-11-25, an input-required
    round on 2026-07-28 (the suite's `test_input_required_result_prompt`)."""
    asked: list[str] = []

    async def answer(
        context: ClientRequestContext, params: types.ElicitRequestParams
    ) -> types.ElicitResult:
        asked.append(params.message)
        return types.ElicitResult(action="accept", content={"context": "the garden"})

    async with (
        adapter(database_target, FLAG) as served,
        Client(served.server, mode=mode, elicitation_callback=answer) as client,
    ):
        prompt = await client.get_prompt("test_input_required_result_prompt")
    content = prompt.messages[0].content
    assert isinstance(content, TextContent)
    assert content.text == "Work in this context: the garden."
    assert asked == ["What context should the prompt use?"]


@pytest.mark.parametrize("mode", MODES)
async def test_a_prompt_that_must_ask_a_client_without_elicitation(
    database_target: str, mode: Mode
) -> None:
    """A prompt whose renderer needs an answer the client cannot give: on 2026-07-28 the error
    -32021 naming the capability (`requiredCapabilities`), on 2025-11-25 a clear refusal."""
    async with adapter(database_target, FLAG) as served, Client(served.server, mode=mode) as client:
        with pytest.raises(MCPError) as refused:
            await client.get_prompt("test_input_required_result_prompt")
    error = refused.value.error
    assert "elicitation" in error.message
    if mode == "legacy":
        assert error.code == types.INVALID_REQUEST
    else:
        assert error.code == types.MISSING_REQUIRED_CLIENT_CAPABILITY
        assert error.data == {"requiredCapabilities": {"elicitation": {"form": {}}}}
