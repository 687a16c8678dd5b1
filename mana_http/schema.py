"""Versioned schema of the `http` component: the registry of 2025-11-25 sessions that every
server replica on the database shares (appended to the runtime's migrations).

One row per open session: who owns it, the protocol version and client `initialize` params a
replica needs to serve the session without having seen its handshake, when it was opened and
last active (POSIX seconds), the tool view it last saw (space type and tool names, for
`notifications/tools/list_changed`), which process holds its GET stream (`listener`) and the
log level the client set (`logging/setLevel`). The PostgreSQL text differs only in
`DOUBLE PRECISION` for SQLite's 8-byte `REAL`.

`mcp_subscriptions` holds each session's `resources/subscribe` URIs with the space each was
subscribed in; the rows go with their session (`ON DELETE CASCADE`: expiry, DELETE and
eviction all delete the session row).

`mcp_answers` holds, for a moment, a client's answer to a request another replica sent on the
session (`mana_http.answers`): the process it is for (`instance`) and the JSON-RPC message; the
row is deleted when that process takes it, when it expires, or with its session.
"""

from __future__ import annotations

from tool_registry.store.database import Migration

COMPONENT = "http"

_SESSIONS = """
CREATE TABLE mcp_sessions (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    protocol_version TEXT NOT NULL,
    client_params TEXT,
    created_at {real} NOT NULL,
    last_active {real} NOT NULL,
    space_type TEXT,
    tools_seen TEXT,
    listener TEXT
);
CREATE INDEX mcp_sessions_user ON mcp_sessions (user_id, last_active);
CREATE INDEX mcp_sessions_last_active ON mcp_sessions (last_active);
"""

_SESSION_STATE = """
ALTER TABLE mcp_sessions ADD COLUMN log_level TEXT;
CREATE TABLE mcp_subscriptions (
    session_id TEXT NOT NULL REFERENCES mcp_sessions (id) ON DELETE CASCADE,
    space_id TEXT NOT NULL,
    uri TEXT NOT NULL,
    PRIMARY KEY (session_id, space_id, uri)
);
CREATE INDEX mcp_subscriptions_uri ON mcp_subscriptions (space_id, uri);
"""

_ANSWERS = """
CREATE TABLE mcp_answers (
    id TEXT PRIMARY KEY,
    session_id TEXT NOT NULL REFERENCES mcp_sessions (id) ON DELETE CASCADE,
    instance TEXT NOT NULL,
    message TEXT NOT NULL,
    created_at {real} NOT NULL
);
CREATE INDEX mcp_answers_session ON mcp_answers (session_id);
CREATE INDEX mcp_answers_instance ON mcp_answers (instance);
CREATE INDEX mcp_answers_created ON mcp_answers (created_at);
"""

HTTP_MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        COMPONENT,
        1,
        "shared-mcp-sessions",
        _SESSIONS.format(real="REAL"),
        postgres=_SESSIONS.format(real="DOUBLE PRECISION"),
    ),
    Migration(COMPONENT, 2, "session-log-level-and-subscriptions", _SESSION_STATE),
    Migration(
        COMPONENT,
        3,
        "answers-across-replicas",
        _ANSWERS.format(real="REAL"),
        postgres=_ANSWERS.format(real="DOUBLE PRECISION"),
    ),
)
