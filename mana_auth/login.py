"""Password login: email + password → a short-lived token (for `POST /auth/token`), or the
user (for the OAuth sign-in page).

Online guessing is capped by a `LoginThrottle` (one per server, built in the composition root):
an attempt is reserved, and counted as a failure, before the password is checked, so any number
of simultaneous guesses leads to at most the sequential limit of password checks. The slow
password check runs off the event loop and at most `concurrency` at a time, so logins cannot
stall tool calls.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from datetime import timedelta
from typing import TypeVar

from mana_auth.errors import AuthError, LoginThrottled
from mana_auth.tokens import IssuedToken, TokenIssuer
from tool_registry.store.accounts import Accounts, User

LOGIN_TOKEN_TTL = timedelta(hours=1)

K = TypeVar("K", bound=Hashable)

PasswordCheck = Callable[[str, str], Awaitable[User | None]]
"""(normalised email, password) → the user when the password matches, else None."""


@dataclass(frozen=True)
class LoginAttempt:
    """One reserved attempt: it counts as a failure of its (client, account) pair and of its
    account from the moment it is reserved until a success gives it back."""

    client: str
    account: str
    at: float


class LoginThrottle:
    """Sliding-window failure counts for password logins, in two keys.

    - (client address, account): `per_client` failures within `window` seconds, so a stranger
      who guesses from one address locks out that address only, not the account's owner.
    - account: a higher `per_account` ceiling across all addresses, which slows guessing spread
      over many addresses.

    `reserve` checks both and records the attempt in the same synchronous step (no await in
    between), so concurrent requests cannot all pass the check before any failure is counted.
    A success (`succeeded`) gives back its own attempt and clears the failures of its own
    (client, account) pair, which someone who knows the password made; it never clears the
    account-wide count, so failures from other addresses (a running attack) stay counted until
    they age out. Behind a reverse proxy every client has the proxy's address: the per-account
    ceiling is then what bounds guessing.
    """

    def __init__(
        self,
        *,
        per_client: int = 10,
        per_account: int = 50,
        window: float = 300.0,
        max_tracked: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if per_client < 1 or per_account < per_client:
            raise ValueError("need 1 <= per_client <= per_account")
        self.per_client = per_client
        self.per_account = per_account
        self.window = window
        self._max_tracked = max_tracked
        self._clock = clock
        self._by_client: dict[tuple[str, str], deque[float]] = {}
        self._by_account: dict[str, deque[float]] = {}

    def reserve(self, client: str, account: str) -> LoginAttempt:
        """Count one attempt for (client, account), or raise `LoginThrottled` (counting
        nothing) when either limit is reached."""
        now = self._clock()
        pair = (client, account)
        pair_times = _recent(self._by_client, pair, now, self.window)
        account_times = _recent(self._by_account, account, now, self.window)
        wait = max(
            self._wait(pair_times, self.per_client, now),
            self._wait(account_times, self.per_account, now),
        )
        if wait > 0:
            raise LoginThrottled(wait)
        _append(self._by_client, pair, now, self._max_tracked)
        _append(self._by_account, account, now, self._max_tracked)
        return LoginAttempt(client, account, now)

    def succeeded(self, attempt: LoginAttempt) -> None:
        """The password matched: forget this pair's failures and give back this attempt's place
        in the account count (the account's other failures stay)."""
        self._by_client.pop((attempt.client, attempt.account), None)
        self._give_back(self._by_account, attempt.account, attempt.at)

    def release(self, attempt: LoginAttempt) -> None:
        """The check could not be made (e.g. the database failed): the attempt was no guess."""
        self._give_back(self._by_client, (attempt.client, attempt.account), attempt.at)
        self._give_back(self._by_account, attempt.account, attempt.at)

    def failures(self, client: str, account: str) -> tuple[int, int]:
        """(failures of this pair, failures of the account) within the window right now."""
        now = self._clock()
        return (
            len(_recent(self._by_client, (client, account), now, self.window)),
            len(_recent(self._by_account, account, now, self.window)),
        )

    def _wait(self, times: deque[float], limit: int, now: float) -> int:
        if len(times) < limit:
            return 0
        # Below the limit again once the entry `limit` places from the newest has aged out.
        frees_at = times[len(times) - limit] + self.window
        return max(1, math.ceil(frees_at - now))

    @staticmethod
    def _give_back(table: dict[K, deque[float]], key: K, at: float) -> None:
        times = table.get(key)
        if times is not None and at in times:
            times.remove(at)
            if not times:
                del table[key]


def _recent(table: dict[K, deque[float]], key: K, now: float, window: float) -> deque[float]:
    times = table.get(key)
    if times is None:
        return deque()
    while times and now - times[0] >= window:
        times.popleft()
    if not times:
        del table[key]
    return times


def _append(table: dict[K, deque[float]], key: K, at: float, max_tracked: int) -> None:
    times = table.get(key)
    if times is None:
        if len(table) >= max_tracked:  # bounded memory: forget the oldest tracked key
            del table[next(iter(table))]
        times = table[key] = deque()
    times.append(at)


class PasswordLogin:
    """Email + password → token, throttled by the `LoginThrottle` it is given.

    `check` is the password check (default: the accounts' scrypt check off the event loop);
    tests inject a counting one."""

    def __init__(
        self,
        accounts: Accounts,
        issuer: TokenIssuer,
        throttle: LoginThrottle,
        *,
        ttl: timedelta = LOGIN_TOKEN_TTL,
        concurrency: int = 2,
        check: PasswordCheck | None = None,
    ) -> None:
        self.accounts = accounts
        self.issuer = issuer
        self.throttle = throttle
        self.ttl = ttl
        self._slots = asyncio.Semaphore(concurrency)
        self._check: PasswordCheck = check or (
            lambda email, password: _check_password_off_loop(accounts, email, password)
        )

    async def login(self, email: str, password: str, *, client: str = "") -> IssuedToken:
        """A token for the user, `bad-credentials`, or `LoginThrottled` (before any check)."""
        user = await self.authenticate(email, password, client=client)
        return self.issuer.issue(user.id, email=user.email, ttl=self.ttl)

    async def authenticate(self, email: str, password: str, *, client: str = "") -> User:
        """The user whose password this is, under the same throttle as `login` (the OAuth
        sign-in page uses it): `AuthError("bad-credentials")`, or `LoginThrottled` before any
        check."""
        key = email.strip().lower()
        attempt = self.throttle.reserve(client, key)
        try:
            async with self._slots:
                user = await self._check(key, password)
        except Exception:
            self.throttle.release(attempt)
            raise
        # A cancelled check keeps its reservation: it counts as a failed guess.
        if user is None:
            raise AuthError("bad-credentials", "email or password is wrong")
        self.throttle.succeeded(attempt)
        return user


async def _check_password_off_loop(accounts: Accounts, email: str, password: str) -> User | None:
    # `Accounts.check_password` runs scrypt (tens of ms) on the calling event loop; run it on a
    # worker thread with its own loop so the server's loop keeps serving tool calls.
    return await asyncio.to_thread(lambda: asyncio.run(accounts.check_password(email, password)))
