"""What a handshake-era client sets on its session and expects the server to remember: the
lowest log level it wants (`logging/setLevel`) and the resources it subscribed to
(`resources/subscribe`), and how a change of a subscribed resource reaches it.

`SessionState` is the contract; `ConnectionState` keeps it in memory for a single connection
(stdio, in-process) and delivers on that connection. HTTP sessions keep it in the database so
every replica sees it (`mana_http.session_state`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import anyio
import mcp_types as types
import structlog
from mcp.server.session import ServerSession

from mcp_adapter.callers import Caller, FixedCaller
from tool_registry.client_channel import LogLevel

log = structlog.get_logger("mana.mcp")

# The most resources one session may subscribe to (each is stored until the session ends).
MAX_SUBSCRIPTIONS = 500
# The longest URI a subscription may name.
MAX_URI_LENGTH = 2048


def too_many_subscriptions(limit: int) -> str:
    return f"this session already has {limit} subscriptions; unsubscribe from one first"


class SessionStateError(Exception):
    """A session-state request that cannot be honoured; `code` is the JSON-RPC error code and
    the message says why, for the client."""

    def __init__(self, message: str, code: int = types.INVALID_REQUEST) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class SessionState(Protocol):
    """Per-session state of handshake-era clients. `space_id` is the space the request was made
    in: a subscription is to one resource of one space, and only changes in that space are
    delivered to it."""

    async def set_log_level(self, caller: Caller, level: LogLevel) -> None: ...

    async def subscribe(
        self, caller: Caller, space_id: str, uri: str, session: ServerSession
    ) -> None:
        """Remember the subscription (again: no change). `session` is the requesting
        connection's session, for transports that deliver on it directly. Raises
        `SessionStateError` (no session, too many subscriptions)."""
        ...

    async def unsubscribe(self, caller: Caller, space_id: str, uri: str) -> None:
        """Forget the subscription (one that does not exist: no change)."""
        ...

    async def resources_changed(self, space_id: str, uris: Sequence[str]) -> int:
        """Send `notifications/resources/updated` for each of `uris` to the sessions subscribed
        to it in `space_id`; how many notifications were handed on."""
        ...


class ConnectionState:
    """One connection's state in memory (stdio, in-process): the level is kept on the
    `FixedCaller`, which hands it to every request's `Caller`; subscriptions are delivered
    directly on the connection that made them."""

    def __init__(self, caller: FixedCaller, *, max_subscriptions: int = MAX_SUBSCRIPTIONS) -> None:
        self.caller = caller
        self.max_subscriptions = max_subscriptions
        self.subscriptions: set[tuple[str, str]] = set()  # (space id, uri)
        self._session: ServerSession | None = None

    async def set_log_level(self, caller: Caller, level: LogLevel) -> None:
        self.caller.log_level = level

    async def subscribe(
        self, caller: Caller, space_id: str, uri: str, session: ServerSession
    ) -> None:
        key = (space_id, uri)
        if key not in self.subscriptions and len(self.subscriptions) >= self.max_subscriptions:
            raise SessionStateError(too_many_subscriptions(self.max_subscriptions))
        self.subscriptions.add(key)
        self._session = session

    async def unsubscribe(self, caller: Caller, space_id: str, uri: str) -> None:
        self.subscriptions.discard((space_id, uri))

    async def resources_changed(self, space_id: str, uris: Sequence[str]) -> int:
        session = self._session
        if session is None:
            return 0
        sent = 0
        for uri in uris:
            if (space_id, uri) not in self.subscriptions:
                continue
            try:
                # the connection's own stream: no request of the client is waiting for it
                await session.send_resource_updated(uri)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                log.debug("resource update dropped: the connection is closed")
                self._session = None
                return sent
            sent += 1
        return sent
