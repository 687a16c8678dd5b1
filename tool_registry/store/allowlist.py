"""The per-space destructive allowlist, destructive mode and their change log (tables
`space_destructive_allowlist`, `space_destructive_mode` and `space_policy_audit`): the SQL
only. Who may read or change it, and which names are valid,
is `policy.allowlist`'s business; the functions take the connection of the caller's unit, so a
check and the change it guards commit together."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, get_args

from tool_registry.store.connection import Conn

# What a space does with a destructive tool that is not on its allowlist (see `policy.rules`);
# a space without a stored mode is in the default.
DestructiveMode = Literal["deny", "confirm", "allow"]
DESTRUCTIVE_MODES: tuple[DestructiveMode, ...] = get_args(DestructiveMode)
DEFAULT_DESTRUCTIVE_MODE: DestructiveMode = "deny"


@dataclass(frozen=True)
class AllowedTool:
    tool: str
    added_by: str | None
    added_by_email: str | None
    added_at: str


@dataclass(frozen=True)
class PolicyAuditEntry:
    id: int
    space_id: str
    actor_id: str
    actor_email: str | None
    action: str
    tool: str | None  # None for a `destructive-mode` change
    at: str
    mode: str | None = None  # the new mode of a `destructive-mode` change


def allowed_tool_names(conn: Conn, space_id: str) -> frozenset[str]:
    """The tool names the space has opted in to."""
    return frozenset(
        r["tool"]
        for r in conn.execute(
            "SELECT tool FROM space_destructive_allowlist WHERE space_id = ?", (space_id,)
        )
    )


def allowed_tools(conn: Conn, space_id: str) -> list[AllowedTool]:
    """The space's allowlist by tool name, with who added each entry (and their email)."""
    rows = conn.execute(
        "SELECT a.tool, a.added_by, a.added_at, u.email FROM space_destructive_allowlist a "
        "LEFT JOIN users u ON u.id = a.added_by WHERE a.space_id = ? ORDER BY a.tool",
        (space_id,),
    ).fetchall()
    return [AllowedTool(r["tool"], r["added_by"], r["email"], r["added_at"]) for r in rows]


def add_tools(conn: Conn, space_id: str, tools: Sequence[str], *, added_by: str, at: str) -> None:
    """Put `tools` (none of them on the list yet) on the space's allowlist."""
    conn.executemany(
        "INSERT INTO space_destructive_allowlist (space_id, tool, added_by, added_at) "
        "VALUES (?,?,?,?)",
        [(space_id, n, added_by, at) for n in tools],
    )


def remove_tools(conn: Conn, space_id: str, tools: Sequence[str]) -> None:
    """Take `tools` off the space's allowlist."""
    conn.executemany(
        "DELETE FROM space_destructive_allowlist WHERE space_id = ? AND tool = ?",
        [(space_id, n) for n in tools],
    )


def log_changes(
    conn: Conn,
    space_id: str,
    tools: Sequence[str],
    *,
    actor_id: str,
    action: str,
    at: str,
) -> None:
    """One change-log row per tool that `actor_id` allowed or revoked."""
    conn.executemany(
        "INSERT INTO space_policy_audit (space_id, actor_id, action, tool, at) VALUES (?,?,?,?,?)",
        [(space_id, actor_id, action, n, at) for n in tools],
    )


def log_mode_change(conn: Conn, space_id: str, mode: str, *, actor_id: str, at: str) -> None:
    """One change-log row: `actor_id` set the space's destructive mode to `mode`."""
    conn.execute(
        "INSERT INTO space_policy_audit (space_id, actor_id, action, tool, mode, at) "
        "VALUES (?, ?, 'destructive-mode', NULL, ?, ?)",
        (space_id, actor_id, mode, at),
    )


def change_log(conn: Conn, space_id: str, *, limit: int) -> list[PolicyAuditEntry]:
    """The space's allowlist and destructive-mode changes, newest first."""
    rows = conn.execute(
        "SELECT p.id, p.space_id, p.actor_id, u.email, p.action, p.tool, p.at, p.mode "
        "FROM space_policy_audit p LEFT JOIN users u ON u.id = p.actor_id "
        "WHERE p.space_id = ? ORDER BY p.at DESC, p.id DESC LIMIT ?",
        (space_id, int(limit)),
    ).fetchall()
    return [
        PolicyAuditEntry(
            r["id"],
            r["space_id"],
            r["actor_id"],
            r["email"],
            r["action"],
            r["tool"],
            r["at"],
            r["mode"],
        )
        for r in rows
    ]


def destructive_mode(conn: Conn, space_id: str) -> DestructiveMode:
    """The space's destructive mode (the default when none was ever set)."""
    row = conn.execute(
        "SELECT mode FROM space_destructive_mode WHERE space_id = ?", (space_id,)
    ).fetchone()
    if row is None:
        return DEFAULT_DESTRUCTIVE_MODE
    value = str(row[0])
    if value not in DESTRUCTIVE_MODES:
        raise ValueError(f"unknown destructive mode {value!r} in the database")
    return value


def store_destructive_mode(conn: Conn, space_id: str, mode: str, *, set_by: str, at: str) -> None:
    """Set the space's destructive mode."""
    conn.execute(
        "INSERT INTO space_destructive_mode (space_id, mode, set_by, set_at) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (space_id) DO UPDATE SET mode = excluded.mode, set_by = excluded.set_by, "
        "set_at = excluded.set_at",
        (space_id, mode, set_by, at),
    )
