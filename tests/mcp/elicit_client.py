"""The real Python `mcp` client of the demo user against a `ServerProcess`, with an elicitation
callback that answers from a script: shared by the tests where a person answers the server's
questions (confirmations, proposal reviews)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx2
import mcp_types as types
from mcp import Client
from mcp.client.context import ClientRequestContext
from mcp.client.streamable_http import streamable_http_client

from mana_cli.demo import DEMO_EMAIL
from tests.mcp.support import Mode, ServerProcess, World, headers


class Answers:
    """An elicitation callback answering from a script, recording each form it was shown."""

    def __init__(self, *replies: types.ElicitResult) -> None:
        self.replies = list(replies)
        self.asked: list[types.ElicitRequestFormParams] = []

    @property
    def messages(self) -> list[str]:
        return [form.message for form in self.asked]

    async def __call__(
        self, context: ClientRequestContext, params: types.ElicitRequestParams
    ) -> types.ElicitResult | types.ErrorData:
        assert isinstance(params, types.ElicitRequestFormParams)
        self.asked.append(params)
        return self.replies.pop(0)


@asynccontextmanager
async def demo_client(
    server: ServerProcess, world: World, mode: Mode, space: str | None = None, **options: Any
) -> AsyncIterator[Client]:
    """The demo user's client in `space` (default: their personal space), in `mode`."""
    token = world.token(world.demo_id, email=DEMO_EMAIL)
    async with (
        httpx2.AsyncClient(headers=headers(token, space), timeout=30.0) as http,
        Client(
            streamable_http_client(server.mcp_url, http_client=http),
            mode=mode,
            read_timeout_seconds=30,
            **options,
        ) as client,
    ):
        yield client
