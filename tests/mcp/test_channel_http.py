"""The client channel over a real `mana serve --http` process with the real Python `mcp` client,
in both protocol eras: elicitation (asked directly in 2025-11-25, through input-required rounds
in 2026-07-28), sampling, progress, log messages and attached content; a forged or foreign
request state is rejected (-32602) while answers sent without one are used; a client without
the capability is told why; a question inside a write transaction is refused."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx2
import mcp_types as types
import pytest
from mcp import Client
from mcp.client.context import ClientRequestContext
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from mana_cli.demo import DEMO_EMAIL
from mcp_adapter.input_rounds import STATE_REJECTED
from tests.mcp.channel_tools import PNG, WAV
from tests.mcp.support import MODES, Mode, ServerProcess, World, headers, seeded_world

EXTRA = {"MANA_EXTRA_TOOLS": "tests.mcp.channel_tools:TOOLS"}


@pytest.fixture(scope="module")
def world(
    tmp_path_factory: pytest.TempPathFactory, database_backend: str, request: pytest.FixtureRequest
) -> Iterator[World]:
    with seeded_world(request, database_backend, tmp_path_factory.mktemp("channel")) as world:
        yield world


@pytest.fixture(scope="module")
def runs_dir(world: World) -> Path:
    folder = world.data_dir / "chantest-runs"
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


class Answers:
    """An elicitation callback that answers from a script and records what it was asked."""

    def __init__(self, *replies: types.ElicitResult) -> None:
        self.replies = list(replies)
        self.asked: list[str] = []

    async def __call__(
        self, context: ClientRequestContext, params: types.ElicitRequestParams
    ) -> types.ElicitResult | types.ErrorData:
        assert isinstance(params, types.ElicitRequestFormParams)
        self.asked.append(params.message)
        return self.replies.pop(0)


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


def accept(**content: Any) -> types.ElicitResult:
    return types.ElicitResult(action="accept", content=content)


@pytest.mark.parametrize("mode", MODES)
async def test_a_tool_asks_two_questions_in_sequence(
    server: ServerProcess, world: World, runs_dir: Path, mode: Mode
) -> None:
    answers = Answers(accept(name="Ann"), accept(colour="green"))
    before = runs(runs_dir, "ask")
    async with client_for(server, world, mode, elicitation_callback=answers) as client:
        result = await client.call_tool("chantest.ask", {"topic": "friend"})
    assert not result.is_error, result.content
    assert result.structured_content == {
        "name": "Ann",
        "colour": "green",
        "actions": ["accept", "accept"],
        "refused": None,
    }
    assert answers.asked == ["What is your name, friend?", "Your favourite colour?"]
    # 2025-11-25 asks within one run; 2026-07-28 runs the tool once per round (two questions)
    assert runs(runs_dir, "ask") - before == (1 if mode == "legacy" else 3)


@pytest.mark.parametrize("mode", MODES)
async def test_declined_and_invalid_answers_count_as_declined(
    server: ServerProcess, world: World, mode: Mode
) -> None:
    declined = Answers(types.ElicitResult(action="decline"))
    async with client_for(server, world, mode, elicitation_callback=declined) as client:
        result = await client.call_tool("chantest.ask", {})
    assert result.structured_content is not None
    assert result.structured_content["actions"] == ["decline"]
    # `name` must be a non-empty string: an empty one does not match the form
    invalid = Answers(accept(name=""))
    async with client_for(server, world, mode, elicitation_callback=invalid) as client:
        result = await client.call_tool("chantest.ask", {})
    assert result.structured_content is not None
    assert result.structured_content["actions"] == ["decline"]
    assert result.structured_content["name"] is None


@pytest.mark.parametrize("mode", MODES)
async def test_a_client_without_the_capability_is_told_why(
    server: ServerProcess, world: World, mode: Mode
) -> None:
    async with client_for(server, world, mode) as client:
        asked = await client.call_tool("chantest.ask", {})
        sampled = await client.call_tool("chantest.sample", {})
    assert asked.structured_content is not None and sampled.structured_content is not None
    assert "did not declare the elicitation capability" in asked.structured_content["refused"]
    assert "did not declare the sampling capability" in sampled.structured_content["refused"]


@pytest.mark.parametrize("mode", MODES)
async def test_sampling_asks_the_client_model(
    server: ServerProcess, world: World, mode: Mode
) -> None:
    seen: list[types.CreateMessageRequestParams] = []

    async def model(
        context: ClientRequestContext, params: types.CreateMessageRequestParams
    ) -> types.CreateMessageResult:
        seen.append(params)
        return types.CreateMessageResult(
            role="assistant",
            content=types.TextContent(text="Why did the habit cross the road?"),
            model="test-model",
            stop_reason="endTurn",
        )

    async with client_for(server, world, mode, sampling_callback=model) as client:
        result = await client.call_tool("chantest.sample", {})
    assert result.structured_content == {
        "text": "Why did the habit cross the road?",
        "model": "test-model",
        "refused": None,
    }
    assert len(seen) == 1 and seen[0].system_prompt == "Be brief." and seen[0].max_tokens == 50
    message = seen[0].messages[0]
    assert isinstance(message.content, types.TextContent)
    assert message.content.text == "Tell me a short joke."


@pytest.mark.filterwarnings("ignore:The logging capability is deprecated")
@pytest.mark.parametrize("mode", MODES)
async def test_progress_and_log_messages_reach_the_client(
    server: ServerProcess, world: World, mode: Mode
) -> None:
    reported: list[tuple[float, float | None, str | None]] = []
    logs: list[types.LoggingMessageNotificationParams] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        reported.append((progress, total, message))

    async def on_log(params: types.LoggingMessageNotificationParams) -> None:
        logs.append(params)

    async with client_for(server, world, mode, logging_callback=on_log) as client:
        result = await client.call_tool("chantest.report", {}, progress_callback=on_progress)
        assert not result.is_error, result.content
        # without a progress token: no progress notification
        await client.call_tool("chantest.report", {})
    assert reported == [(step, 3, f"step {step} of 3") for step in range(4)]
    if mode == "legacy":
        # no logging/setLevel yet: info and above (debug dropped)
        assert [(m.level, m.data, m.logger) for m in logs] == [
            ("info", "info line", "chantest"),
            ("warning", "warning line", "chantest"),
        ] * 2
        logs.clear()
        async with client_for(server, world, mode, logging_callback=on_log) as client:
            await client.set_logging_level("warning")
            await client.call_tool("chantest.report", {})
            await client.set_logging_level("debug")
            await client.call_tool("chantest.report", {})
        assert [m.level for m in logs] == ["warning", "debug", "info", "warning"]
    else:
        assert logs == []  # 2026-07-28: the request did not opt in
        async with client_for(
            server, world, mode, logging_callback=on_log, log_level="debug"
        ) as client:
            await client.call_tool("chantest.report", {})
        assert [m.level for m in logs] == ["debug", "info", "warning"]


async def _first_round(client: Client, args: dict[str, Any]) -> types.InputRequiredResult:
    first = await client.session.call_tool("chantest.ask", args, allow_input_required=True)
    assert isinstance(first, types.InputRequiredResult)
    assert first.request_state is not None and first.input_requests is not None
    assert list(first.input_requests) == ["name"]
    return first


async def test_a_forged_or_foreign_request_state_is_rejected(
    server: ServerProcess, world: World, runs_dir: Path
) -> None:
    answer: types.InputResponses = {"name": accept(name="Mallory")}
    async with client_for(server, world, "auto", elicitation_callback=Answers()) as client:
        first = await _first_round(client, {"topic": "a"})
        state = first.request_state
        assert state is not None
        version, payload, mac = state.split(".")
        forged = [
            f"{version}.{payload}.{mac[:-2]}AA",  # wrong signature
            f"{version}.{payload[:-2]}AA.{mac}",  # altered claims
            "garbage",
        ]
        before = runs(runs_dir, "ask")
        for bad in forged:
            await _rejected(client, {"topic": "a"}, answer, bad)
        # the state of a call with other arguments does not carry over
        await _rejected(client, {"topic": "b"}, answer, state)
        assert runs(runs_dir, "ask") == before  # the tool never ran on a rejected state
        # the genuine state moves on to the second question
        moved = await client.session.call_tool(
            "chantest.ask",
            {"topic": "a"},
            input_responses=answer,
            request_state=state,
            allow_input_required=True,
        )
        assert isinstance(moved, types.InputRequiredResult)
        assert moved.input_requests is not None and list(moved.input_requests) == ["colour"]
    # another user cannot use demo's state
    bob_token = world.token(world.bob_id)
    async with (
        httpx2.AsyncClient(headers=headers(bob_token), timeout=30.0) as http,
        Client(
            streamable_http_client(server.mcp_url, http_client=http), elicitation_callback=Answers()
        ) as bob,
    ):
        await _rejected(bob, {"topic": "a"}, answer, state)


async def _rejected(
    client: Client, args: dict[str, Any], answer: types.InputResponses, state: str
) -> None:
    with pytest.raises(MCPError) as caught:
        await client.session.call_tool(
            "chantest.ask",
            args,
            input_responses=answer,
            request_state=state,
            allow_input_required=True,
        )
    assert caught.value.error.code == types.INVALID_PARAMS
    assert caught.value.error.message == STATE_REJECTED


async def test_responses_without_a_state_answer_what_is_asked_and_extra_keys_are_ignored(
    server: ServerProcess, world: World
) -> None:
    """A first request may bring its answers (the state only carries earlier rounds): the
    answers the tool asks for are used, unknown keys ignored, a missing one asked for."""
    responses: types.InputResponses = {
        "name": accept(name="Ann"),
        "colour": accept(colour="blue"),
        "unknown": accept(anything="at all"),
    }
    async with client_for(server, world, "auto", elicitation_callback=Answers()) as client:
        done = await client.session.call_tool(
            "chantest.ask", {"topic": "x"}, input_responses=responses, allow_input_required=True
        )
        assert isinstance(done, types.CallToolResult) and not done.is_error, done
        assert done.structured_content == {
            "name": "Ann",
            "colour": "blue",
            "actions": ["accept", "accept"],
            "refused": None,
        }
        partial = await client.session.call_tool(
            "chantest.ask",
            {"topic": "x"},
            input_responses={"name": accept(name="Ann")},
            allow_input_required=True,
        )
    assert isinstance(partial, types.InputRequiredResult)
    assert partial.input_requests is not None and list(partial.input_requests) == ["colour"]


@pytest.mark.parametrize("mode", MODES)
async def test_a_question_inside_a_write_transaction_is_refused(
    server: ServerProcess, world: World, mode: Mode
) -> None:
    answers = Answers(accept(name="x"))
    async with client_for(server, world, mode, elicitation_callback=answers) as client:
        result = await client.call_tool("chantest.askInWrite", {})
    assert result.is_error
    assert answers.asked == []  # nothing reached the client
    assert "QuestionInsideTransaction" in server.stderr()


@pytest.mark.parametrize("mode", MODES)
async def test_attachments_follow_the_json_text(
    server: ServerProcess, world: World, mode: Mode
) -> None:
    async with client_for(server, world, mode) as client:
        result = await client.call_tool("chantest.attach", {})
    assert not result.is_error, result.content
    assert result.structured_content == {"attached": 4}
    text, image, audio, markdown, blob = result.content
    assert isinstance(text, types.TextContent) and text.text == '{"attached":4}'
    assert isinstance(image, types.ImageContent) and image.mime_type == "image/png"
    assert isinstance(audio, types.AudioContent) and audio.mime_type == "audio/wav"
    assert base64.b64decode(image.data) == PNG and base64.b64decode(audio.data) == WAV
    assert isinstance(markdown, types.EmbeddedResource)
    assert isinstance(markdown.resource, types.TextResourceContents)
    assert (markdown.resource.uri, markdown.resource.text) == ("mana://test/a", "# A")
    assert isinstance(blob, types.EmbeddedResource)
    assert isinstance(blob.resource, types.BlobResourceContents)
    assert base64.b64decode(blob.resource.blob) == PNG


async def test_an_input_required_round_on_a_handshake_era_call_is_a_clear_error(
    server: ServerProcess, world: World
) -> None:
    async with client_for(server, world, "legacy") as client:
        result = await client.call_tool("chantest.endRound", {})
    assert result.is_error
    block = result.content[0]
    assert isinstance(block, types.TextContent)
    assert "asked for input in a way this connection cannot carry" in block.text
