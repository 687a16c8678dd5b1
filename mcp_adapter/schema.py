"""Versioned schema of the `mcp_channel` component (appended to the runtime's migrations): the
secrets every server replica on the database shares, created once by whichever replica needs
one first.

`mcp_secrets` holds one row per named secret (`request-state`: the HMAC key that signs the
`requestState` of 2026-07-28 input-required rounds, so a retry may reach any replica). Secrets
are never logged nor sent to a client.
"""

from __future__ import annotations

import secrets

from tool_registry.store.connection import Conn
from tool_registry.store.database import Database, Migration

COMPONENT = "mcp_channel"

_SECRETS = """
CREATE TABLE mcp_secrets (
    name TEXT PRIMARY KEY,
    secret TEXT NOT NULL
);
"""

CHANNEL_MIGRATIONS: tuple[Migration, ...] = (Migration(COMPONENT, 1, "shared-secrets", _SECRETS),)


async def shared_secret(db: Database, name: str) -> bytes:
    """The secret called `name`, 32 random bytes created on first use; every replica reads the
    same value (a concurrent creator loses the insert and reads the winner's)."""
    fresh = secrets.token_hex(32)

    def create_or_read(conn: Conn) -> str:
        conn.execute(
            "INSERT INTO mcp_secrets (name, secret) VALUES (?, ?) ON CONFLICT (name) DO NOTHING",
            (name, fresh),
        )
        row = conn.execute("SELECT secret FROM mcp_secrets WHERE name = ?", (name,)).fetchone()
        return str(row[0])

    return bytes.fromhex(await db.write(create_or_read))
