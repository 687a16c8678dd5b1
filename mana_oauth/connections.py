"""Whether an OAuth access token's connection (its `gid` claim) is still live, for the MCP guard.

Access tokens are self-contained JWTs valid for an hour; revoking a connection (`mana
connections revoke`, the revocation endpoint, a replayed code or reused refresh token) must end
its access tokens too. The guard asks `GrantCheck.active(gid)` on every request of such a token:
answers are cached per process for at most `cache_seconds` (so a revocation anywhere takes
effect on every replica within that time, without a database read per request), and a request
on a live connection records its `last_used_at` at most once per `touch_seconds` (what `mana
connections list` shows as last use).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Generic, Protocol, TypeVar

from mana_oauth.store import Connection

V = TypeVar("V")

CACHE_SECONDS = 2.0
TOUCH_SECONDS = 60.0
# A map of recent entries is pruned of stale ones when it reaches this size, or twice the
# number of entries that were still fresh at the last prune (so pruning stays amortised O(1)).
_PRUNE_AT = 4096


class ConnectionSource(Protocol):
    """The part of `mana_oauth.store.OAuthStore` the check uses."""

    async def connection(self, gid: str) -> Connection | None: ...

    async def touch(self, gid: str, at: float) -> None: ...


class _Recent(Generic[V]):
    """Values per gid, each valid for `ttl` seconds from when it was put; memory is bounded
    by the gids seen within `ttl` (stale entries are dropped in batches)."""

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._entries: dict[str, tuple[V, float]] = {}
        self._limit = _PRUNE_AT

    def get(self, gid: str, now: float) -> V | None:
        entry = self._entries.get(gid)
        if entry is None or not self._fresh(entry[1], now):
            return None
        return entry[0]

    def put(self, gid: str, value: V, now: float) -> None:
        if len(self._entries) >= self._limit:
            self._entries = {g: e for g, e in self._entries.items() if self._fresh(e[1], now)}
            self._limit = max(_PRUNE_AT, 2 * len(self._entries))
        self._entries[gid] = (value, now)

    def pop(self, gid: str) -> None:
        self._entries.pop(gid, None)

    def __len__(self) -> int:
        return len(self._entries)

    def _fresh(self, at: float, now: float) -> bool:
        # a clock that went back also makes the entry stale
        return at <= now < at + self.ttl


class GrantCheck:
    """The guard's `grants`: `active(gid)` is True while the connection exists and is not
    revoked. `clock` is POSIX seconds (the time recorded as last use)."""

    def __init__(
        self,
        store: ConnectionSource,
        *,
        clock: Callable[[], float] = time.time,
        cache_seconds: float = CACHE_SECONDS,
        touch_seconds: float = TOUCH_SECONDS,
    ) -> None:
        if cache_seconds < 0 or touch_seconds < 0:
            raise ValueError("cache_seconds and touch_seconds must not be negative")
        self._store = store
        self._clock = clock
        self._answers: _Recent[bool] = _Recent(cache_seconds)
        self._touched: _Recent[bool] = _Recent(touch_seconds)

    async def active(self, gid: str) -> bool:
        now = self._clock()
        answer = self._answers.get(gid, now)
        if answer is None:
            connection = await self._store.connection(gid)
            now = self._clock()
            answer = connection is not None and connection.active
            self._answers.put(gid, answer, now)
        if answer and self._touched.get(gid, now) is None:
            # claimed before the write, so concurrent requests of this gid write once
            self._touched.put(gid, True, now)
            await self._store.touch(gid, now)
        return answer

    def forget(self, gid: str) -> None:
        """Drop the cached answer (this process revoked the connection itself)."""
        self._answers.pop(gid)

    def cached(self) -> int:
        """How many gids this process holds answers for (fresh or not yet pruned)."""
        return len(self._answers)
