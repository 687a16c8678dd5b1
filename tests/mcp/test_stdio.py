"""The stdio MCP server (`mana serve --stdio`) as a child process of the `mcp` client."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import mcp_types as types
import pytest

from mana_cli.main import main

from .stdio_support import WAIT_TOOLS, RawStdio, tools_call, wait_for_file
from .support import (
    BRAND_IMAGES,
    BRAND_SLUG,
    DEMO_EMAIL,
    MODES,
    PERSONAL_IMAGES,
    Installation,
    Mode,
    World,
    seed_world_async,
    seeded_world,
    stdio_client_for,
)


@pytest.fixture(scope="module")
def world(
    tmp_path_factory: pytest.TempPathFactory, database_backend: str, request: pytest.FixtureRequest
) -> Iterator[World]:
    with seeded_world(request, database_backend, tmp_path_factory.mktemp("mcp-stdio")) as world:
        yield world


def _ids(result: types.CallToolResult) -> set[str]:
    assert not result.is_error, result.content
    assert result.structured_content is not None
    return {i["id"] for i in result.structured_content["images"]}


@pytest.mark.parametrize("mode", MODES)
async def test_stdio_lists_and_calls(world: World, mode: Mode) -> None:
    async with stdio_client_for(
        world.installation, "--as", DEMO_EMAIL, "--space", BRAND_SLUG, mode=mode
    ) as client:
        assert client.protocol_version == ("2026-07-28" if mode == "auto" else "2025-11-25")
        names = {t.name for t in (await client.list_tools()).tools}
        assert "me.listReferenceImages" in names and "habits.list" not in names
        assert _ids(await client.call_tool("me.listReferenceImages", {})) == BRAND_IMAGES
        denied = await client.call_tool("habits.list", {})
        assert denied.is_error
        block = denied.content[0]
        assert isinstance(block, types.TextContent) and "not available in brand" in block.text


async def test_stdio_identity_from_environment(world: World) -> None:
    env = {"MANA_USER": DEMO_EMAIL}
    async with stdio_client_for(world.installation, env=env) as client:
        assert _ids(await client.call_tool("me.listReferenceImages", {})) == PERSONAL_IMAGES
        created = await client.call_tool("habits.create", {"name": "Read"})
        assert not created.is_error and created.structured_content is not None
        assert created.structured_content["name"] == "Read"


def test_stdio_refuses_a_space_the_user_is_not_in(
    world: World, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MANA_SPACE", world.bob_space_id)
    code = main([*world.installation.flags(), "serve", "--stdio", "--as", DEMO_EMAIL])
    out = capsys.readouterr()
    assert code == 1
    assert out.out == ""  # stdout belongs to the protocol
    assert "not a member" in out.err


def test_stdio_needs_an_identity(
    world: World, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MANA_USER", raising=False)
    code = main([*world.installation.flags(), "serve", "--stdio"])
    out = capsys.readouterr()
    assert code == 1 and out.out == ""
    assert "--as EMAIL" in out.err


# -- the client closes stdin: calls in flight finish and are answered ----------------------------


async def _audited(world: World, tool: str) -> int:
    """Audit rows of `tool` called over MCP (the seeded demo data has audit rows of its own)."""
    sql = "SELECT count(*) FROM audit_log WHERE tool = ? AND invoker = 'mcp'"
    ((count,),) = await world.installation.query(sql, tool)
    return int(count)


async def test_stdin_eof_lets_calls_in_flight_finish_and_answers_them(
    tmp_path: Path, database_target: str
) -> None:
    world = await seed_world_async(Installation(tmp_path, database_target))
    signals = tmp_path / "signals"
    signals.mkdir()
    env = {**WAIT_TOOLS, "MANA_KILLTEST_DIR": str(signals)}
    server = await RawStdio.start(world.installation, "stdio-eof", env)
    try:
        await server.send(tools_call(1, "killtest.wait", {"label": "in flight at EOF"}))
        await wait_for_file(signals / "entered")
        await server.send(tools_call(2, "habits.create", {"name": "sent just before EOF"}))
        server.close_stdin()  # the client leaves while both calls run
        await asyncio.sleep(0.1)
        (signals / "release").touch()
        code = await server.wait()
    finally:
        server.kill()
    assert code == 0, server.stderr()
    waited = server.answers[1]["result"]
    assert waited["isError"] is False and waited["structuredContent"] == {"released": True}
    assert server.answers[2]["result"]["isError"] is False
    assert await _audited(world, "killtest.wait") == 1  # the buffered read audit was flushed
    assert await _audited(world, "habits.create") == 1
    assert "Traceback" not in server.stderr()


async def test_a_call_that_outlives_the_shutdown_grace_is_stopped_and_the_server_exits_0(
    tmp_path: Path, database_target: str
) -> None:
    world = await seed_world_async(Installation(tmp_path, database_target))
    signals = tmp_path / "signals"
    signals.mkdir()
    env = {**WAIT_TOOLS, "MANA_KILLTEST_DIR": str(signals), "MANA_SHUTDOWN_GRACE_SECONDS": "1"}
    server = await RawStdio.start(world.installation, "stdio-grace", env)
    try:
        await server.send(tools_call(1, "killtest.wait", {"label": "never released"}))
        await wait_for_file(signals / "entered")
        server.close_stdin()
        code = await server.wait()
    finally:
        server.kill()
    assert code == 0, server.stderr()
    assert "result" not in server.answers.get(1, {})  # stopped at the deadline, never done
    assert "stopping calls still running at the shutdown deadline" in server.stderr()
    assert "Traceback" not in server.stderr()
