"""Fixtures of the missions tests: `world` is a fresh missions world on the test's database
(`database_target`: each test using it runs on SQLite and on PostgreSQL)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest_asyncio

from tests.missions.helpers import World, open_world


@pytest_asyncio.fixture
async def world(database_target: str) -> AsyncIterator[World]:
    async with open_world(database_target) as w:
        yield w
