"""Versioned schema of the `oauth` component: the built-in authorization server's state, shared
by every server replica on the database (appended to the runtime's migrations).

- `oauth_clients`: registered (RFC 7591) and fetched (Client ID Metadata Document) clients; the
  validated metadata as JSON, a DCR confidential client's secret hash, a CIMD row's cache expiry.
- `oauth_codes`: authorization codes by the sha256 of the code: who consented to what, the PKCE
  challenge, when it was used and the connection its exchange created (`gid`), so a replay can
  revoke that connection; `replayed` marks a replay seen before the connection existed.
- `oauth_connections`: one user's consent to one client (a grant): space, scopes, use, revocation.
- `oauth_refresh_tokens`: refresh tokens by hash, a family per connection (`gid`); a rotated
  token keeps its row (with `rotated_at`) until it expires, so its reuse is recognised.
- `oauth_browser_sessions`: the sign-in cookie of the authorization pages (id hash, user once
  signed in, CSRF token).

Timestamps are POSIX seconds; the PostgreSQL text differs only in `DOUBLE PRECISION` for
SQLite's 8-byte `REAL`.
"""

from __future__ import annotations

from tool_registry.store.database import Migration

COMPONENT = "oauth"

_TABLES = """
CREATE TABLE oauth_clients (
    client_id TEXT PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('cimd', 'dcr')),
    metadata TEXT NOT NULL,
    secret_hash TEXT,
    created_at {real} NOT NULL,
    expires_at {real}
);
CREATE INDEX oauth_clients_expires ON oauth_clients (expires_at);
CREATE TABLE oauth_codes (
    code_hash TEXT PRIMARY KEY,
    client_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    space_id TEXT NOT NULL,
    scopes TEXT NOT NULL,
    redirect_uri TEXT NOT NULL,
    code_challenge TEXT NOT NULL,
    resource TEXT NOT NULL,
    expires_at {real} NOT NULL,
    used_at {real},
    replayed INTEGER NOT NULL DEFAULT 0,
    gid TEXT
);
CREATE INDEX oauth_codes_expires ON oauth_codes (expires_at);
CREATE TABLE oauth_connections (
    gid TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    client_id TEXT NOT NULL,
    client_name TEXT NOT NULL,
    space_id TEXT NOT NULL,
    scopes TEXT NOT NULL,
    created_at {real} NOT NULL,
    last_used_at {real},
    revoked_at {real}
);
CREATE INDEX oauth_connections_user ON oauth_connections (user_id, created_at);
CREATE INDEX oauth_connections_revoked ON oauth_connections (revoked_at);
CREATE TABLE oauth_refresh_tokens (
    token_hash TEXT PRIMARY KEY,
    gid TEXT NOT NULL,
    client_id TEXT NOT NULL,
    created_at {real} NOT NULL,
    expires_at {real} NOT NULL,
    rotated_at {real}
);
CREATE INDEX oauth_refresh_tokens_gid ON oauth_refresh_tokens (gid);
CREATE INDEX oauth_refresh_tokens_expires ON oauth_refresh_tokens (expires_at);
CREATE TABLE oauth_browser_sessions (
    id_hash TEXT PRIMARY KEY,
    user_id TEXT,
    csrf TEXT NOT NULL,
    expires_at {real} NOT NULL
);
CREATE INDEX oauth_browser_sessions_expires ON oauth_browser_sessions (expires_at);
"""

OAUTH_MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        COMPONENT,
        1,
        "oauth-authorization-server",
        _TABLES.format(real="REAL"),
        postgres=_TABLES.format(real="DOUBLE PRECISION"),
    ),
)
