"""SQL of the shared session registry (`mcp_sessions`, see `mana_http.schema`) and of the
PostgreSQL channel replicas tell each other about sessions on.

Plain synchronous functions of one connection (`Conn`), portable SQL for both backends; the
registry (`mana_http.sessions`) composes them into its read and write units. Timestamps are POSIX
seconds (`float`), comparable across processes.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg

from tool_registry.store.connection import Conn

# `IN (...)` lists are sent in chunks of this many ids (SQLite's variable limit is far above).
_CHUNK = 500
_COLUMNS = (
    "id, user_id, protocol_version, client_params, created_at, last_active, space_type, "
    "tools_seen, listener, log_level"
)


@dataclass(frozen=True)
class SessionRow:
    id: str
    user_id: str
    protocol_version: str
    client_params: str | None  # the `initialize` params as JSON (capabilities, clientInfo)
    created_at: float
    last_active: float
    space_type: str | None = None
    tools_seen: str | None = None  # the tool names last seen, sorted, one per line
    listener: str | None = None  # the process holding the session's GET stream
    log_level: str | None = None  # the level the client set with logging/setLevel


def _row(raw: Any) -> SessionRow:
    return SessionRow(
        id=str(raw["id"]),
        user_id=str(raw["user_id"]),
        protocol_version=str(raw["protocol_version"]),
        client_params=raw["client_params"],
        created_at=float(raw["created_at"]),
        last_active=float(raw["last_active"]),
        space_type=raw["space_type"],
        tools_seen=raw["tools_seen"],
        listener=raw["listener"],
        log_level=raw["log_level"],
    )


def _chunks(ids: Sequence[str]) -> Iterable[Sequence[str]]:
    for start in range(0, len(ids), _CHUNK):
        yield ids[start : start + _CHUNK]


def _marks(count: int) -> str:
    return ", ".join("?" for _ in range(count))


def get_session(conn: Conn, session_id: str) -> SessionRow | None:
    raw = conn.execute(
        f"SELECT {_COLUMNS} FROM mcp_sessions WHERE id = ?",  # noqa: S608 - fixed columns
        (session_id,),
    ).fetchone()
    return None if raw is None else _row(raw)


def user_sessions(conn: Conn, user_id: str) -> list[SessionRow]:
    """The user's sessions, least recently active first."""
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM mcp_sessions WHERE user_id = ? "  # noqa: S608 - fixed columns
        "ORDER BY last_active, id",
        (user_id,),
    ).fetchall()
    return [_row(r) for r in rows]


def count_sessions(conn: Conn) -> int:
    raw = conn.execute("SELECT count(*) FROM mcp_sessions").fetchone()
    return int(raw[0])


def insert_session(conn: Conn, row: SessionRow) -> None:
    conn.execute(
        f"INSERT INTO mcp_sessions ({_COLUMNS}) "  # noqa: S608 - fixed columns
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            row.id,
            row.user_id,
            row.protocol_version,
            row.client_params,
            row.created_at,
            row.last_active,
            row.space_type,
            row.tools_seen,
            row.listener,
            row.log_level,
        ),
    )


def delete_sessions(conn: Conn, session_ids: Sequence[str]) -> list[str]:
    """Delete these sessions; returns the ids that existed."""
    gone: list[str] = []
    for chunk in _chunks(session_ids):
        rows = conn.execute(
            f"DELETE FROM mcp_sessions WHERE id IN ({_marks(len(chunk))}) "  # noqa: S608 - marks
            "RETURNING id",
            tuple(chunk),
        ).fetchall()
        gone.extend(str(r[0]) for r in rows)
    return gone


def touch_sessions(conn: Conn, activity: Sequence[tuple[str, float]]) -> None:
    """Move each session's `last_active` forward to the given time (never back)."""
    conn.executemany(
        "UPDATE mcp_sessions SET last_active = ? WHERE id = ? AND last_active < ?",
        [(at, session_id, at) for session_id, at in activity],
    )


def expire_sessions(conn: Conn, cutoff: float, keep: Sequence[str]) -> list[str]:
    """Delete the sessions last active at or before `cutoff`, except `keep`; their ids."""
    if not keep:
        rows = conn.execute(
            "DELETE FROM mcp_sessions WHERE last_active <= ? RETURNING id", (cutoff,)
        ).fetchall()
        return [str(r[0]) for r in rows]
    stale = conn.execute("SELECT id FROM mcp_sessions WHERE last_active <= ?", (cutoff,)).fetchall()
    kept = set(keep)
    return delete_sessions(conn, [str(r[0]) for r in stale if str(r[0]) not in kept])


def existing_sessions(conn: Conn, session_ids: Sequence[str]) -> set[str]:
    found: set[str] = set()
    for chunk in _chunks(session_ids):
        rows = conn.execute(
            f"SELECT id FROM mcp_sessions WHERE id IN ({_marks(len(chunk))})",  # noqa: S608 - marks
            tuple(chunk),
        ).fetchall()
        found.update(str(r[0]) for r in rows)
    return found


def record_seen(conn: Conn, session_id: str, space_type: str, tools_seen: str) -> None:
    conn.execute(
        "UPDATE mcp_sessions SET space_type = ?, tools_seen = ? WHERE id = ?",
        (space_type, tools_seen, session_id),
    )


def replace_seen(conn: Conn, session_id: str, before: str, after: str) -> bool:
    """Set the session's seen tools to `after` if they still are `before` (one notifier wins)."""
    cur = conn.execute(
        "UPDATE mcp_sessions SET tools_seen = ? WHERE id = ? AND tools_seen = ?",
        (after, session_id, before),
    )
    return int(cur.rowcount) == 1


def set_listener(conn: Conn, session_id: str, listener: str) -> None:
    conn.execute("UPDATE mcp_sessions SET listener = ? WHERE id = ?", (listener, session_id))


def clear_listener(conn: Conn, session_id: str, listener: str) -> None:
    """Forget the GET stream of `listener` (a newer stream on another process stays)."""
    conn.execute(
        "UPDATE mcp_sessions SET listener = NULL WHERE id = ? AND listener = ?",
        (session_id, listener),
    )


def listening_sessions(conn: Conn) -> list[SessionRow]:
    """Sessions with a GET stream open somewhere that have seen a tool list."""
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM mcp_sessions WHERE listener IS NOT NULL "  # noqa: S608 - columns
        "AND space_type IS NOT NULL AND tools_seen IS NOT NULL ORDER BY id"
    ).fetchall()
    return [_row(r) for r in rows]


def set_log_level(conn: Conn, session_id: str, level: str) -> bool:
    """Record the session's log level; False when the session is gone."""
    cur = conn.execute("UPDATE mcp_sessions SET log_level = ? WHERE id = ?", (level, session_id))
    return int(cur.rowcount) == 1


# -- resource subscriptions (`mcp_subscriptions`, deleted with their session) -------------------


@dataclass(frozen=True)
class Subscriber:
    """A session subscribed to `uri` in the space a change happened in, and its owner."""

    session_id: str
    user_id: str
    uri: str


def count_subscriptions(conn: Conn, session_id: str) -> int:
    raw = conn.execute(
        "SELECT count(*) FROM mcp_subscriptions WHERE session_id = ?", (session_id,)
    ).fetchone()
    return int(raw[0])


def add_subscription(conn: Conn, session_id: str, space_id: str, uri: str) -> bool:
    """Subscribe the session to `uri` in `space_id` (again: no change); False when the session
    is gone."""
    conn.execute(
        "INSERT INTO mcp_subscriptions (session_id, space_id, uri) "
        "SELECT ?, ?, ? WHERE EXISTS (SELECT 1 FROM mcp_sessions WHERE id = ?) "
        "ON CONFLICT DO NOTHING",
        (session_id, space_id, uri, session_id),
    )
    return has_subscription(conn, session_id, space_id, uri)


def has_subscription(conn: Conn, session_id: str, space_id: str, uri: str) -> bool:
    found = conn.execute(
        "SELECT 1 FROM mcp_subscriptions WHERE session_id = ? AND space_id = ? AND uri = ?",
        (session_id, space_id, uri),
    ).fetchone()
    return found is not None


def remove_subscription(conn: Conn, session_id: str, space_id: str, uri: str) -> None:
    conn.execute(
        "DELETE FROM mcp_subscriptions WHERE session_id = ? AND space_id = ? AND uri = ?",
        (session_id, space_id, uri),
    )


def subscription_count(conn: Conn, session_ids: Sequence[str]) -> int:
    """How many subscription rows these sessions have (0 once they ended)."""
    total = 0
    for chunk in _chunks(session_ids):
        raw = conn.execute(
            "SELECT count(*) FROM mcp_subscriptions "  # noqa: S608 - marks
            f"WHERE session_id IN ({_marks(len(chunk))})",
            tuple(chunk),
        ).fetchone()
        total += int(raw[0])
    return total


def subscribers(conn: Conn, space_id: str, uris: Sequence[str]) -> list[Subscriber]:
    """The sessions subscribed to any of `uris` in `space_id`, with their owners."""
    found: list[Subscriber] = []
    for chunk in _chunks(uris):
        rows = conn.execute(
            "SELECT s.session_id, m.user_id, s.uri FROM mcp_subscriptions s "  # noqa: S608
            "JOIN mcp_sessions m ON m.id = s.session_id "
            f"WHERE s.space_id = ? AND s.uri IN ({_marks(len(chunk))}) "
            "ORDER BY s.session_id, s.uri",
            (space_id, *chunk),
        ).fetchall()
        found.extend(Subscriber(str(r[0]), str(r[1]), str(r[2])) for r in rows)
    return found


# -- answers to another replica's requests (`mcp_answers`, see `mana_http.answers`) -----------


def add_answer(
    conn: Conn,
    answer_id: str,
    session_id: str,
    instance: str,
    message: str,
    now: float,
    per_session: int,
) -> bool:
    """Keep `message` for `instance` unless the session is gone or already has `per_session`
    answers waiting; whether it was kept. The session's row is locked first (a no-op update),
    so concurrent answers of one session are counted one after the other."""
    locked = conn.execute(
        "UPDATE mcp_sessions SET last_active = last_active WHERE id = ?", (session_id,)
    )
    if int(locked.rowcount) != 1:
        return False
    raw = conn.execute(
        "SELECT count(*) FROM mcp_answers WHERE session_id = ?", (session_id,)
    ).fetchone()
    if int(raw[0]) >= per_session:
        return False
    conn.execute(
        "INSERT INTO mcp_answers (id, session_id, instance, message, created_at) "
        "VALUES (?, ?, ?, ?, ?)",
        (answer_id, session_id, instance, message, now),
    )
    return True


def take_answer(conn: Conn, answer_id: str, session_id: str, instance: str) -> str | None:
    """The message of this answer for `instance` in `session_id`, deleted as it is read (None:
    another taker, or none such)."""
    raw = conn.execute(
        "DELETE FROM mcp_answers WHERE id = ? AND session_id = ? AND instance = ? "
        "RETURNING message",
        (answer_id, session_id, instance),
    ).fetchone()
    return None if raw is None else str(raw[0])


def take_answers_for(conn: Conn, instance: str) -> list[tuple[str, str]]:
    """Every answer waiting for `instance` as (session id, message), deleted as they are read."""
    rows = conn.execute(
        "DELETE FROM mcp_answers WHERE instance = ? RETURNING session_id, message", (instance,)
    ).fetchall()
    return [(str(r[0]), str(r[1])) for r in rows]


def expire_answers(conn: Conn, cutoff: float) -> int:
    """Delete the answers kept since before `cutoff` (nobody took them); how many."""
    cur = conn.execute("DELETE FROM mcp_answers WHERE created_at < ?", (cutoff,))
    return int(cur.rowcount)


def answer_count(conn: Conn) -> int:
    raw = conn.execute("SELECT count(*) FROM mcp_answers").fetchone()
    return int(raw[0])


# -- PostgreSQL LISTEN/NOTIFY -------------------------------------------------------------------


def notify(conn: Conn, channel: str, payload: str) -> None:
    """Queue `payload` on `channel`; listeners get it when this unit commits (PostgreSQL)."""
    conn.execute("SELECT pg_notify(CAST(? AS TEXT), CAST(? AS TEXT))", (channel, payload))


async def listen(conn: psycopg.AsyncConnection[Any], channel: str) -> None:
    """Subscribe this (autocommit) connection to `channel`, a plain identifier."""
    if not channel.isidentifier():
        raise ValueError(f"not a channel name: {channel!r}")
    await conn.execute(f"LISTEN {channel}")


async def ping(conn: psycopg.AsyncConnection[Any]) -> None:
    """A round trip on a listening connection (a silently dead server raises here)."""
    await conn.execute("SELECT 1")
