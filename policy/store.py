"""SQL of the shared rate-limit log (`policy_rate_log`, see `policy.schema`).

The check-and-record of one (user, tool) is one write unit: `lock_events` reads the key's
events so that no other unit can change them before this one ends (PostgreSQL: the row's lock,
so a concurrent unit of the same key waits for this one's commit and then reads what it wrote,
and a unit of another key never waits; SQLite: its single writer serialises every unit anyway),
and `store_events` writes the new list in the same unit. `sweep` deletes the rows whose newest event left the window, in a unit of
its own, so the table holds only keys called within about one window.
"""

from __future__ import annotations

from tool_registry.store.connection import Conn, dialect_of

_SELECT = "SELECT events FROM policy_rate_log WHERE user_id = ? AND tool = ?"
_SELECT_FOR_UPDATE = "SELECT events FROM policy_rate_log WHERE user_id = ? AND tool = ? FOR UPDATE"


def lock_events(conn: Conn, user_id: str, tool: str) -> str:
    """The events text of (user, tool) ('' for a new key), no other unit able to change it
    before this one ends. SQLite: the unit's BEGIN IMMEDIATE already excludes every other
    writer, so a plain read. PostgreSQL: `FOR UPDATE` locks the key's row; a key without a row
    gets one created (empty) and locked by an upsert, so two first calls of a key wait for each
    other too."""
    postgres = dialect_of(conn) == "postgres"
    found = conn.execute(_SELECT_FOR_UPDATE if postgres else _SELECT, (user_id, tool)).fetchone()
    if found is None and postgres:
        found = conn.execute(
            "INSERT INTO policy_rate_log (user_id, tool, events, last_at) "
            "VALUES (?, ?, '', 0.0) "
            "ON CONFLICT (user_id, tool) DO UPDATE SET events = policy_rate_log.events "
            "RETURNING events",
            (user_id, tool),
        ).fetchone()
    return str(found[0]) if found is not None else ""


def store_events(conn: Conn, user_id: str, tool: str, events: str, last_at: float) -> None:
    """Write the key's events (after `lock_events` in the same unit)."""
    conn.execute(
        "INSERT INTO policy_rate_log (user_id, tool, events, last_at) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (user_id, tool) DO UPDATE SET events = excluded.events, "
        "last_at = excluded.last_at",
        (user_id, tool, events, last_at),
    )


def read_events(conn: Conn, user_id: str, tool: str) -> str:
    """The events text of (user, tool) without locking it ('' when the key has none)."""
    row = conn.execute(
        "SELECT events FROM policy_rate_log WHERE user_id = ? AND tool = ?", (user_id, tool)
    ).fetchone()
    return str(row[0]) if row is not None else ""


def sweep(conn: Conn, cutoff: float) -> int:
    """Delete the rows whose newest event is at or before `cutoff`; how many went."""
    cur = conn.execute("DELETE FROM policy_rate_log WHERE last_at <= ?", (cutoff,))
    return max(0, int(cur.rowcount))


def every_key(conn: Conn) -> list[tuple[str, str, str]]:
    """(user_id, tool, events) of every row: what the log holds right now."""
    rows = conn.execute(
        "SELECT user_id, tool, events FROM policy_rate_log ORDER BY user_id, tool"
    ).fetchall()
    return [(str(r[0]), str(r[1]), str(r[2])) for r in rows]
