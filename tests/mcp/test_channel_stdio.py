"""The client channel over `mana serve --stdio` with the real Python `mcp` client, in both eras:
two questions in sequence, sampling, progress and log messages, attached content."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TextIO

import mcp_types as types
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.context import ClientRequestContext
from mcp.client.stdio import stdio_client

from mana_cli.demo import DEMO_EMAIL
from tests.mcp.support import MODES, PY, REPO, Mode, World, mana_argv, seeded_world

EXTRA = {"MANA_EXTRA_TOOLS": "tests.mcp.channel_tools:TOOLS"}


@pytest.fixture(scope="module")
def world(
    tmp_path_factory: pytest.TempPathFactory, database_backend: str, request: pytest.FixtureRequest
) -> Iterator[World]:
    with seeded_world(request, database_backend, tmp_path_factory.mktemp("chan-stdio")) as world:
        yield world


def _append(path: Path) -> TextIO:
    return open(path, "a")


@asynccontextmanager
async def stdio_for(world: World, mode: Mode, **options: Any) -> AsyncIterator[Client]:
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


@pytest.mark.parametrize("mode", MODES)
async def test_the_channel_over_stdio(world: World, mode: Mode) -> None:
    replies = [
        types.ElicitResult(action="accept", content={"name": "Ann"}),
        types.ElicitResult(action="accept", content={"colour": "blue"}),
    ]
    reported: list[float] = []
    logs: list[str] = []

    async def answer(
        context: ClientRequestContext, params: types.ElicitRequestParams
    ) -> types.ElicitResult:
        return replies.pop(0)

    async def model(
        context: ClientRequestContext, params: types.CreateMessageRequestParams
    ) -> types.CreateMessageResult:
        return types.CreateMessageResult(
            role="assistant", content=types.TextContent(text="ha"), model="m"
        )

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        reported.append(progress)

    async def on_log(params: types.LoggingMessageNotificationParams) -> None:
        logs.append(params.level)

    options: dict[str, Any] = {"log_level": "info"} if mode != "legacy" else {}
    async with stdio_for(
        world,
        mode,
        elicitation_callback=answer,
        sampling_callback=model,
        logging_callback=on_log,
        **options,
    ) as client:
        asked = await client.call_tool("chantest.ask", {})
        sampled = await client.call_tool("chantest.sample", {})
        await client.call_tool("chantest.report", {}, progress_callback=on_progress)
        attached = await client.call_tool("chantest.attach", {})
    assert asked.structured_content is not None
    assert (asked.structured_content["name"], asked.structured_content["colour"]) == (
        "Ann",
        "blue",
    )
    assert sampled.structured_content is not None and sampled.structured_content["text"] == "ha"
    assert reported == [0, 1, 2, 3]
    assert logs == ["info", "warning"]
    assert [b.type for b in attached.content] == ["text", "image", "audio", "resource", "resource"]
