"""Resource subscriptions against a real `mana serve --http` process: the real `mcp` Python
client (2025-11-25) subscribes to a note, another client changes it through tools/call and the
subscriber receives `notifications/resources/updated`; after unsubscribing it hears nothing; the
session's rows go when it ends; a subscriber in another space never hears of it. The TypeScript
SDK reads a resource, gets a prompt, gets completions and receives a resource update."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mcp_types as types
import pytest

from mana_cli.demo import BRAND_SLUG, DEMO_EMAIL
from tests.mcp.support import REPO, ServerProcess, World, http_client, seeded_world

pytestmark = pytest.mark.filterwarnings("ignore::mcp.shared.exceptions.MCPDeprecationWarning")

# Only a failure guard: a notification that never comes fails the test after this long.
ARRIVAL_GUARD_SECONDS = 20.0


@pytest.fixture(scope="module")
def world(
    tmp_path_factory: pytest.TempPathFactory, database_backend: str, request: pytest.FixtureRequest
) -> Iterator[World]:
    with seeded_world(request, database_backend, tmp_path_factory.mktemp("subs")) as world:
        yield world


@pytest.fixture(scope="module")
def server(world: World) -> Iterator[ServerProcess]:
    with ServerProcess(world.installation) as proc:
        yield proc


class Updates:
    def __init__(self) -> None:
        self.uris: list[str] = []
        self._arrived = asyncio.Condition()

    async def on_message(self, message: Any) -> None:
        # notifications are delivered on their own task: wait for them, don't race them
        if isinstance(message, types.ResourceUpdatedNotification):
            async with self._arrived:
                self.uris.append(str(message.params.uri))
                self._arrived.notify_all()

    async def wait_for(self, uri: str) -> None:
        async with self._arrived:
            await asyncio.wait_for(
                self._arrived.wait_for(lambda: uri in self.uris), ARRIVAL_GUARD_SECONDS
            )


async def listening_sessions(world: World) -> list[str]:
    rows = await world.installation.query(
        "SELECT id FROM mcp_sessions WHERE user_id = ? AND listener IS NOT NULL", world.demo_id
    )
    return [str(r[0]) for r in rows]


async def wait_listening(world: World, count: int = 1) -> list[str]:
    """The client opens its GET stream in the background: wait until the rows say so."""
    for _ in range(400):
        found = await listening_sessions(world)
        if len(found) >= count:
            return found
        await asyncio.sleep(0.05)
    raise AssertionError("the client's GET stream never opened")


async def subscription_rows(world: World, session_id: str) -> int:
    rows = await world.installation.query(
        "SELECT count(*) FROM mcp_subscriptions WHERE session_id = ?", session_id
    )
    return int(rows[0][0])


async def test_a_change_by_another_client_reaches_the_subscriber(
    server: ServerProcess, world: World
) -> None:
    token = world.token(world.demo_id, email=DEMO_EMAIL)
    updates = Updates()
    async with http_client(server.mcp_url, token, mode="auto") as (writer, _):
        first = (await writer.call_tool("notes.create", {"title": "Watched"})).structured_content
        second = (await writer.call_tool("notes.create", {"title": "Also"})).structured_content
        assert first is not None and second is not None
        first_uri, second_uri = f"mana://notes/{first['id']}", f"mana://notes/{second['id']}"
        async with http_client(
            server.mcp_url, token, mode="legacy", message_handler=updates.on_message
        ) as (subscriber, _):
            await subscriber.subscribe_resource(first_uri)
            await subscriber.subscribe_resource(second_uri)
            (session_id,) = await wait_listening(world)
            assert await subscription_rows(world, session_id) == 2

            await writer.call_tool("notes.update", {"id": first["id"], "body": "changed"})
            await updates.wait_for(first_uri)

            await subscriber.unsubscribe_resource(first_uri)
            assert await subscription_rows(world, session_id) == 1
            await writer.call_tool("notes.update", {"id": first["id"], "body": "again"})
            await writer.call_tool("notes.update", {"id": second["id"], "body": "sentinel"})
            await updates.wait_for(second_uri)
            # in order on one stream: the first note's second change would have come before
            assert updates.uris == [first_uri, second_uri]
        # the client ended its session: the row and its subscriptions are gone
        assert await subscription_rows(world, session_id) == 0
        gone = await world.installation.query(
            "SELECT count(*) FROM mcp_sessions WHERE id = ?", session_id
        )
        assert gone == [(0,)]


async def test_a_subscriber_in_another_space_never_hears_of_it(
    server: ServerProcess, world: World
) -> None:
    token = world.token(world.demo_id, email=DEMO_EMAIL)
    brand_updates, personal_updates = Updates(), Updates()
    async with (
        http_client(
            server.mcp_url,
            token,
            BRAND_SLUG,
            mode="legacy",
            message_handler=brand_updates.on_message,
        ) as (in_brand, _),
        http_client(
            server.mcp_url, token, mode="legacy", message_handler=personal_updates.on_message
        ) as (in_personal, _),
        http_client(server.mcp_url, token, mode="auto") as (writer, _),
    ):
        await in_brand.subscribe_resource("mana://space")
        await in_personal.subscribe_resource("mana://space")
        await wait_listening(world, 2)
        await writer.call_tool("notes.create", {"title": "Personal only"})  # personal space
        await personal_updates.wait_for("mana://space")
        # a later change in the brand space reaches the brand subscriber, and only it
        async with http_client(server.mcp_url, token, BRAND_SLUG, mode="auto") as (brand, _):
            await brand.call_tool("notes.create", {"title": "Brand only"})
        await brand_updates.wait_for("mana://space")
        assert brand_updates.uris == ["mana://space"]
        assert personal_updates.uris == ["mana://space"]


def _ts_client_entry() -> Path | None:
    """`@modelcontextprotocol/client` as `scripts/inspector-smoke.sh` installs it, or None."""
    cache = os.environ.get("MANA_INSPECTOR_DIR") or str(
        Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
        / "mana"
        / "inspector-2.12.0"
    )
    entry = Path(cache) / "node_modules/@modelcontextprotocol/client/dist/index.mjs"
    return entry if entry.is_file() else None


async def test_the_typescript_sdk_reads_prompts_completes_and_hears_updates(
    server: ServerProcess, world: World
) -> None:
    node, entry = shutil.which("node"), _ts_client_entry()
    if node is None or entry is None:
        pytest.skip("node and @modelcontextprotocol/client (scripts/inspector-smoke.sh) needed")
    token = world.token(world.demo_id, email=DEMO_EMAIL)
    async with http_client(server.mcp_url, token, mode="auto") as (writer, _):
        made = await writer.call_tool("notes.create", {"title": "Typed in TypeScript"})
        note = made.structured_content
        assert note is not None
        uri = f"mana://notes/{note['id']}"
        before = set(await listening_sessions(world))
        proc = await asyncio.create_subprocess_exec(
            node,
            str(REPO / "tests/mcp/ts_subscriber.mjs"),
            str(entry),
            server.mcp_url,
            token,
            uri,
            "Typed in",
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            assert proc.stdout is not None
            ready = await asyncio.wait_for(proc.stdout.readline(), 60)
            assert json.loads(ready) == {"ready": True}
            for _ in range(400):  # its GET stream opens in the background
                if set(await listening_sessions(world)) - before:
                    break
                await asyncio.sleep(0.05)
            await writer.call_tool("notes.update", {"id": note["id"], "body": "from Python"})
            out, err = await asyncio.wait_for(proc.communicate(), 60)
        finally:
            if proc.returncode is None:
                proc.kill()
    assert proc.returncode == 0, err.decode(errors="replace")[-3000:]
    report = json.loads(out.decode().strip().splitlines()[-1])
    assert report["protocol"] == "2025-11-25"
    assert report["read"][0]["uri"] == uri and report["read"][0]["mimeType"] == "text/markdown"
    assert report["read"][0]["text"].startswith("# Typed in TypeScript")
    assert report["promptMessages"] >= 1
    assert "Typed in TypeScript" in report["completions"]
    assert report["updated"] == uri
