"""Idempotency keys: the stored outcome of a write called with a key, per calling user.

The pipeline owns the rule (a key replays its outcome, reusing it for another call is refused);
this module owns the SQL. Both functions run on the connection of the write's own transaction,
so a key is stored in the same unit as the write and its audit row."""

from __future__ import annotations

from dataclasses import dataclass

from tool_registry.store.connection import Conn


@dataclass(frozen=True)
class StoredKey:
    """What a key was first used for, and the outcome (JSON) that call produced."""

    tool: str
    space_id: str | None
    input_hash: str
    outcome: str


def find_key(conn: Conn, user_id: str, key: str) -> StoredKey | None:
    """The call `user_id` made with `key`, or None when the key is new for that user."""
    row = conn.execute(
        "SELECT tool, space_id, input_hash, outcome FROM idempotency_keys "
        "WHERE user_id = ? AND key = ?",
        (user_id, key),
    ).fetchone()
    if row is None:
        return None
    return StoredKey(row["tool"], row["space_id"], row["input_hash"], row["outcome"])


def store_key(
    conn: Conn,
    *,
    user_id: str,
    key: str,
    tool: str,
    space_id: str | None,
    input_hash: str,
    outcome: str,
    created_at: str,
) -> None:
    """Remember the outcome of `user_id`'s call with `key`."""
    conn.execute(
        "INSERT INTO idempotency_keys (user_id, key, tool, space_id, "
        "input_hash, outcome, created_at) VALUES (?,?,?,?,?,?,?)",
        (user_id, key, tool, space_id, input_hash, outcome, created_at),
    )
