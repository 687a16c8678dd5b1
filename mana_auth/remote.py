"""Verification keys from a remote JWKS URL (a real Mana auth server).

The document is fetched with `httpx`, cached for `ttl` seconds and re-fetched early when a token
names an unknown `kid` (key rotation on the auth server) — at most once per
`min_refresh_interval`, so a flood of tokens with made-up key ids cannot turn into a flood of
fetches. When a refresh fails the previous keys stay in use; with no keys at all verification
answers "unavailable" (HTTP 503) instead of "bad token".
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import httpx
import structlog

from mana_auth.errors import AuthUnavailable
from mana_auth.tokens import VerificationKey, verification_key_from_jwk

log = structlog.get_logger("mana.auth.jwks")

MAX_JWKS_BYTES = 512 * 1024
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def check_jwks_url(url: str) -> str:
    """https anywhere, plain http only on loopback (tests, a local auth server)."""
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return url
    if parts.scheme == "http" and (parts.hostname or "") in LOOPBACK:
        return url
    raise ValueError(f"JWKS URL must be https (or http on loopback), got {url!r}")


class RemoteJwks:
    def __init__(
        self,
        url: str,
        *,
        client: httpx.AsyncClient | None = None,
        ttl: float = 300.0,
        min_refresh_interval: float = 30.0,
        timeout: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = check_jwks_url(url)
        self._own_client = client is None
        self._client = client or httpx.AsyncClient(timeout=timeout, follow_redirects=False)
        self.ttl = ttl
        self.min_refresh_interval = min_refresh_interval
        self._clock = clock
        self._keys: dict[str, VerificationKey] = {}
        self._fetched_at: float | None = None
        self._last_attempt: float | None = None
        self._lock = asyncio.Lock()
        self.fetches = 0

    async def find(self, kid: str) -> VerificationKey | None:
        if self._fetched_at is None or self._clock() - self._fetched_at >= self.ttl:
            await self._refresh()
        key = self._keys.get(kid)
        if key is None:
            await self._refresh()  # maybe the auth server rotated its keys
            key = self._keys.get(kid)
        if key is None and not self._keys:
            raise AuthUnavailable("the auth server's signing keys cannot be fetched right now")
        return key

    def _may_refetch(self, now: float) -> bool:
        return self._last_attempt is None or now - self._last_attempt >= self.min_refresh_interval

    async def _refresh(self) -> None:
        async with self._lock:
            now = self._clock()
            if not self._may_refetch(now):
                return  # someone else just fetched (or failed to): use what we have
            self._last_attempt = now
            try:
                keys = await self._fetch()
            except Exception as exc:  # keep serving the previous keys
                log.warning("jwks fetch failed", url=self.url, error=type(exc).__name__)
                return
            self._keys = keys
            self._fetched_at = now

    async def _fetch(self) -> dict[str, VerificationKey]:
        self.fetches += 1
        response = await self._client.get(self.url, headers={"accept": "application/json"})
        if response.status_code != 200:
            raise ValueError(f"JWKS answered HTTP {response.status_code}")
        if len(response.content) > MAX_JWKS_BYTES:
            raise ValueError("JWKS document too large")
        body: Any = response.json()
        raw_keys = body.get("keys") if isinstance(body, dict) else None
        if not isinstance(raw_keys, list):
            raise ValueError("JWKS document has no 'keys' list")
        keys: dict[str, VerificationKey] = {}
        for raw in raw_keys:
            if isinstance(raw, dict):
                key = verification_key_from_jwk(raw)
                if key is not None:
                    keys[key.kid] = key
        return keys

    async def aclose(self) -> None:
        if self._own_client:
            await self._client.aclose()
