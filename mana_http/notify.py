"""How replicas tell each other about sessions: a session ended (DELETE, eviction, expiry), a
session's visible tool set changed (`notifications/tools/list_changed` is due) and a resource a
session subscribed to changed (`notifications/resources/updated` is due; the event's `detail`
is the resource URI).

Every process handles every event, its own included: the one holding the session's transport
acts (closes it, or pushes the notification on its GET stream), the others have nothing of it.

- PostgreSQL (`PostgresBus`): `NOTIFY` on channel `mana_mcp_sessions` (sent in a write unit, so
  it goes out on commit) and one dedicated `LISTEN` connection per process, reconnecting with
  backoff when the server goes away and checking it with a round trip when quiet. Events sent
  while a listener was disconnected are lost to it; after reconnecting it calls `resync`, which
  closes the sessions that ended meanwhile. A lost list_changed is not repeated (it is advisory:
  the client's next `tools/list` shows the new tools).
- SQLite (`LocalBus`): one process serves the database's sessions; events go straight to the
  handler. Several processes on one SQLite file share the session registry but not events
  (a session ended elsewhere is closed here by the sweeper); scale out on PostgreSQL.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol

import psycopg
import structlog

from mana_http import store
from tool_registry.store.database import Database
from tool_registry.store.postgres import PostgresDatabase

log = structlog.get_logger("mana.http")

CHANNEL = "mana_mcp_sessions"
ENDED = "ended"
LIST_CHANGED = "list_changed"
RESOURCE_UPDATED = "resource_updated"
# A quiet listening connection is checked with a round trip this often.
LISTEN_CHECK_SECONDS = 30.0
RETRY_MAX_SECONDS = 5.0

# (kind, session id, detail): the detail is "" except where a kind says otherwise
Handler = Callable[[str, str, str], Awaitable[None]]
Resync = Callable[[], Awaitable[None]]


class SessionBus(Protocol):
    async def publish(self, kind: str, session_id: str, detail: str = "") -> None:
        """Tell every process (this one included) about `session_id`."""
        ...

    def listening(
        self, handler: Handler, resync: Resync
    ) -> contextlib.AbstractAsyncContextManager[None]:
        """Deliver events to `handler(kind, session_id, detail)` while inside."""
        ...


class LocalBus:
    """One process: events go to the handler directly."""

    def __init__(self) -> None:
        self._handler: Handler | None = None

    async def publish(self, kind: str, session_id: str, detail: str = "") -> None:
        if self._handler is not None:
            await self._handler(kind, session_id, detail)

    @contextlib.asynccontextmanager
    async def listening(self, handler: Handler, resync: Resync) -> AsyncIterator[None]:
        self._handler = handler
        try:
            yield
        finally:
            self._handler = None


class PostgresBus:
    """`NOTIFY`/`LISTEN` on the database every replica shares."""

    def __init__(self, db: PostgresDatabase, *, connect_wait_seconds: float = 10.0) -> None:
        self.db = db
        self.connect_wait_seconds = connect_wait_seconds
        self.connected = asyncio.Event()

    async def publish(self, kind: str, session_id: str, detail: str = "") -> None:
        # kinds and session ids hold no spaces; the detail is the rest of the payload
        payload = f"{kind} {session_id} {detail}"
        await self.db.write(lambda c: store.notify(c, CHANNEL, payload), serialised=False)

    @contextlib.asynccontextmanager
    async def listening(self, handler: Handler, resync: Resync) -> AsyncIterator[None]:
        task = asyncio.get_running_loop().create_task(self._listen(handler, resync))
        try:
            # serve once listening (or after a bounded wait: the listener keeps retrying)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.connected.wait(), self.connect_wait_seconds)
            if not self.connected.is_set():
                log.warning("session channel not connected yet; retrying in the background")
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _listen(self, handler: Handler, resync: Resync) -> None:
        delay = 0.2
        first = True
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(
                    self.db.url, autocommit=True, connect_timeout=10, application_name="mana-listen"
                )
                async with conn:
                    await store.listen(conn, CHANNEL)
                    self.connected.set()
                    delay = 0.2
                    if not first:
                        log.info("session channel reconnected")
                        await resync()
                    first = False
                    await self._deliver(conn, handler)
            except (psycopg.Error, OSError) as exc:
                if self.connected.is_set():
                    log.warning("session channel lost; reconnecting", error=type(exc).__name__)
                self.connected.clear()
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX_SECONDS)

    async def _deliver(self, conn: psycopg.AsyncConnection[Any], handler: Handler) -> None:
        while True:
            async for note in conn.notifies(timeout=LISTEN_CHECK_SECONDS):
                kind, _, rest = note.payload.partition(" ")
                session_id, _, detail = rest.partition(" ")
                try:
                    await handler(kind, session_id, detail)
                except Exception:  # one event's failure must not stop the listener
                    log.exception("handling a session event failed", kind=kind)
            await store.ping(conn)


def bus_for(db: Database) -> SessionBus:
    """LISTEN/NOTIFY on PostgreSQL; in-process on SQLite (one process serves its sessions)."""
    if isinstance(db, PostgresDatabase):
        return PostgresBus(db)
    return LocalBus()
