"""Streamable HTTP sessions (2025-11-25 era) bound to the user who opened them.

The `mcp` session manager owns the sessions themselves; this registry records who owns each one
and how it is used, so the guard can answer 403 (another user's session id), 404 (unknown or
expired id), expire idle sessions, cap open sessions per user and refuse a JSON-RPC id that is
already in flight in the session.

- A session is *idle* when no request of it is in flight (an open GET stream counts as in
  flight, as in the SDK) for `idle_seconds`; idle sessions are terminated by the sweeper.
- Each user has at most `per_user` open sessions. Opening one more evicts that user's least
  recently active session that has nothing in flight and was not used in the last
  `protect_seconds`; if every one of them is busy or recent the new session is refused (429,
  with the time until one can be evicted). Eviction of old sessions, because clients such as the
  Inspector CLI open a session per run and never close it; never of recent ones, because a
  client that opens many sessions must not end another client's live session.
- Memory is bounded: entries exist only for live sessions (at most `per_user` per user and
  `max_total` overall), and per-user indexes are dropped with their last session.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from mcp_server import ToolSetWatch


@dataclass
class SessionEntry:
    session_id: str
    user_id: str
    created_at: float
    last_active: float
    inflight: int = 0  # requests of this session being served, GET streams included
    busy: int = 0  # POST/DELETE requests being served
    watch: ToolSetWatch = field(default_factory=lambda: ToolSetWatch(listening=False))
    # JSON-RPC ids in flight, keyed as the SDK correlates them (`guard.request_key`): of POSTs
    # being answered, and of handlers still running (they outlive a POST whose client left, and
    # their answer would go to the next POST with the same id)
    request_ids: set[str] = field(default_factory=set)
    running_ids: set[str] = field(default_factory=set)


@dataclass(frozen=True)
class Admission:
    """The answer to "may this user open one more session?". `evicted` ids are already forgotten
    here and must be terminated by the caller, admitted or not. A refusal carries the HTTP status,
    a stable reason, a message for the client and, when known, seconds until a retry can succeed."""

    admitted: bool
    evicted: list[str] = field(default_factory=list)
    status: int = 200
    reason: str = ""
    message: str = ""
    retry_after: int | None = None


class SessionRegistry:
    def __init__(
        self,
        *,
        idle_seconds: float,
        per_user: int,
        max_total: int,
        protect_seconds: float = 600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if idle_seconds <= 0 or per_user <= 0 or max_total <= 0:
            raise ValueError("idle_seconds, per_user and max_total must be positive")
        if protect_seconds < 0:
            raise ValueError("protect_seconds must not be negative")
        self.idle_seconds = idle_seconds
        self.per_user = per_user
        self.max_total = max_total
        self.protect_seconds = protect_seconds
        self._clock = clock
        self._entries: dict[str, SessionEntry] = {}
        self._by_user: dict[str, dict[str, None]] = {}
        self._pending: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, session_id: str) -> SessionEntry | None:
        return self._entries.get(session_id)

    def of_user(self, user_id: str) -> list[SessionEntry]:
        return [self._entries[s] for s in self._by_user.get(user_id, ())]

    def watches(self) -> Iterator[ToolSetWatch]:
        for entry in list(self._entries.values()):
            yield entry.watch

    # -- opening -----------------------------------------------------------------------------

    def reserve(self, user_id: str) -> Admission:
        """Make room for one more session of `user_id`, evicting that user's oldest sessions that
        are neither in use nor recent. An admitted reservation must be followed by `add` or
        `release`."""
        evicted: list[str] = []
        held = self._pending.get(user_id, 0)
        while len(self._by_user.get(user_id, ())) + held >= self.per_user:
            victim = self._evictable(user_id)
            if victim is None:
                return self._user_full(user_id, evicted)
            self.remove(victim.session_id)
            evicted.append(victim.session_id)
        if len(self._entries) + sum(self._pending.values()) >= self.max_total:
            return Admission(
                False,
                evicted,
                503,
                "server-sessions-full",
                "the server has too many open sessions; retry later",
                5,
            )
        self._pending[user_id] = held + 1
        return Admission(True, evicted)

    def release(self, user_id: str) -> None:
        held = self._pending.get(user_id, 0) - 1
        if held > 0:
            self._pending[user_id] = held
        else:
            self._pending.pop(user_id, None)

    def _evictable(self, user_id: str) -> SessionEntry | None:
        """The least recently active session with nothing in flight (no call, no GET stream)
        that was last used before the protection window."""
        cutoff = self._clock() - self.protect_seconds
        candidates = [
            e for e in self.of_user(user_id) if e.inflight == 0 and e.last_active <= cutoff
        ]
        return min(candidates, key=lambda e: e.last_active, default=None)

    def _user_full(self, user_id: str, evicted: list[str]) -> Admission:
        quiet = [e.last_active for e in self.of_user(user_id) if e.inflight == 0]
        retry_after = None
        if quiet:
            wait = min(quiet) + self.protect_seconds - self._clock()
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

    def add(self, session_id: str, user_id: str) -> SessionEntry:
        now = self._clock()
        entry = SessionEntry(session_id, user_id, created_at=now, last_active=now)
        self._entries[session_id] = entry
        self._by_user.setdefault(user_id, {})[session_id] = None
        return entry

    def remove(self, session_id: str) -> SessionEntry | None:
        entry = self._entries.pop(session_id, None)
        if entry is not None:
            sessions = self._by_user.get(entry.user_id)
            if sessions is not None:
                sessions.pop(session_id, None)
                if not sessions:
                    del self._by_user[entry.user_id]
        return entry

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

    def expired(self) -> list[str]:
        """Forget idle sessions; returns their ids (the caller terminates them)."""
        cutoff = self._clock() - self.idle_seconds
        gone = [
            e.session_id
            for e in self._entries.values()
            if e.inflight == 0 and e.last_active <= cutoff
        ]
        for session_id in gone:
            self.remove(session_id)
        return gone

    def idle(self) -> list[str]:
        """Sessions with nothing in flight except (maybe) GET streams: safe to close now."""
        return [e.session_id for e in self._entries.values() if e.busy == 0]

    def all_ids(self) -> list[str]:
        return list(self._entries)
