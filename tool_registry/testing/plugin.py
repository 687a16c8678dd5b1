"""pytest plugin (auto-loaded via the `pytest11` entry point): `mana_kit` fixture."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio

from tool_registry.testing import ToolKit, tool_kit


@pytest_asyncio.fixture
async def mana_kit(tmp_path: Path) -> AsyncIterator[ToolKit]:
    """A `ToolKit` over every bundled module on a fresh SQLite file in `tmp_path`."""
    async with tool_kit(tmp_path / "mana.db") as kit:
        yield kit
