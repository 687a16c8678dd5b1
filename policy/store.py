"""SQL of the shared rate-limit log (`policy_rate_log`, see `policy.schema`).

The check-and-record of one (user, tool) is one write unit: `lock_events` upserts the key's
row and returns its events, which takes the row's lock on PostgreSQL (a concurrent unit of the
same key waits for this one's commit and then reads what it wrote; a unit of another key never
waits), and SQLite's single writer serialises every unit anyway. `store_events` writes the new
list in the same unit. `sweep` deletes the rows whose newest event left the window, in a unit of
its own, so the table holds only keys called within about one window.
"""

from __future__ import annotations

from tool_registry.store.connection import Conn


def lock_events(conn: Conn, user_id: str, tool: str) -> str:
    """The events text of (user, tool), its row locked until the unit ends (created empty)."""
    row = conn.execute(
        "INSERT INTO policy_rate_log (user_id, tool, events, last_at) VALUES (?, ?, '', 0.0) "
        "ON CONFLICT (user_id, tool) DO UPDATE SET events = policy_rate_log.events "
        "RETURNING events",
        (user_id, tool),
    ).fetchone()
    return str(row[0]) if row is not None else ""


def store_events(conn: Conn, user_id: str, tool: str, events: str, last_at: float) -> None:
    conn.execute(
        "UPDATE policy_rate_log SET events = ?, last_at = ? WHERE user_id = ? AND tool = ?",
        (events, last_at, user_id, tool),
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
