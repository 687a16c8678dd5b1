"""Progress for long lists with the real Python `mcp` client, in both eras: against a real
`mana serve --http` process, a list of more than two pages reports increasing progress ending at
its total, and its result equals the one a call without a progress token gets; once over
`mana serve --stdio`."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from mcp import Client

from mana_cli.demo import DEMO_EMAIL
from mana_cli.runtime import open_runtime
from tests.mcp.support import (
    MODES,
    Mode,
    ServerProcess,
    World,
    http_client,
    seeded_world,
    stdio_client_for,
)
from tool_registry.membership import require_member
from tool_registry.store.records import PAGE_SIZE, ScopedStore

SEEDED = 250
LIMIT = 500
Progress = tuple[float, float | None, str | None]


async def _seed_mood(world: World) -> None:
    """SEEDED mood entries in the demo user's personal space, stored as `mood.log` stores them."""
    async with open_runtime(world.installation.settings()) as rt:
        access = await require_member(rt.accounts, world.demo_id, world.personal_id)
        async with rt.db.transaction() as tx:
            store = ScopedStore(
                tx, user_id=world.demo_id, access=access, clock=rt.clock, writable=True
            )
            for i in range(SEEDED):
                at = f"2026-09-{1 + i % 30:02d}T{i % 24:02d}:{i % 60:02d}:00Z"
                await store.insert("mood_entries", {"score": 1 + i % 5, "note": None, "at": at})


@pytest.fixture(scope="module")
def world(
    tmp_path_factory: pytest.TempPathFactory, database_backend: str, request: pytest.FixtureRequest
) -> Iterator[World]:
    with seeded_world(request, database_backend, tmp_path_factory.mktemp("listprog")) as world:
        asyncio.run(_seed_mood(world))
        yield world


@pytest.fixture(scope="module")
def server(world: World) -> Iterator[ServerProcess]:
    with ServerProcess(world.installation) as proc:
        yield proc


async def _list_twice(client: Client) -> tuple[dict[str, Any], dict[str, Any], list[Progress]]:
    """mood.list with a progress token and without: both results and the reports heard."""
    reported: list[Progress] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        reported.append((progress, total, message))

    args = {"limit": LIMIT}
    with_token = await client.call_tool("mood.list", args, progress_callback=on_progress)
    without = await client.call_tool("mood.list", args)
    for result in (with_token, without):
        assert not result.is_error, result.content
        assert result.structured_content is not None
    assert with_token.structured_content is not None and without.structured_content is not None
    return with_token.structured_content, without.structured_content, reported


def _check(with_token: dict[str, Any], without: dict[str, Any], reported: list[Progress]) -> None:
    count = len(without["entries"])
    assert count >= SEEDED
    assert with_token == without
    steps = [p for p, _, _ in reported]
    assert steps == sorted(set(steps)), reported  # strictly increasing
    assert steps == [*range(PAGE_SIZE, count, PAGE_SIZE), count]
    assert all(total == LIMIT for _, total, _ in reported[:-1])
    assert reported[-1] == (count, count, f"Listed {count} mood entries")


@pytest.mark.parametrize("mode", MODES)
async def test_a_long_list_reports_progress_over_http(
    server: ServerProcess, world: World, mode: Mode
) -> None:
    token = world.token(world.demo_id, email=DEMO_EMAIL)
    async with http_client(server.mcp_url, token, mode=mode) as (client, _):
        _check(*await _list_twice(client))


async def test_a_long_list_reports_progress_over_stdio(world: World) -> None:
    async with stdio_client_for(world.installation, "--as", DEMO_EMAIL) as client:
        _check(*await _list_twice(client))
