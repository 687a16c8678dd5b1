"""The TypeScript SDK (@modelcontextprotocol/client) against a real `mana serve --http`: it
answers a tool's two elicitation forms and receives the tool's progress, in 2025-11-25 (server
requests on the call's stream) and 2026-07-28 (input-required rounds the SDK drives)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from mana_cli.demo import DEMO_EMAIL
from tests.mcp.support import REPO, ServerProcess, World, seeded_world

EXTRA = {"MANA_EXTRA_TOOLS": "tests.mcp.channel_tools:TOOLS"}


def _ts_client_entry() -> Path | None:
    """`@modelcontextprotocol/client` as `scripts/inspector-smoke.sh` installs it (with the
    Inspector), or None."""
    cache = os.environ.get("MANA_INSPECTOR_DIR") or str(
        Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
        / "mana"
        / "inspector-2.12.0"
    )
    entry = Path(cache) / "node_modules/@modelcontextprotocol/client/dist/index.mjs"
    return entry if entry.is_file() else None


@pytest.fixture(scope="module")
def world(
    tmp_path_factory: pytest.TempPathFactory, database_backend: str, request: pytest.FixtureRequest
) -> Iterator[World]:
    with seeded_world(request, database_backend, tmp_path_factory.mktemp("chan-ts")) as world:
        yield world


@pytest.fixture(scope="module")
def server(world: World) -> Iterator[ServerProcess]:
    proc = ServerProcess(world.installation, env=EXTRA)
    try:
        proc.wait_ready()
        yield proc
    finally:
        proc.stop()


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_typescript_sdk_answers_questions_and_receives_progress(
    server: ServerProcess, world: World, mode: str
) -> None:
    node, entry = shutil.which("node"), _ts_client_entry()
    if node is None or entry is None:
        pytest.skip("node and @modelcontextprotocol/client (scripts/inspector-smoke.sh) needed")
    token = world.token(world.demo_id, email=DEMO_EMAIL)
    argv = [node, str(REPO / "tests/mcp/ts_channel_client.mjs"), str(entry)]
    proc = await asyncio.create_subprocess_exec(
        *argv,
        server.mcp_url,
        token,
        mode,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, err.decode(errors="replace")[-3000:]
    report = json.loads(out.decode().strip().splitlines()[-1])
    assert report["protocol"] == ("2025-11-25" if mode == "legacy" else "2026-07-28")
    assert report["asked"] == ["What is your name, ts?", "Your favourite colour?"]
    assert report["ask"] == {
        "name": "Tess",
        "colour": "red",
        "actions": ["accept", "accept"],
        "refused": None,
    }
    assert report["progress"] == [[0, 3], [1, 3], [2, 3], [3, 3]]
    assert report["report"] == {"steps": 3}
