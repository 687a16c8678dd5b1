"""The rate-limit log: recent invocation times per (user, tool).

Two implementations of one contract (`RateLog.admit`: prune, decide on the recent calls, record
the call if the decision allows it, atomically):

- `SharedRateLimitLog`, what the composition root wires: the log lives in the database
  (`policy_rate_log`), so every server replica, daemon and `mana call` on one database shares
  each user's limits;
- `RateLimitLog`, in this process's memory: for a gate built without a database (tests and
  benchmarks), and the baseline the gate's cost is measured against.

In-memory log. Memory stays bounded however calls arrive:

- each (user, tool) keeps a deque of at most `max_events` timestamps (the largest configured
  limit: older events cannot change a decision), pruned of events outside the window on every
  access;
- each user keeps at most `max_tools_per_user` tool deques (oldest dropped first);
- at most `max_users` users are tracked; the least recently active user is forgotten first,
  and users whose events have all left the window are dropped as calls come in.

So the log never holds more than `max_users * max_tools_per_user * max_events` timestamps, and
in practice no more than the calls admitted during the last window.

`check_and_record` runs the decision and, when it allows the call, records it, under one lock
and without awaiting in between, so concurrent calls (asyncio tasks or threads) cannot both
take the last slot. The gate calls it before the handler runs, so a slow handler opens no gap.
Denied calls are not recorded: a client that keeps retrying while denied is not locked out for
longer than the window after its last successful call.
"""

from __future__ import annotations

import threading
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from policy import store
from tool_registry.gate import Decision
from tool_registry.store.connection import Conn
from tool_registry.store.database import Database

Decide = Callable[[Sequence[float]], Decision]

DEFAULT_MAX_TOOLS_PER_USER = 64
# Idle users dropped from the cold end per recorded call (amortised cleanup).
_SWEEP_PER_CALL = 2


@dataclass(frozen=True)
class LogSize:
    users: int
    keys: int
    events: int


class RateLog(Protocol):
    """What the gate needs of a rate-limit log."""

    async def admit(self, user_id: str, tool: str, now: float, decide: Decide) -> Decision:
        """Call `decide(recent)` with this user's recent calls of `tool` (ascending POSIX
        seconds, all inside the window) and record `now` if the decision allows the call, as one
        step no concurrent `admit` of the same key can interleave with."""
        ...


class RateLimitLog:
    """The in-memory log of one process (see the module docstring)."""

    def __init__(
        self,
        *,
        window_seconds: float = 60.0,
        max_events: int = 30,
        max_users: int = 10_000,
        max_tools_per_user: int = DEFAULT_MAX_TOOLS_PER_USER,
    ) -> None:
        if window_seconds <= 0 or max_events < 1 or max_users < 1 or max_tools_per_user < 1:
            raise ValueError("rate-limit log bounds must be positive")
        self.window = window_seconds
        self.max_events = max_events
        self.max_users = max_users
        self.max_tools_per_user = max_tools_per_user
        self._users: OrderedDict[str, dict[str, deque[float]]] = OrderedDict()
        self._lock = threading.Lock()

    def check_and_record(
        self,
        user_id: str,
        tool: str,
        now: float,
        decide: Callable[[Sequence[float]], Decision],
    ) -> Decision:
        """Prune, call `decide(recent)` with this user's recent calls of `tool` (ascending
        POSIX seconds, all inside the window) and record `now` if the decision allows it."""
        with self._lock:
            events = self._events(user_id, tool, now)
            decision = decide(events if events is not None else ())
            if decision.allow:
                self._record(user_id, tool, now, events)
            return decision

    async def admit(self, user_id: str, tool: str, now: float, decide: Decide) -> Decision:
        # No await inside: atomic for every task of this event loop (and, by the lock, threads).
        return self.check_and_record(user_id, tool, now, decide)

    def recent(self, user_id: str, tool: str, now: float) -> list[float]:
        """A copy of the recent calls (inside the window) of `tool` by this user."""
        with self._lock:
            events = self._events(user_id, tool, now)
            return list(events) if events is not None else []

    def record(self, user_id: str, tool: str, now: float) -> None:
        with self._lock:
            self._record(user_id, tool, now, self._events(user_id, tool, now))

    # -- internals (called with the lock held) -----------------------------------------------

    def _events(self, user_id: str, tool: str, now: float) -> deque[float] | None:
        tools = self._users.get(user_id)
        if tools is None:
            return None
        self._users.move_to_end(user_id)
        events = tools.get(tool)
        if events is None:
            return None
        cutoff = now - self.window
        while events and events[0] <= cutoff:
            events.popleft()
        return events

    def _record(self, user_id: str, tool: str, now: float, events: deque[float] | None) -> None:
        if events is None:
            tools = self._users.get(user_id)
            if tools is None:
                tools = self._users[user_id] = {}
                if len(self._users) > self.max_users:
                    self._users.popitem(last=False)
            events = tools[tool] = deque(maxlen=self.max_events)
            if len(tools) > self.max_tools_per_user:
                del tools[next(iter(tools))]
        # Keep the deque ascending even if the wall clock steps back: an event is never
        # recorded as earlier than the previous one (at worst it expires slightly later).
        if events and events[-1] > now:
            now = events[-1]
        events.append(now)
        self._sweep(now)

    def _sweep(self, now: float) -> None:
        cutoff = now - self.window
        for _ in range(_SWEEP_PER_CALL):
            if len(self._users) <= 1:
                return
            user_id, tools = next(iter(self._users.items()))
            if any(events and events[-1] > cutoff for events in tools.values()):
                return
            del self._users[user_id]

    # -- introspection -----------------------------------------------------------------------

    def size(self) -> LogSize:
        with self._lock:
            keys = sum(len(t) for t in self._users.values())
            events = sum(len(e) for t in self._users.values() for e in t.values())
            return LogSize(users=len(self._users), keys=keys, events=events)


def _parse_events(text: str) -> list[float]:
    return [float(t) for t in text.split()] if text else []


def _format_events(events: Sequence[float]) -> str:
    return " ".join(repr(t) for t in events)


class SharedRateLimitLog:
    """The rate-limit log in the database (`policy_rate_log`), shared by every process on it.

    `admit` is one write unit (`policy.store.lock_events`: the key's row is locked, read,
    decided on and rewritten before COMMIT), so two processes cannot both take the last slot of
    a key. On PostgreSQL the unit does not take the database-wide write lock: the row lock
    serialises exactly the units of one (user, tool), and calls of other keys and tool writes
    never wait for it. SQLite has one writer, which serialises every unit.

    Bounded storage: a key's row keeps only its events inside the window, at most `max_events`
    of them (the largest configured limit: older events cannot change a decision), and rows
    whose newest event left the window are deleted by a sweep each process runs, as a unit of
    its own before a call, at most once per half window. Denied calls are not recorded."""

    def __init__(self, db: Database, *, window_seconds: float = 60.0, max_events: int = 30) -> None:
        if window_seconds <= 0 or max_events < 1:
            raise ValueError("rate-limit log bounds must be positive")
        self.db = db
        self.window = window_seconds
        self.max_events = max_events
        self._next_sweep = float("-inf")

    async def admit(self, user_id: str, tool: str, now: float, decide: Decide) -> Decision:
        if now >= self._next_sweep:
            self._next_sweep = now + self.window / 2
            await self.sweep(now)
        cutoff = now - self.window
        keep = self.max_events

        def unit(conn: Conn) -> Decision:
            events = [
                t for t in _parse_events(store.lock_events(conn, user_id, tool)) if t > cutoff
            ]
            decision = decide(events)
            if decision.allow:
                # Ascending even if a clock stepped back (or another host's clock runs ahead):
                # never recorded earlier than the newest event (at worst it expires later).
                at = max(now, events[-1]) if events else now
                events.append(at)
                store.store_events(conn, user_id, tool, _format_events(events[-keep:]), at)
            return decision

        return await self.db.write(unit, serialised=False)

    async def recent(self, user_id: str, tool: str, now: float) -> list[float]:
        """The recent calls (inside the window) of `tool` by this user, as stored now."""
        text = await self.db.read(lambda conn: store.read_events(conn, user_id, tool))
        return [t for t in _parse_events(text) if t > now - self.window]

    async def sweep(self, now: float) -> int:
        """Delete the keys with no call inside the window at `now`; how many went."""
        cutoff = now - self.window
        return await self.db.write(lambda conn: store.sweep(conn, cutoff), serialised=False)

    async def size(self) -> LogSize:
        """Users and keys held, and the events among them, as stored now."""
        rows = await self.db.read(store.every_key)
        return LogSize(
            users=len({user for user, _, _ in rows}),
            keys=len(rows),
            events=sum(len(events.split()) for _, _, events in rows),
        )
