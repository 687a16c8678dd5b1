"""The `SessionState` of 2025-11-25 HTTP sessions, in the database every replica shares: the
log level is a column of the session's row (the guard puts it into every request's `Caller`),
subscriptions are rows of `mcp_subscriptions` that go with the session's row (expiry, DELETE,
eviction). A change is announced on the session bus (`RESOURCE_UPDATED`, detail = the URI), so
the replica holding the subscriber's GET stream sends `notifications/resources/updated` on it.

A process that writes but serves no MCP session (the mission daemon) announces the changes of
its writes the same way (`announcing_changes`), so a subscriber hears of a note a mission
changed. On SQLite the session bus stays inside one process, so only the server's own writes
are announced there.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

from mcp.server.session import ServerSession

from mana_http import store
from mana_http.notify import RESOURCE_UPDATED, bus_for
from mcp_adapter.callers import Caller
from mcp_adapter.session_state import (
    MAX_SUBSCRIPTIONS,
    SessionStateError,
    too_many_subscriptions,
)
from mcp_adapter.subscriptions import ResourceChanges
from tool_registry.client_channel import LogLevel
from tool_registry.errors import NotAMemberError
from tool_registry.membership import require_member
from tool_registry.pipeline import Pipeline
from tool_registry.store.accounts import Accounts
from tool_registry.store.connection import Conn
from tool_registry.store.database import Database

Publish = Callable[[str, str, str], Awaitable[None]]

SESSION_ENDED = "this session has ended; open a new one"


def _session_of(caller: Caller, method: str) -> str:
    if caller.session_id is None:
        raise SessionStateError(f"{method} needs a session: send it with an Mcp-Session-Id")
    return caller.session_id


class DatabaseSessionState:
    """`SessionState` of database-registered HTTP sessions (see the module docstring)."""

    def __init__(
        self,
        db: Database,
        accounts: Accounts,
        publish: Publish,
        *,
        max_subscriptions: int = MAX_SUBSCRIPTIONS,
    ) -> None:
        self.db = db
        self.accounts = accounts
        self.publish = publish
        self.max_subscriptions = max_subscriptions

    async def set_log_level(self, caller: Caller, level: LogLevel) -> None:
        session_id = _session_of(caller, "logging/setLevel")
        found = await self.db.write(
            lambda c: store.set_log_level(c, session_id, level), serialised=False
        )
        if not found:
            raise SessionStateError(SESSION_ENDED)

    async def subscribe(
        self, caller: Caller, space_id: str, uri: str, session: ServerSession
    ) -> None:
        session_id = _session_of(caller, "resources/subscribe")

        error = await self.db.write(
            lambda c: _subscribe(c, session_id, space_id, uri, self.max_subscriptions),
            serialised=False,
        )
        if error is not None:
            raise SessionStateError(error)

    async def unsubscribe(self, caller: Caller, space_id: str, uri: str) -> None:
        session_id = _session_of(caller, "resources/unsubscribe")
        await self.db.write(
            lambda c: store.remove_subscription(c, session_id, space_id, uri), serialised=False
        )

    async def resources_changed(self, space_id: str, uris: Sequence[str]) -> int:
        found = await self.db.read(lambda c: store.subscribers(c, space_id, list(uris)))
        member: dict[str, bool] = {}
        sent = 0
        for sub in found:
            if sub.user_id not in member:
                # a subscriber who left the space since hears nothing more of it
                member[sub.user_id] = await self._is_member(sub.user_id, space_id)
            if member[sub.user_id]:
                await self.publish(RESOURCE_UPDATED, sub.session_id, sub.uri)
                sent += 1
        return sent

    async def _is_member(self, user_id: str, space_id: str) -> bool:
        try:
            await require_member(self.accounts, user_id, space_id)
        except NotAMemberError:
            return False
        return True


def _subscribe(conn: Conn, session_id: str, space_id: str, uri: str, limit: int) -> str | None:
    """One write unit: the subscription added unless the session has `limit` already or has
    ended; the refusal's text, or None."""
    if store.count_subscriptions(conn, session_id) >= limit:
        if not store.has_subscription(conn, session_id, space_id, uri):
            return too_many_subscriptions(limit)
        return None
    if not store.add_subscription(conn, session_id, space_id, uri):
        return SESSION_ENDED
    return None


@contextlib.asynccontextmanager
async def announcing_changes(pipeline: Pipeline) -> AsyncIterator[ResourceChanges]:
    """While inside, the resources this process's writes through `pipeline` change are announced
    to their subscribers on every server replica (`ResourceChanges` in `pipeline.observers`),
    for a composition root that serves no sessions itself (the mission daemon); on leaving, the
    observer is removed and the announcements under way are awaited."""
    state = DatabaseSessionState(pipeline.db, pipeline.accounts, bus_for(pipeline.db).publish)
    changes = ResourceChanges(pipeline.registry, state)
    pipeline.observers.append(changes.observe)
    try:
        yield changes
    finally:
        pipeline.observers.remove(changes.observe)
        await changes.settled()
