"""Shared pieces of the OAuth store tests: a settable clock, a store on a test database, and a
database handle that makes two write units contend."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from mana_cli.runtime import EXTRA_MIGRATIONS
from mana_oauth.store import CODE_TTL, CodeRecord, OAuthStore
from tool_registry.store import Database, Transaction, open_database
from tool_registry.store.connection import Dialect

T = TypeVar("T")

CLIENT = "https://client.example/metadata.json"
RESOURCE = "http://127.0.0.1:8000/mcp"
READ_WRITE = ("mana:read", "mana:write")


@dataclass
class SetClock:
    """A wall clock the test moves by hand (POSIX seconds)."""

    now: float = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@asynccontextmanager
async def oauth_database(target: str) -> AsyncIterator[Database]:
    """The runtime's whole schema (the oauth component included) on `target`."""
    db = await open_database(target, EXTRA_MIGRATIONS)
    try:
        yield db
    finally:
        await db.close()


def code_record(
    clock: SetClock,
    *,
    client_id: str = CLIENT,
    user_id: str = "usr_ann",
    space_id: str = "spc_brand",
    scopes: tuple[str, ...] = READ_WRITE,
) -> CodeRecord:
    return CodeRecord(
        client_id=client_id,
        user_id=user_id,
        space_id=space_id,
        scopes=scopes,
        redirect_uri="http://127.0.0.1:9999/callback",
        code_challenge="E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
        resource=RESOURCE,
        expires_at=clock() + CODE_TTL,
    )


async def connect_with_code(
    store: OAuthStore, code: str, record: CodeRecord, client_name: str = "Claude"
) -> tuple[str, str]:
    """Store, redeem and exchange `code` as the authorization server does: (gid, refresh)."""
    await store.create_code(code, record)
    redeemed = await store.redeem_code(code, record.client_id)
    assert redeemed is not None and not redeemed.replayed
    connection, refresh = await store.create_connection(
        code,
        record.user_id,
        record.client_id,
        client_name,
        record.space_id,
        record.scopes,
    )
    return connection.gid, refresh


# Only a failure guard: a barrier never reached fails the test after this long.
BARRIER_TIMEOUT = 5.0


class BarrierDatabase:
    """A `Database` handle of a `pair`: the first write unit of each handle waits for the
    other's before it is handed to the database, so two stores on the two handles (as two
    replicas) really contend for the same rows at the same moment, and whatever their
    operations read before writing, both have read."""

    def __init__(self, inner: Database, barrier: asyncio.Barrier) -> None:
        self._inner = inner
        self._barrier = barrier
        self._waiting = True

    @classmethod
    def pair(cls, first: Database, second: Database) -> tuple[BarrierDatabase, BarrierDatabase]:
        barrier = asyncio.Barrier(2)
        return cls(first, barrier), cls(second, barrier)

    @property
    def dialect(self) -> Dialect:
        return self._inner.dialect

    async def read(self, fn: Callable[[Any], T]) -> T:
        return await self._inner.read(fn)

    async def write(
        self,
        fn: Callable[[Any], T],
        *,
        on_commit: Callable[[T], None] | None = None,
        serialised: bool = True,
    ) -> T:
        if self._waiting:
            self._waiting = False
            await asyncio.wait_for(self._barrier.wait(), BARRIER_TIMEOUT)
        return await self._inner.write(fn, on_commit=on_commit, serialised=serialised)

    def transaction(self, scopes: Sequence[str] = ()) -> AbstractAsyncContextManager[Transaction]:
        return self._inner.transaction(scopes)

    async def probe_write(self, wait_seconds: float | None = None) -> str | None:
        return await self._inner.probe_write(wait_seconds)

    async def close(self) -> None:
        await self._inner.close()
