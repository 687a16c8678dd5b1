"""The stdio MCP server (`mana serve --stdio`) as a child process of the `mcp` client."""

from __future__ import annotations

import mcp_types as types
import pytest

from mana_cli.main import main

from .support import (
    BRAND_IMAGES,
    BRAND_SLUG,
    DEMO_EMAIL,
    MODES,
    PERSONAL_IMAGES,
    Mode,
    World,
    seed_world,
    stdio_client_for,
)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    return seed_world(tmp_path_factory.mktemp("mcp-stdio"))


def _ids(result: types.CallToolResult) -> set[str]:
    assert not result.is_error, result.content
    assert result.structured_content is not None
    return {i["id"] for i in result.structured_content["images"]}


@pytest.mark.parametrize("mode", MODES)
async def test_stdio_lists_and_calls(world: World, mode: Mode) -> None:
    async with stdio_client_for(
        world.data_dir, "--as", DEMO_EMAIL, "--space", BRAND_SLUG, mode=mode
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
    async with stdio_client_for(world.data_dir, env=env) as client:
        assert _ids(await client.call_tool("me.listReferenceImages", {})) == PERSONAL_IMAGES
        created = await client.call_tool("habits.create", {"name": "Read"})
        assert not created.is_error and created.structured_content is not None
        assert created.structured_content["name"] == "Read"


def test_stdio_refuses_a_space_the_user_is_not_in(
    world: World, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MANA_SPACE", world.bob_space_id)
    code = main(["--data-dir", str(world.data_dir), "serve", "--stdio", "--as", DEMO_EMAIL])
    out = capsys.readouterr()
    assert code == 1
    assert out.out == ""  # stdout belongs to the protocol
    assert "not a member" in out.err


def test_stdio_needs_an_identity(
    world: World, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MANA_USER", raising=False)
    code = main(["--data-dir", str(world.data_dir), "serve", "--stdio"])
    out = capsys.readouterr()
    assert code == 1 and out.out == ""
    assert "--as EMAIL" in out.err
