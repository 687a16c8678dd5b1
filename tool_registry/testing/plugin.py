"""pytest plugin (auto-loaded via the `pytest11` entry point): `mana_kit` and `mana_mcp`
fixtures."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest_asyncio

from tool_registry.testing import ToolKit, tool_kit

if TYPE_CHECKING:  # the MCP layer is imported only when the fixture is used
    from mana_http.testing import McpTestServer


@pytest_asyncio.fixture
async def mana_kit(tmp_path: Path) -> AsyncIterator[ToolKit]:
    """A `ToolKit` over every bundled module on a fresh SQLite file in `tmp_path`."""
    async with tool_kit(tmp_path / "mana.db") as kit:
        yield kit


@pytest_asyncio.fixture
async def mana_mcp(mana_kit: ToolKit, tmp_path: Path) -> AsyncIterator[McpTestServer]:
    """The MCP HTTP server over `mana_kit`'s pipeline, in-process: `mana_mcp.client(user,
    space)` is an `mcp.Client` that carries that identity (a real token and the space header),
    so calls go through auth, the space check and the gate like a remote client's."""
    from mana_http.testing import McpTestServer

    async with McpTestServer(mana_kit.pipeline, tmp_path / "mcp-keys") as server:
        yield server
