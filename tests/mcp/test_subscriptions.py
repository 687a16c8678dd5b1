"""`resources/subscribe` and `notifications/resources/updated` through the real `mcp` client over
the in-process HTTP server (2025-11-25 sessions, on both database backends) and over an
in-process stdio-style connection: a change of a subscribed note reaches the session that
subscribed, in the space it subscribed in only; unsubscribing stops it; a session's
subscriptions go with the session; unknown resources are refused like a read; 2026-07-28 has
no such method."""

from __future__ import annotations

import asyncio
from typing import Any

import mcp_types as types
import pytest
from mcp import Client, MCPError
from mcp.client.session import MessageHandlerFnT

from mana_http import store
from mana_http.session_state import DatabaseSessionState
from mana_http.testing import McpTestServer
from mcp_adapter.session_state import ConnectionState
from mcp_server import McpAdapter, stdio_adapter
from tool_registry.store.accounts import Space, User
from tool_registry.testing import ToolKit

# resources/subscribe is a handshake-era method by design: the client's deprecation notice is
# about 2026-07-28 servers
pytestmark = pytest.mark.filterwarnings("ignore::mcp.shared.exceptions.MCPDeprecationWarning")

# Only a failure guard: a notification that never comes fails the test after this long.
ARRIVAL_GUARD_SECONDS = 20.0
LEGACY_RESOURCE_NOT_FOUND = -32002


class Updates:
    """The `notifications/resources/updated` a client received, in order."""

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


async def _listening(server: McpTestServer, user: User) -> None:
    """Wait until the user's session has its GET stream open (the client opens it in the
    background after the handshake); server-initiated messages travel on it."""
    for _ in range(400):
        if any(e.watch.listening for e in server.app.sessions.of_user(user.id)):
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the client's GET stream never opened")


async def _subscription_rows(server: McpTestServer, session_ids: list[str]) -> int:
    return await server.pipeline.db.read(lambda c: store.subscription_count(c, session_ids))


async def _note(kit: ToolKit, user: User, space: Space | None, title: str) -> str:
    created = await kit.call_ok(user, space, "notes.create", {"title": title})
    return str(created["id"])


async def test_a_subscriber_hears_of_a_change_in_its_space_only(
    mana_kit: ToolKit, mana_mcp: McpTestServer
) -> None:
    alice, bob = await mana_kit.user(), await mana_kit.user()
    family = await mana_kit.space(alice, "family")
    await mana_kit.add_member(family, bob)
    note = await _note(mana_kit, alice, family, "Groceries")
    elsewhere = await _note(mana_kit, alice, None, "Diary")  # alice's personal space
    updates = Updates()
    async with (
        mana_mcp.client(alice, family, mode="legacy", message_handler=updates.on_message) as mine,
        mana_mcp.client(bob, family, mode="legacy") as bobs,
    ):
        caps = mine.server_capabilities
        assert caps.resources is not None and caps.resources.subscribe is True
        await mine.subscribe_resource(f"mana://notes/{note}")
        await mine.subscribe_resource("mana://space")
        await _listening(mana_mcp, alice)

        # a write in another space (alice's personal one) is not about these resources
        await mana_kit.call_ok(alice, None, "notes.update", {"id": elsewhere, "body": "x"})
        await mana_mcp.app.adapter.changes.settled()
        assert updates.uris == []

        # another client (bob, another session) changes the note through tools/call
        result = await bobs.call_tool("notes.update", {"id": note, "body": "Milk, eggs"})
        assert not result.is_error
        await updates.wait_for(f"mana://notes/{note}")
        await updates.wait_for("mana://space")
        assert sorted(updates.uris) == sorted([f"mana://notes/{note}", "mana://space"])

        # a read changes nothing
        await bobs.call_tool("notes.search", {"query": "Milk"})
        await mana_mcp.app.adapter.changes.settled()
        assert len(updates.uris) == 2


async def test_unsubscribe_stops_the_updates(mana_kit: ToolKit, mana_mcp: McpTestServer) -> None:
    alice = await mana_kit.user()
    first = await _note(mana_kit, alice, None, "First")
    second = await _note(mana_kit, alice, None, "Second")
    updates = Updates()
    async with mana_mcp.client(alice, mode="legacy", message_handler=updates.on_message) as c:
        await c.subscribe_resource(f"mana://notes/{first}")
        await c.subscribe_resource(f"mana://notes/{second}")
        await c.subscribe_resource(f"mana://notes/{second}")  # again: still one subscription
        await _listening(mana_mcp, alice)
        await c.unsubscribe_resource(f"mana://notes/{first}")
        await c.unsubscribe_resource("mana://space")  # never subscribed: nothing to do

        await c.call_tool("notes.update", {"id": first, "body": "changed"})
        await c.call_tool("notes.delete", {"id": second})
        await updates.wait_for(f"mana://notes/{second}")
        await mana_mcp.app.adapter.changes.settled()
        assert updates.uris == [f"mana://notes/{second}"]


async def test_a_sessions_subscriptions_end_with_it(
    mana_kit: ToolKit, mana_mcp: McpTestServer
) -> None:
    alice = await mana_kit.user()
    note = await _note(mana_kit, alice, None, "Kept")
    async with mana_mcp.client(alice, mode="legacy") as client:
        await client.subscribe_resource(f"mana://notes/{note}")
        await client.subscribe_resource("mana://space")
        session_ids = mana_mcp.app.sessions.all_ids()
        assert len(session_ids) == 1
        assert await _subscription_rows(mana_mcp, session_ids) == 2
    # the client ended its session (HTTP DELETE): its row and its subscriptions are gone
    assert await _subscription_rows(mana_mcp, session_ids) == 0
    assert await mana_mcp.app.sessions.lookup(session_ids[0]) is None


async def test_expiry_and_eviction_delete_the_subscriptions_too(mana_kit: ToolKit) -> None:
    """Every way a session row goes (expiry, eviction, DELETE) takes its subscriptions."""
    db = mana_kit.db
    from mana_http.testing import ensure_session_schema

    await ensure_session_schema(db)
    rows = [store.SessionRow(f"s{i}", "u1", "2025-11-25", None, 1.0, 1.0) for i in range(3)]

    def setup(conn: Any) -> None:
        for row in rows:
            store.insert_session(conn, row)
            assert store.add_subscription(conn, row.id, "space-1", "mana://space")

    await db.write(setup)
    assert await db.read(lambda c: store.subscription_count(c, ["s0", "s1", "s2"])) == 3
    expired = await db.write(lambda c: store.expire_sessions(c, 5.0, ["s2"]))
    assert sorted(expired) == ["s0", "s1"]
    assert await db.read(lambda c: store.subscription_count(c, ["s0", "s1"])) == 0
    await db.write(lambda c: store.delete_sessions(c, ["s2"]))  # eviction and DELETE
    assert await db.read(lambda c: store.subscription_count(c, ["s2"])) == 0
    # a session that is gone cannot gain a subscription
    assert not await db.write(lambda c: store.add_subscription(c, "s2", "space-1", "mana://x"))


async def test_subscribing_is_checked_like_a_read(
    mana_kit: ToolKit, mana_mcp: McpTestServer
) -> None:
    alice, bob = await mana_kit.user(), await mana_kit.user()
    bobs_note = await _note(mana_kit, bob, None, "Bob's secret")
    async with mana_mcp.client(alice, mode="legacy") as client:
        for uri in (f"mana://notes/{bobs_note}", "mana://notes/nope", "mana://nothing"):
            with pytest.raises(MCPError) as refused:
                await client.subscribe_resource(uri)
            assert refused.value.error.code == LEGACY_RESOURCE_NOT_FOUND, uri
        with pytest.raises(MCPError) as too_long:
            await client.subscribe_resource("mana://notes/" + "x" * 3000)
        assert too_long.value.error.code == types.INVALID_PARAMS
        assert "2048" in too_long.value.error.message
    assert await _subscription_rows(mana_mcp, mana_mcp.app.sessions.all_ids()) == 0


async def test_the_2026_era_has_no_subscriptions(
    mana_kit: ToolKit, mana_mcp: McpTestServer
) -> None:
    alice = await mana_kit.user()
    async with mana_mcp.client(alice, mode="auto") as client:
        assert client.protocol_version == "2026-07-28"
        resources = client.server_capabilities.resources
        assert resources is not None and not resources.subscribe  # no subscriptions/listen
        with pytest.raises(MCPError) as refused:
            await client.session.subscribe_resource("mana://space")
        assert refused.value.error.code == types.METHOD_NOT_FOUND


async def _in_process(
    kit: ToolKit, user: User, space: Space | None, on_message: MessageHandlerFnT
) -> tuple[Client, McpAdapter]:
    adapter = stdio_adapter(kit.pipeline, user_id=user.id, space=space.id if space else None)
    client = Client(adapter.server, mode="legacy", message_handler=on_message)
    return client, adapter


async def test_a_single_connection_hears_of_its_subscriptions_directly(
    mana_kit: ToolKit,
) -> None:
    alice = await mana_kit.user()
    family = await mana_kit.space(alice, "family")
    note = await _note(mana_kit, alice, family, "Plan")
    updates = Updates()
    client, adapter = await _in_process(mana_kit, alice, family, updates.on_message)
    try:
        async with client:
            await client.subscribe_resource(f"mana://notes/{note}")
            state = adapter.subscriptions.state
            assert isinstance(state, ConnectionState)
            assert state.subscriptions == {(family.id, f"mana://notes/{note}")}
            # the same note id in another space is another resource: nothing to say
            await mana_kit.call_ok(alice, None, "notes.create", {"title": "Other"})
            await mana_kit.call_ok(alice, family, "notes.update", {"id": note, "body": "b"})
            await updates.wait_for(f"mana://notes/{note}")
            await adapter.changes.settled()
            assert updates.uris == [f"mana://notes/{note}"]
            with pytest.raises(MCPError) as refused:
                await client.subscribe_resource("mana://notes/nope")
            assert refused.value.error.code == LEGACY_RESOURCE_NOT_FOUND
    finally:
        mana_kit.pipeline.observers.remove(adapter.changes.observe)


async def test_a_subscriber_who_left_the_space_hears_nothing_more(
    mana_kit: ToolKit, mana_mcp: McpTestServer
) -> None:
    alice, bob = await mana_kit.user(), await mana_kit.user()
    family = await mana_kit.space(alice, "family")
    await mana_kit.add_member(family, bob)
    state = mana_mcp.app.adapter.changes.state
    async with (
        mana_mcp.client(alice, family, mode="legacy") as alices,
        mana_mcp.client(bob, family, mode="legacy") as bobs,
    ):
        await alices.subscribe_resource("mana://space")
        await bobs.subscribe_resource("mana://space")
        assert await state.resources_changed(family.id, ["mana://space"]) == 2
        await mana_kit.db.write(
            lambda c: c.execute(
                "DELETE FROM memberships WHERE space_id = ? AND user_id = ?", (family.id, bob.id)
            )
        )
        assert await state.resources_changed(family.id, ["mana://space"]) == 1


async def test_a_session_has_a_bounded_number_of_subscriptions(
    mana_kit: ToolKit, mana_mcp: McpTestServer
) -> None:
    alice = await mana_kit.user()
    notes = [await _note(mana_kit, alice, None, f"Note {i}") for i in range(3)]
    state = mana_mcp.app.adapter.changes.state
    assert isinstance(state, DatabaseSessionState)
    state.max_subscriptions = 2
    async with mana_mcp.client(alice, mode="legacy") as client:
        await client.subscribe_resource(f"mana://notes/{notes[0]}")
        await client.subscribe_resource(f"mana://notes/{notes[1]}")
        await client.subscribe_resource(f"mana://notes/{notes[1]}")  # already: fine
        with pytest.raises(MCPError) as refused:
            await client.subscribe_resource(f"mana://notes/{notes[2]}")
        assert refused.value.error.code == types.INVALID_REQUEST
        assert "2 subscriptions" in refused.value.error.message
        await client.unsubscribe_resource(f"mana://notes/{notes[0]}")
        await client.subscribe_resource(f"mana://notes/{notes[2]}")
