"""An in-process persona world: seeded personas, the real HTTP app (token route, MCP endpoint,
space header) served without a network, and a connector for the runner that goes through it."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from agent_loop.tools import McpClientLike
from mana_http.testing import McpTestServer
from personas.runner import TickFailed
from tool_registry.pipeline import Pipeline


class InProcessConnector:
    """Logs in through `POST /auth/token` and opens MCP sessions through the app in-process."""

    def __init__(self, server: McpTestServer) -> None:
        self.server = server
        self.logins: list[str] = []
        self.spaces: list[str] = []

    async def login(self, email: str, password: str) -> str:
        self.logins.append(email)
        async with self.server.http() as http:
            response = await http.post("/auth/token", json={"email": email, "password": password})
        if response.status_code != 200:
            raise TickFailed(f"login failed: POST /auth/token answered {response.status_code}")
        token: str = response.json()["access_token"]
        return token

    @contextlib.asynccontextmanager
    async def session(self, token: str, space: str) -> AsyncIterator[McpClientLike]:
        self.spaces.append(space)
        headers = {"Authorization": f"Bearer {token}", "X-Mana-Space": space}
        async with (
            self.server.http(headers=headers) as http,
            self.server.client("unused", http=http) as client,
        ):
            yield client


@contextlib.asynccontextmanager
async def serving(pipeline: Pipeline, data_dir: Path) -> AsyncIterator[InProcessConnector]:
    async with McpTestServer(pipeline, data_dir) as server:
        yield InProcessConnector(server)
