"""A note a mission changes is announced like the server's own writes: a 2025-11-25 client
subscribed to the note through `mana serve --http` hears `notifications/resources/updated`
when a separate `mana daemon` process runs a mission that updates it (PostgreSQL: the daemon
announces on the session bus the server listens on)."""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import Iterator
from typing import Any

import mcp_types as types
import pytest

from mana_cli.demo import DEMO_EMAIL
from mana_cli.runtime import open_runtime
from missions.cadence import IntervalCadence
from missions.view import MISSIONS
from policy.agent_policy import AgentToolPolicy
from tests.mcp.support import (
    REPO,
    Installation,
    ServerProcess,
    World,
    http_client,
    mana_argv,
    seed_world,
)
from tool_registry.testing.plugin import new_database

pytestmark = pytest.mark.filterwarnings("ignore::mcp.shared.exceptions.MCPDeprecationWarning")

# Only failure guards: a notification that never comes, a daemon that never ends.
ARRIVAL_GUARD_SECONDS = 20.0
DAEMON_GUARD_SECONDS = 120.0
WINDOW = "2000-01-01T00:00:00.000000Z"
UPDATES_NOTES = AgentToolPolicy(
    tools={"notes.update": "auto"},
    by_hint={"read": "auto", "write": "propose", "destructive": "deny"},
)


@pytest.fixture(scope="module")
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[World, ServerProcess]]:
    data_dir = tmp_path_factory.mktemp("daemon-changes")
    with new_database(request, "postgres", data_dir / "mana.db") as url:
        world = seed_world(Installation(data_dir, url))
        with ServerProcess(world.installation) as process:
            yield world, process


async def _due_mission(world: World) -> str:
    """An agent of the demo user's personal space that may update notes, and a mission of it
    due now (the only one due); its id."""
    async with open_runtime(world.installation.settings()) as rt:
        service = rt.backends.get(MISSIONS)
        agent = await service.create_agent(
            user_id=world.demo_id,
            space_id=world.personal_id,
            name="note keeper",
            tool_policy=UPDATES_NOTES,
        )
        mission = await service.create_mission(
            user_id=world.demo_id,
            space_id=world.personal_id,
            agent=agent.id,
            title="Keep the note current",
            objective="Update the shared note",
            cadence=IntervalCadence(kind="interval", every_minutes=60),
        )
    await world.installation.execute(
        "UPDATE missions SET next_run_at = ?, window_at = ? WHERE id = ?",
        WINDOW,
        WINDOW,
        mission.id,
    )
    return str(mission.id)


def _run_daemon_once(world: World, script: list[dict[str, Any]]) -> dict[str, Any]:
    path = world.data_dir / "update-note.json"
    path.write_text(json.dumps(script), encoding="utf-8")
    done = subprocess.run(
        mana_argv(world.data_dir, "daemon", "--once", "--json", "--llm", f"scripted:{path}"),
        cwd=REPO,
        env=world.installation.env(),
        capture_output=True,
        text=True,
        timeout=DAEMON_GUARD_SECONDS,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    summary: dict[str, Any] = json.loads(done.stdout)
    return summary


async def test_a_note_a_mission_changed_reaches_its_subscriber(
    server: tuple[World, ServerProcess],
) -> None:
    world, process = server
    token = world.token(world.demo_id, email=DEMO_EMAIL)
    uris: list[str] = []
    arrived = asyncio.Event()

    async def on_message(message: Any) -> None:
        if isinstance(message, types.ResourceUpdatedNotification):
            uris.append(str(message.params.uri))
            arrived.set()

    async with http_client(process.mcp_url, token, mode="legacy", message_handler=on_message) as (
        client,
        _,
    ):
        made = await client.call_tool("notes.create", {"title": "Kept by a mission"})
        note = made.structured_content
        assert note is not None, made.content
        uri = f"mana://notes/{note['id']}"
        await client.subscribe_resource(uri)
        for _ in range(400):  # the GET stream opens in the background
            rows = await world.installation.query(
                "SELECT id FROM mcp_sessions WHERE user_id = ? AND listener IS NOT NULL",
                world.demo_id,
            )
            if rows:
                break
            await asyncio.sleep(0.05)
        assert rows, "the client's GET stream never opened"
        arrived.clear()
        uris.clear()

        mission_id = await _due_mission(world)
        script: list[dict[str, Any]] = [
            {
                "text": "Updating the note.",
                "tool_calls": [
                    {
                        "name": "notes.update",
                        "arguments": {"id": note["id"], "body": "written by a mission"},
                    }
                ],
                "usage": {"input_tokens": 10, "output_tokens": 5},
            },
            {"text": "Done.", "tool_calls": [], "usage": {"input_tokens": 10, "output_tokens": 2}},
        ]
        summary = await asyncio.to_thread(_run_daemon_once, world, script)
        assert summary["claimed"] == 1, summary
        steps = await world.installation.query(
            "SELECT status FROM iterations WHERE mission_id = ?", mission_id
        )
        assert [tuple(s) for s in steps] == [("completed",)], steps

        await asyncio.wait_for(arrived.wait(), ARRIVAL_GUARD_SECONDS)
        assert uri in uris
        read = await client.read_resource(uri)
        first = read.contents[0]
        assert isinstance(first, types.TextResourceContents)
        assert "written by a mission" in first.text
