"""Row locks and the lease fence: the one place the missions SQL differs between the dialects.

On PostgreSQL a claim holds the mission (and agent) rows it decides on with `FOR NO KEY UPDATE
SKIP LOCKED` (daemons claim side by side, each passing over the rows another one holds) and a
fenced write holds its mission's row (waiting for a claim deciding on it) until it commits.
SQLite has one writer at a time, so its units need no row locks and the clause is empty.
"""

from __future__ import annotations

from typing import Literal

from missions.leases import Lease, LeaseLost
from tool_registry.store.connection import Conn, dialect_of

LockMode = Literal["skip", "wait"]


def row_lock(conn: Conn, mode: LockMode) -> str:
    """The clause that locks the selected rows until the unit ends: `skip` passes over rows
    another unit holds, `wait` waits for them. Empty on SQLite (its writer is alone)."""
    if dialect_of(conn) == "sqlite":
        return ""
    # NO KEY UPDATE: the lock an UPDATE of non-key columns takes, so claims and fenced writes
    # exclude each other while rows that merely reference the mission (iterations) can be added.
    return " FOR NO KEY UPDATE SKIP LOCKED" if mode == "skip" else " FOR NO KEY UPDATE"


def fence_sql(conn: Conn, lease: Lease) -> None:
    """Hold the mission's row and check it still carries `lease` (owner and epoch); raise
    `LeaseLost` otherwise, so the caller's unit rolls back. Every write of an iteration calls
    this first, in the write's own transaction."""
    row = conn.execute(
        "SELECT lease_epoch FROM missions WHERE id = ? AND lease_owner = ? AND lease_epoch = ?"  # noqa: S608 - fixed clauses, bound values
        + row_lock(conn, "wait"),
        (lease.mission_id, lease.owner, lease.epoch),
    ).fetchone()
    if row is None:
        raise LeaseLost(
            f"the lease on mission {lease.mission_id} (epoch {lease.epoch}) was taken over or "
            "released; this write is refused"
        )
