"""Streamable HTTP sessions (2025-11-25 era) bound to the user who opened them, shared by every
server replica on the database.

The session registry lives in the database (`mcp_sessions`, `mana_http.store`): a session's row
says who owns it, which protocol version and client `initialize` params it negotiated, when it
was last active and which tool view it last saw. Every request of a session reads its row, so
on any replica an unknown or expired id is 404 and another user's id is 403 (never a takeover),
and a DELETE or expiry on one replica ends the session for all. A replica that does not hold
the session in memory rebuilds a transport for it from the row (`mana_http.manager`): any
replica can serve any request of any session, so a plain round-robin proxy in front of several
replicas needs no stickiness. What stays per process: the transport itself, the in-flight
request ids (answers are routed by the transport that received the request, so ids only
collide within one replica) and the GET stream (on whichever replica the client opened it;
server-initiated messages for it travel to that replica, see `mana_http.notify`). A request the
server sends to the client (a tool asking the user) waits on the replica that sent it; the
client's answer, POSTed to any replica, is relayed there (`mana_http.answers`).

- A session is *idle* when it had no request in flight on any replica for `idle_seconds`; idle
  sessions are deleted by the sweeper of whichever replica sees it first. Activity reaches the
  row within `touch_seconds` (each replica writes the last activity of its sessions, and a
  heartbeat for sessions with a request or GET stream in flight, once per `touch_seconds`), so
  a session ends between `idle_seconds + 2 × touch_seconds` and one sweep interval later.
- Each user has at most `per_user` open sessions, counted in the database in the same write
  unit that adds the new one (serialised across processes). Opening one more evicts that
  user's least recently active session that has nothing in flight here and was not used in
  the last `protect_seconds` (as far as its row and this process know: a request in flight on
  another replica keeps its row's activity within `touch_seconds` of now, so a `protect_seconds`
  of at least `2 × touch_seconds`, as the default 600 s, never evicts a session busy anywhere;
  one this process has never served also needs `2 × touch_seconds` without activity in its
  row). If none can go the new session is refused (429, with the time until one can be
  evicted).
  Eviction of old sessions, because clients such as the Inspector CLI open a session per run
  and never close it; never of recent ones, because a client that opens many sessions must not
  end another client's live session.
- Memory is bounded: local entries exist only for sessions this process serves or holds a
  transport for, and are dropped with it.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field

from mana_http import store
from mana_http.store import SessionRow
from mcp_server import ToolSetWatch
from tool_registry.store.connection import Conn
from tool_registry.store.database import Database


@dataclass
class SessionEntry:
    """This process's view of one session it serves: activity and request ids in flight here,
    and the tool view the adapter compares against (loaded from the row on every request)."""

    session_id: str
    user_id: str
    created_at: float
    last_active: float
    inflight: int = 0  # requests of this session being served here, GET streams included
    busy: int = 0  # POST/DELETE requests being served here
    flushed: float = 0.0  # the last activity written to the row by this process
    watch: ToolSetWatch = field(default_factory=lambda: ToolSetWatch(listening=False))
    # JSON-RPC ids in flight, keyed as the SDK correlates them (`guard.request_key`): of POSTs
    # being answered, and of handlers still running (they outlive a POST whose client left, and
    # their answer would go to the next POST with the same id)
    request_ids: set[str] = field(default_factory=set)
    running_ids: set[str] = field(default_factory=set)


@dataclass(frozen=True)
class Admission:
    """The answer to "may this user open one more session?". `evicted` ids are already deleted
    from the registry and must be ended by the caller, admitted or not. A refusal carries the
    HTTP status, a stable reason, a message for the client and, when known, seconds until a
    retry can succeed."""

    admitted: bool
    evicted: list[str] = field(default_factory=list)
    status: int = 200
    reason: str = ""
    message: str = ""
    retry_after: int | None = None


def seen_text(names: Iterable[str]) -> str:
    """How a tool view is stored in the row: sorted names, one per line."""
    return "\n".join(sorted(names))


def seen_names(text: str | None) -> frozenset[str] | None:
    return None if text is None else frozenset(n for n in text.split("\n") if n)


class SessionRegistry:
    def __init__(
        self,
        db: Database,
        *,
        idle_seconds: float,
        per_user: int,
        max_total: int,
        protect_seconds: float = 600.0,
        touch_seconds: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if idle_seconds <= 0 or per_user <= 0 or max_total <= 0 or touch_seconds <= 0:
            raise ValueError("idle_seconds, per_user, max_total and touch_seconds must be positive")
        if protect_seconds < 0:
            raise ValueError("protect_seconds must not be negative")
        self.db = db
        self.idle_seconds = idle_seconds
        self.per_user = per_user
        self.max_total = max_total
        self.protect_seconds = protect_seconds
        self.touch_seconds = touch_seconds
        self._clock = clock
        self._entries: dict[str, SessionEntry] = {}
        self._by_user: dict[str, dict[str, None]] = {}

    # -- this process's entries --------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, session_id: str) -> SessionEntry | None:
        return self._entries.get(session_id)

    def of_user(self, user_id: str) -> list[SessionEntry]:
        return [self._entries[s] for s in self._by_user.get(user_id, ())]

    def attach(self, row: SessionRow) -> SessionEntry:
        """The local entry of a session whose row exists (created on first use here)."""
        entry = self._entries.get(row.id)
        if entry is None:
            entry = SessionEntry(
                row.id, row.user_id, row.created_at, row.last_active, flushed=row.last_active
            )
            self._entries[row.id] = entry
            self._by_user.setdefault(row.user_id, {})[row.id] = None
        return entry

    def detach(self, session_id: str) -> SessionEntry | None:
        """Forget the local entry (the row is untouched)."""
        entry = self._entries.pop(session_id, None)
        if entry is not None:
            sessions = self._by_user.get(entry.user_id)
            if sessions is not None:
                sessions.pop(session_id, None)
                if not sessions:
                    del self._by_user[entry.user_id]
        return entry

    def all_ids(self) -> list[str]:
        return list(self._entries)

    def idle(self) -> list[str]:
        """Local sessions with nothing in flight except (maybe) GET streams: safe to close."""
        return [e.session_id for e in self._entries.values() if e.busy == 0]

    # -- the shared registry -----------------------------------------------------------------

    async def lookup(self, session_id: str) -> SessionRow | None:
        return await self.db.read(lambda c: store.get_session(c, session_id))

    async def reserve(
        self,
        session_id: str,
        user_id: str,
        protocol_version: str,
        client_params: str | None,
        view: tuple[str, frozenset[str]] | None = None,
    ) -> Admission:
        """Register a new session of `user_id` if the user's cap and the server-wide cap allow,
        evicting that user's oldest sessions that are neither in use nor recent; all in one
        serialised write unit, so replicas opening sessions at once count each other's. `view`
        (space type, tool names) is the tool set visible where the session opens: a call in
        the same space writes nothing more."""
        now = self._clock()
        space_type, names = view if view is not None else (None, None)
        row = SessionRow(
            session_id,
            user_id,
            protocol_version,
            client_params,
            now,
            now,
            space_type=space_type,
            tools_seen=None if names is None else seen_text(names),
        )

        def unit(conn: Conn) -> Admission:
            live = store.user_sessions(conn, user_id)
            evicted: list[str] = []
            while len(live) >= self.per_user:
                victim = self._evictable(live, now)
                if victim is None:
                    return self._user_full(live, evicted, now)
                store.delete_sessions(conn, [victim.id])
                evicted.append(victim.id)
                live.remove(victim)
            if store.count_sessions(conn) >= self.max_total:
                return Admission(
                    False,
                    evicted,
                    503,
                    "server-sessions-full",
                    "the server has too many open sessions; retry later",
                    5,
                )
            store.insert_session(conn, row)
            return Admission(True, evicted)

        admission = await self.db.write(unit)
        if admission.admitted:
            self.loader(self.attach(row), row)
        return admission

    def _last_active(self, row: SessionRow) -> float:
        local = self._entries.get(row.id)
        return max(row.last_active, local.last_active) if local is not None else row.last_active

    def _evictable(self, live: list[SessionRow], now: float) -> SessionRow | None:
        """The least recently active session with nothing in flight here, last used before the
        protection window, and (when held elsewhere) with no recent heartbeat in its row."""
        cutoff = now - self.protect_seconds
        elsewhere = now - 2 * self.touch_seconds
        candidates = []
        for row in live:
            local = self._entries.get(row.id)
            if local is not None and local.inflight > 0:
                continue
            if self._last_active(row) > cutoff:
                continue
            if local is None and row.last_active > elsewhere:
                continue
            candidates.append(row)
        return min(candidates, key=self._last_active, default=None)

    def _user_full(self, live: list[SessionRow], evicted: list[str], now: float) -> Admission:
        quiet = [
            self._last_active(r)
            for r in live
            if (local := self._entries.get(r.id)) is None or local.inflight == 0
        ]
        retry_after = None
        if quiet:
            wait = min(quiet) + self.protect_seconds - now
            retry_after = max(1, math.ceil(wait))
        return Admission(
            False,
            evicted,
            429,
            "too-many-sessions",
            f"too many open sessions for this user ({self.per_user}), all in use or used in the "
            f"last {self.protect_seconds:g} s; end one with HTTP DELETE /mcp (Mcp-Session-Id) "
            "or retry later",
            retry_after,
        )

    async def remove(self, session_ids: list[str]) -> list[str]:
        """End these sessions for every replica (delete their rows) and forget them here;
        returns the ids whose rows existed."""
        for session_id in session_ids:
            self.detach(session_id)
        if not session_ids:
            return []
        return await self.db.write(lambda c: store.delete_sessions(c, session_ids))

    async def remember_seen(self, session_id: str, names: frozenset[str], space_type: str) -> None:
        text = seen_text(names)
        await self.db.write(
            lambda c: store.record_seen(c, session_id, space_type, text), serialised=False
        )

    async def replace_seen(self, session_id: str, before: str, after: frozenset[str]) -> bool:
        text = seen_text(after)
        return await self.db.write(
            lambda c: store.replace_seen(c, session_id, before, text), serialised=False
        )

    async def listening(self) -> list[SessionRow]:
        return await self.db.read(store.listening_sessions)

    async def set_listener(self, session_id: str, listener: str | None, *, was: str) -> None:
        """Record (or, with None, clear) which process holds the session's GET stream."""
        if listener is None:
            await self.db.write(
                lambda c: store.clear_listener(c, session_id, was), serialised=False
            )
        else:
            await self.db.write(
                lambda c: store.set_listener(c, session_id, listener), serialised=False
            )

    def loader(self, entry: SessionEntry, row: SessionRow) -> None:
        """Load the row's tool view into the entry's watch (the row is the truth: another
        replica may have served the session's last request)."""
        entry.watch.seen = seen_names(row.tools_seen)
        entry.watch.space_type = row.space_type

    def seen_writer(self, session_id: str) -> Callable[[frozenset[str], str], Awaitable[None]]:
        async def write(names: frozenset[str], space_type: str) -> None:
            await self.remember_seen(session_id, names, space_type)

        return write

    # -- activity ----------------------------------------------------------------------------

    def begin(self, entry: SessionEntry, *, stream: bool) -> None:
        entry.inflight += 1
        if not stream:
            entry.busy += 1
        entry.last_active = self._clock()

    def end(self, entry: SessionEntry, *, stream: bool) -> None:
        entry.inflight = max(0, entry.inflight - 1)
        if not stream:
            entry.busy = max(0, entry.busy - 1)
        entry.last_active = self._clock()

    def claim_requests(self, entry: SessionEntry, keys: Iterable[str]) -> str | None:
        """Mark these request ids in flight in the session; if one already is (or repeats in
        `keys`), nothing is marked and that key is returned."""
        wanted: set[str] = set()
        for key in keys:
            if key in entry.request_ids or key in entry.running_ids or key in wanted:
                return key
            wanted.add(key)
        entry.request_ids |= wanted
        return None

    def release_requests(self, entry: SessionEntry, keys: Iterable[str]) -> None:
        entry.request_ids.difference_update(keys)

    @contextlib.contextmanager
    def running(self, entry: SessionEntry, key: str) -> Iterator[None]:
        """While the handler of request `key` runs, `claim_requests` refuses that key."""
        entry.running_ids.add(key)
        try:
            yield
        finally:
            entry.running_ids.discard(key)

    async def flush(self) -> None:
        """Write this process's session activity to the rows: the last activity of sessions
        used since the last flush, and now for sessions with anything in flight (heartbeat)."""
        now = self._clock()
        activity: list[tuple[str, float]] = []
        for entry in self._entries.values():
            at = now if entry.inflight > 0 else entry.last_active
            if at > entry.flushed + (self.touch_seconds / 2 if entry.inflight > 0 else 0):
                activity.append((entry.session_id, at))
        if not activity:
            return
        activity.sort()  # one lock order for every process (PostgreSQL row locks)
        await self.db.write(lambda c: store.touch_sessions(c, activity), serialised=False)
        for session_id, at in activity:
            held = self._entries.get(session_id)
            if held is not None:
                held.flushed = max(held.flushed, at)

    async def expired(self) -> list[str]:
        """Delete the rows of sessions idle on every replica (allowing for activity not yet
        flushed elsewhere) and forget them here; returns their ids (the caller ends them)."""
        cutoff = self._clock() - self.idle_seconds - 2 * self.touch_seconds
        busy = [e.session_id for e in self._entries.values() if e.inflight > 0]
        gone = await self.db.write(lambda c: store.expire_sessions(c, cutoff, busy))
        for session_id in gone:
            self.detach(session_id)
        return gone

    async def vanished(self) -> list[str]:
        """Local sessions whose rows are gone (ended on another replica); forgotten here."""
        local = self.all_ids()
        if not local:
            return []
        found = await self.db.read(lambda c: store.existing_sessions(c, local))
        gone = [s for s in local if s not in found]
        for session_id in gone:
            self.detach(session_id)
        return gone
