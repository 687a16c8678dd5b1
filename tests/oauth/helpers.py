"""Shared pieces of the OAuth store tests: a settable clock and a store on a test database."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from mana_cli.runtime import EXTRA_MIGRATIONS
from mana_oauth.store import CODE_TTL, CodeRecord, OAuthStore
from tool_registry.store import Database, open_database

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
