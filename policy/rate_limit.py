"""The rate-limit log: recent invocation times per (user, tool), one object per process.

Memory stays bounded however calls arrive:

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

from tool_registry.gate import Decision

DEFAULT_MAX_TOOLS_PER_USER = 64
# Idle users dropped from the cold end per recorded call (amortised cleanup).
_SWEEP_PER_CALL = 2


@dataclass(frozen=True)
class LogSize:
    users: int
    keys: int
    events: int


class RateLimitLog:
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
