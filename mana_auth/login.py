"""Password login: email + password → a short-lived token (for `POST /auth/token`).

Failed attempts are counted per email; after `max_failures` within `window` seconds further
attempts for that email are refused (429) until the window has passed, which caps online guessing
without locking anyone out for long. The slow password check runs off the event loop and at most
`concurrency` at a time, so logins cannot stall tool calls.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from datetime import timedelta

from mana_auth.errors import AuthError, LoginThrottled
from mana_auth.tokens import IssuedToken, TokenIssuer
from tool_registry.store.accounts import Accounts, User

LOGIN_TOKEN_TTL = timedelta(hours=1)


class PasswordLogin:
    def __init__(
        self,
        accounts: Accounts,
        issuer: TokenIssuer,
        *,
        ttl: timedelta = LOGIN_TOKEN_TTL,
        max_failures: int = 10,
        window: float = 300.0,
        concurrency: int = 2,
        max_tracked: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.accounts = accounts
        self.issuer = issuer
        self.ttl = ttl
        self.max_failures = max_failures
        self.window = window
        self._failures: dict[str, deque[float]] = {}
        self._max_tracked = max_tracked
        self._slots = asyncio.Semaphore(concurrency)
        self._clock = clock

    async def login(self, email: str, password: str) -> IssuedToken:
        key = email.strip().lower()
        self._check_throttle(key)
        async with self._slots:
            user = await _check_password_off_loop(self.accounts, key, password)
        if user is None:
            self._record_failure(key)
            raise AuthError("bad-credentials", "email or password is wrong")
        self._failures.pop(key, None)
        return self.issuer.issue(user.id, email=user.email, ttl=self.ttl)

    def _recent(self, key: str) -> deque[float]:
        now = self._clock()
        times = self._failures.get(key)
        if times is None:
            return deque()
        while times and now - times[0] >= self.window:
            times.popleft()
        if not times:
            del self._failures[key]
        return times

    def _check_throttle(self, key: str) -> None:
        times = self._recent(key)
        if len(times) >= self.max_failures:
            retry = max(1, int(self.window - (self._clock() - times[0])) + 1)
            raise LoginThrottled(retry)

    def _record_failure(self, key: str) -> None:
        times = self._recent(key)
        if not times:
            if len(self._failures) >= self._max_tracked:
                del self._failures[next(iter(self._failures))]
            self._failures[key] = times
        times.append(self._clock())


async def _check_password_off_loop(accounts: Accounts, email: str, password: str) -> User | None:
    # `Accounts.check_password` runs scrypt (tens of ms) on the calling event loop; run it on a
    # worker thread with its own loop so the server's loop keeps serving tool calls.
    return await asyncio.to_thread(lambda: asyncio.run(accounts.check_password(email, password)))
