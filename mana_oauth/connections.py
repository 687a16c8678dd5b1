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
from dataclasses import dataclass
from typing import Protocol

from mana_oauth.store import Connection

CACHE_SECONDS = 2.0
TOUCH_SECONDS = 60.0
# Beyond this many cached gids, entries too old to be used are dropped before adding one.
_PRUNE_AT = 4096


class ConnectionSource(Protocol):
    """The part of `mana_oauth.store.OAuthStore` the check uses."""

    async def connection(self, gid: str) -> Connection | None: ...

    async def touch(self, gid: str, at: float) -> None: ...


@dataclass
class _Answer:
    active: bool
    checked_at: float


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
        self.cache_seconds = cache_seconds
        self.touch_seconds = touch_seconds
        self._answers: dict[str, _Answer] = {}
        self._touched: dict[str, float] = {}

    async def active(self, gid: str) -> bool:
        now = self._clock()
        answer = self._answers.get(gid)
        if answer is None or not self._fresh(answer, now):
            connection = await self._store.connection(gid)
            now = self._clock()
            answer = _Answer(connection is not None and connection.active, now)
            self._remember(gid, answer, now)
        if answer.active:
            await self._touch(gid, now)
        return answer.active

    def forget(self, gid: str) -> None:
        """Drop the cached answer (this process revoked the connection itself)."""
        self._answers.pop(gid, None)

    def _fresh(self, answer: _Answer, now: float) -> bool:
        # a clock that went back also makes the answer stale
        return answer.checked_at <= now < answer.checked_at + self.cache_seconds

    def _remember(self, gid: str, answer: _Answer, now: float) -> None:
        if len(self._answers) >= _PRUNE_AT:
            self._answers = {g: a for g, a in self._answers.items() if self._fresh(a, now)}
        self._answers[gid] = answer

    async def _touch(self, gid: str, now: float) -> None:
        last = self._touched.get(gid)
        if last is not None and last <= now < last + self.touch_seconds:
            return
        if len(self._touched) >= _PRUNE_AT:
            self._touched = {
                g: t for g, t in self._touched.items() if t <= now < t + self.touch_seconds
            }
        # claimed before the write, so concurrent requests of this gid write once
        self._touched[gid] = now
        await self._store.touch(gid, now)
