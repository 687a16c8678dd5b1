"""Versioned schema of the `policy` component: the rate-limit log every process on the database
shares (appended to the runtime's migrations).

One row per (user, tool) holds that key's recent admitted calls, so a check-and-record reads and
writes one row, and on PostgreSQL the row's lock serialises the units of one key (see
`policy.store`). `events` is the ascending POSIX seconds of the calls inside the window, space
separated (at most the largest configured limit of them); `last_at` is the newest of them, which
the sweep of stale rows goes by. The PostgreSQL text differs only in `DOUBLE PRECISION` for
SQLite's 8-byte `REAL`.
"""

from __future__ import annotations

from tool_registry.store.database import Migration

COMPONENT = "policy"

_RATE_LOG = """
CREATE TABLE policy_rate_log (
    user_id TEXT NOT NULL,
    tool TEXT NOT NULL,
    events TEXT NOT NULL,
    last_at {real} NOT NULL,
    PRIMARY KEY (user_id, tool)
);
CREATE INDEX policy_rate_log_last_at ON policy_rate_log (last_at);
"""

POLICY_MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        COMPONENT,
        1,
        "shared-rate-limit-log",
        _RATE_LOG.format(real="REAL"),
        postgres=_RATE_LOG.format(real="DOUBLE PRECISION"),
    ),
)
