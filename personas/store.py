"""Reads and writes of the personas tables (see `personas.schema`).

Ids of tick rows are deterministic: an action is `pac_` + sha256(tick id, persona email, call
index), a rating `pfb_` + sha256(tick id, persona email, module). Writing them is an upsert, so
a re-run of a tick replaces its rows instead of adding to them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from tool_registry.clock import Clock, SystemClock, iso, parse_iso
from tool_registry.store.connection import Conn, Row
from tool_registry.store.database import Database

ActionResult = Literal["ok", "error"]
TickStatus = Literal["running", "ok", "failed", "timeout"]
FAILED_RATING = "failed-rating"


def _hash_id(prefix: str, *parts: object) -> str:
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).hexdigest()
    return f"{prefix}_{digest[:32]}"


def action_id(tick: str, persona_email: str, call_index: int) -> str:
    return _hash_id("pac", tick, persona_email.lower(), call_index)


def feedback_id(tick: str, persona_email: str, module: str) -> str:
    return _hash_id("pfb", tick, persona_email.lower(), module)


@dataclass(frozen=True)
class PersonaRow:
    user_id: str
    email: str
    name: str
    archetype: str
    system_prompt: str
    module_mix: dict[str, float]
    cadence: str
    last_active_at: str | None
    created_at: str
    updated_at: str

    @property
    def last_active(self) -> datetime | None:
        return parse_iso(self.last_active_at) if self.last_active_at else None


@dataclass(frozen=True)
class Action:
    tick_id: str
    call_index: int
    space_id: str | None
    tool: str
    input_hash: str
    result: ActionResult
    error_message: str | None
    latency_ms: float
    at: str

    @property
    def module(self) -> str:
        return self.tool.split(".", 1)[0]


@dataclass(frozen=True)
class Feedback:
    tick_id: str
    module: str
    rating: int | None
    notes: str | None
    at: str


@dataclass(frozen=True)
class ModuleStats:
    """Per module over one period: ratings (average and count) and actions (all and failed)."""

    module: str
    ratings: int = 0
    average: float | None = None
    actions: int = 0
    errors: int = 0


def _persona(row: Row) -> PersonaRow:
    return PersonaRow(
        user_id=row["user_id"],
        email=row["email"],
        name=row["name"],
        archetype=row["archetype"],
        system_prompt=row["system_prompt"],
        module_mix=json.loads(row["module_mix"]),
        cadence=row["cadence"],
        last_active_at=row["last_active_at"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


_PERSONA_SELECT = (
    "SELECT p.*, u.email, u.name FROM personas p JOIN users u ON u.id = p.user_id "
    "WHERE u.kind = 'persona'"
)


class PersonaStore:
    """The personas tables of one database."""

    def __init__(self, db: Database, clock: Clock | None = None) -> None:
        self.db = db
        self.clock = clock or SystemClock()

    # -- personas --------------------------------------------------------------------------------

    async def personas(self) -> list[PersonaRow]:
        rows = await self.db.read(
            lambda c: c.execute(f"{_PERSONA_SELECT} ORDER BY u.email").fetchall()
        )
        return [_persona(r) for r in rows]

    async def persona(self, email: str) -> PersonaRow | None:
        row = await self.db.read(
            lambda c: c.execute(
                f"{_PERSONA_SELECT} AND u.email = ?", (email.strip().lower(),)
            ).fetchone()
        )
        return _persona(row) if row else None

    async def mark_active(self, user_id: str, at: datetime) -> None:
        await self.db.write(
            lambda c: c.execute(
                "UPDATE personas SET last_active_at = ? WHERE user_id = ?", (iso(at), user_id)
            )
        )

    # -- ticks -----------------------------------------------------------------------------------

    async def start_tick(
        self, tick: str, user_id: str, *, space_id: str | None, focus_module: str | None
    ) -> None:
        now = iso(self.clock.now())
        await self.db.write(
            lambda c: c.execute(
                "INSERT INTO persona_ticks (tick_id, persona_id, space_id, focus_module, status, "
                "started_at) VALUES (?,?,?,?, 'running', ?) ON CONFLICT (tick_id, persona_id) DO "
                "UPDATE SET space_id = excluded.space_id, focus_module = excluded.focus_module, "
                "status = 'running', stop_reason = NULL, error = NULL, started_at = "
                "excluded.started_at, finished_at = NULL",
                (tick, user_id, space_id, focus_module, now),
            )
        )

    async def finish_tick(
        self,
        tick: str,
        user_id: str,
        *,
        status: TickStatus,
        stop_reason: str | None = None,
        error: str | None = None,
        calls: int = 0,
        input_tokens: int = 0,
        output_tokens: int = 0,
    ) -> None:
        now = iso(self.clock.now())
        await self.db.write(
            lambda c: c.execute(
                "UPDATE persona_ticks SET status = ?, stop_reason = ?, error = ?, calls = ?, "
                "input_tokens = ?, output_tokens = ?, finished_at = ? "
                "WHERE tick_id = ? AND persona_id = ?",
                (
                    status,
                    stop_reason,
                    error,
                    calls,
                    input_tokens,
                    output_tokens,
                    now,
                    tick,
                    user_id,
                ),
            )
        )

    async def ticks(self, user_id: str, limit: int = 10) -> list[dict[str, Any]]:
        rows = await self.db.read(
            lambda c: c.execute(
                "SELECT * FROM persona_ticks WHERE persona_id = ? "
                "ORDER BY started_at DESC, tick_id DESC LIMIT ?",
                (user_id, limit),
            ).fetchall()
        )
        return [dict(r) for r in rows]

    # -- actions and feedback --------------------------------------------------------------------

    async def record_action(
        self,
        *,
        tick: str,
        persona_id: str,
        persona_email: str,
        call_index: int,
        space_id: str | None,
        tool: str,
        input_hash: str,
        result: ActionResult,
        error_message: str | None,
        latency_ms: float,
        at: datetime,
    ) -> str:
        row_id = action_id(tick, persona_email, call_index)
        await self.db.write(
            lambda c: c.execute(
                "INSERT INTO persona_actions (id, tick_id, persona_id, call_index, space_id, "
                "tool, module, input_hash, result, error_message, latency_ms, at) "
                "VALUES (?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT (id) DO UPDATE SET "
                "space_id = excluded.space_id, tool = excluded.tool, module = excluded.module, "
                "input_hash = excluded.input_hash, result = excluded.result, "
                "error_message = excluded.error_message, latency_ms = excluded.latency_ms, "
                "at = excluded.at",
                (
                    row_id,
                    tick,
                    persona_id,
                    call_index,
                    space_id,
                    tool,
                    tool.split(".", 1)[0],
                    input_hash,
                    result,
                    error_message,
                    latency_ms,
                    iso(at),
                ),
            )
        )
        return row_id

    async def prune_actions(self, tick: str, persona_id: str, keep: Collection[str]) -> int:
        """Delete the tick's action rows not in `keep` (left over from an earlier attempt of the
        same tick that made more calls); returns how many were deleted."""
        kept = sorted(keep)

        def work(conn: Conn) -> int:
            rows = conn.execute(
                "SELECT id FROM persona_actions WHERE tick_id = ? AND persona_id = ?",
                (tick, persona_id),
            ).fetchall()
            stale = [(r["id"],) for r in rows if r["id"] not in kept]
            conn.executemany("DELETE FROM persona_actions WHERE id = ?", stale)
            return len(stale)

        return await self.db.write(work)

    async def record_feedback(
        self,
        *,
        tick: str,
        persona_id: str,
        persona_email: str,
        ratings: dict[str, tuple[int | None, str | None]],
        at: datetime,
    ) -> None:
        """Replace the tick's ratings with `ratings` (module → (rating, notes)); a rating of None
        is allowed only for the `failed-rating` row."""
        stamp = iso(at)
        rows = [
            (feedback_id(tick, persona_email, m), tick, persona_id, m, r, n, stamp)
            for m, (r, n) in sorted(ratings.items())
        ]

        def work(conn: Conn) -> None:
            conn.execute(
                "DELETE FROM persona_feedback WHERE tick_id = ? AND persona_id = ?",
                (tick, persona_id),
            )
            conn.executemany(
                "INSERT INTO persona_feedback (id, tick_id, persona_id, module, rating, notes, "
                "at) VALUES (?,?,?,?,?,?,?)",
                rows,
            )

        await self.db.write(work)

    async def actions(self, user_id: str, *, limit: int = 20) -> list[Action]:
        rows = await self.db.read(
            lambda c: c.execute(
                "SELECT * FROM persona_actions WHERE persona_id = ? "
                "ORDER BY at DESC, call_index DESC LIMIT ?",
                (user_id, limit),
            ).fetchall()
        )
        return [_action(r) for r in rows]

    async def tick_actions(self, tick: str, user_id: str) -> list[Action]:
        rows = await self.db.read(
            lambda c: c.execute(
                "SELECT * FROM persona_actions WHERE tick_id = ? AND persona_id = ? "
                "ORDER BY call_index",
                (tick, user_id),
            ).fetchall()
        )
        return [_action(r) for r in rows]

    async def feedback(self, user_id: str, tick: str | None = None) -> list[Feedback]:
        sql = "SELECT * FROM persona_feedback WHERE persona_id = ?"
        params: tuple[str, ...] = (user_id,)
        if tick is not None:
            sql += " AND tick_id = ?"
            params = (user_id, tick)
        rows = await self.db.read(
            lambda c: c.execute(sql + " ORDER BY at DESC, module", params).fetchall()
        )
        return [Feedback(r["tick_id"], r["module"], r["rating"], r["notes"], r["at"]) for r in rows]

    async def action_counts(self, since: datetime) -> dict[str, int]:
        """Actions per persona user id since `since`."""
        rows = await self.db.read(
            lambda c: c.execute(
                "SELECT persona_id, count(*) AS n FROM persona_actions WHERE at >= ? "
                "GROUP BY persona_id",
                (iso(since),),
            ).fetchall()
        )
        return {r["persona_id"]: int(r["n"]) for r in rows}

    async def average_ratings(self, user_id: str) -> dict[str, tuple[float, int]]:
        """Module → (average rating, number of ratings) over all of a persona's ticks."""
        rows = await self.db.read(
            lambda c: c.execute(
                "SELECT module, avg(rating) AS avg, count(rating) AS n FROM persona_feedback "
                "WHERE persona_id = ? AND rating IS NOT NULL GROUP BY module ORDER BY module",
                (user_id,),
            ).fetchall()
        )
        return {r["module"]: (float(r["avg"]), int(r["n"])) for r in rows}

    async def module_stats(self, start: datetime, end: datetime) -> dict[str, ModuleStats]:
        """Per module, over [start, end): ratings and actions of all personas."""

        def work(conn: Conn) -> dict[str, ModuleStats]:
            lo, hi = iso(start), iso(end)
            stats: dict[str, ModuleStats] = {}
            for r in conn.execute(
                "SELECT module, avg(rating) AS avg, count(*) AS n FROM persona_feedback "
                "WHERE at >= ? AND at < ? AND rating IS NOT NULL GROUP BY module",
                (lo, hi),
            ):
                stats[r["module"]] = ModuleStats(r["module"], int(r["n"]), float(r["avg"]))
            for r in conn.execute(
                "SELECT module, count(*) AS n, "
                "sum(CASE WHEN result = 'error' THEN 1 ELSE 0 END) AS errors "
                "FROM persona_actions WHERE at >= ? AND at < ? GROUP BY module",
                (lo, hi),
            ):
                base = stats.get(r["module"], ModuleStats(r["module"]))
                stats[r["module"]] = ModuleStats(
                    base.module, base.ratings, base.average, int(r["n"]), int(r["errors"] or 0)
                )
            return stats

        return await self.db.read(work)

    async def failed_ratings(self, start: datetime, end: datetime) -> int:
        row = await self.db.read(
            lambda c: c.execute(
                "SELECT count(*) AS n FROM persona_feedback WHERE module = ? AND at >= ? "
                "AND at < ?",
                (FAILED_RATING, iso(start), iso(end)),
            ).fetchone()
        )
        return int(row["n"])


# -- seeding and cleanup -------------------------------------------------------------------------
# The SQL of `personas.seed`. Each function runs on the caller's connection (a read, or the unit
# of a write); what commits together is the caller's decision.


@dataclass(frozen=True)
class PersonaProfile:
    """A persona's row as the catalog describes it (`module_mix` as stored: JSON text)."""

    archetype: str
    system_prompt: str
    module_mix: str
    cadence: str


@dataclass(frozen=True)
class SeededSpace:
    """A space found by slug, with the kind of the user who created it (None: no creator)."""

    id: str
    name: str
    type: str
    creator_kind: str | None


@dataclass(frozen=True)
class SpaceMember:
    email: str
    kind: str
    role: str


def persona_profile(conn: Conn, user_id: str) -> PersonaProfile | None:
    row = conn.execute("SELECT * FROM personas WHERE user_id = ?", (user_id,)).fetchone()
    if row is None:
        return None
    return PersonaProfile(row["archetype"], row["system_prompt"], row["module_mix"], row["cadence"])


def upsert_persona(conn: Conn, user_id: str, profile: PersonaProfile, *, now: str) -> None:
    conn.execute(
        "INSERT INTO personas (user_id, archetype, system_prompt, module_mix, cadence, "
        "created_at, updated_at) VALUES (?,?,?,?,?,?,?) ON CONFLICT (user_id) DO UPDATE "
        "SET archetype = excluded.archetype, system_prompt = excluded.system_prompt, "
        "module_mix = excluded.module_mix, cadence = excluded.cadence, "
        "updated_at = excluded.updated_at",
        (
            user_id,
            profile.archetype,
            profile.system_prompt,
            profile.module_mix,
            profile.cadence,
            now,
            now,
        ),
    )


def rename_persona_user(conn: Conn, user_id: str, name: str, *, now: str) -> None:
    """Rename a persona user (a user of another kind is left alone)."""
    conn.execute(
        "UPDATE users SET name = ?, updated_at = ? WHERE id = ? AND kind = 'persona'",
        (name, now, user_id),
    )


def space_by_slug(conn: Conn, slug: str) -> SeededSpace | None:
    row = conn.execute(
        "SELECT s.*, u.kind AS creator_kind FROM spaces s "
        "LEFT JOIN users u ON u.id = s.created_by WHERE s.slug = ?",
        (slug,),
    ).fetchone()
    if row is None:
        return None
    return SeededSpace(row["id"], row["name"], row["type"], row["creator_kind"])


def space_members(conn: Conn, space_id: str) -> list[SpaceMember]:
    rows = conn.execute(
        "SELECT u.email, u.kind, m.role FROM memberships m JOIN users u "
        "ON u.id = m.user_id WHERE m.space_id = ?",
        (space_id,),
    ).fetchall()
    return [SpaceMember(r["email"], r["kind"], r["role"]) for r in rows]


def remove_member(conn: Conn, space_id: str, user_id: str) -> None:
    conn.execute("DELETE FROM memberships WHERE space_id = ? AND user_id = ?", (space_id, user_id))


def rename_space(conn: Conn, space_id: str, name: str) -> None:
    conn.execute("UPDATE spaces SET name = ? WHERE id = ?", (name, space_id))


@dataclass(frozen=True)
class CleanupRows:
    """What deleting a set of users removes (see `persona_cleanup`)."""

    spaces: list[str]  # slugs
    memberships: list[tuple[str, str, str]]  # (email, slug, role)
    records_by_space: dict[str, int]  # slug -> records
    new_owners: list[tuple[str, str]]  # (email, slug)


def persona_cleanup(conn: Conn, user_ids: Sequence[str], *, delete: bool) -> CleanupRows:
    """What deleting `user_ids` removes: the spaces whose every member is one of them (and
    those they created that have no members), their memberships, the records they authored
    anywhere plus every record of those spaces, and the member who becomes owner of each kept
    space whose owners all go (the longest-standing admin, else member). With `delete`, the
    same rows are then deleted, in the caller's unit."""
    # Temp tables (connection-local, never persisted) hold the ids, so every statement is
    # plain SQL with no id lists spliced in. A pooled PostgreSQL connection keeps its temp
    # tables between units, so they are emptied before use as well as after.
    conn.execute("CREATE TEMP TABLE IF NOT EXISTS _doomed_users (id TEXT PRIMARY KEY)")
    conn.execute("CREATE TEMP TABLE IF NOT EXISTS _doomed_spaces (id TEXT PRIMARY KEY)")
    conn.execute("DELETE FROM _doomed_users")
    conn.execute("DELETE FROM _doomed_spaces")
    try:
        conn.executemany("INSERT INTO _doomed_users (id) VALUES (?)", [(i,) for i in user_ids])
        found = _plan_cleanup(conn)
        if delete:
            _delete_doomed(conn)
        return found
    finally:
        conn.execute("DELETE FROM _doomed_users")
        conn.execute("DELETE FROM _doomed_spaces")


def _plan_cleanup(conn: Conn) -> CleanupRows:
    conn.execute(
        "INSERT INTO _doomed_spaces (id) SELECT s.id FROM spaces s "
        "WHERE (s.created_by IN (SELECT id FROM _doomed_users) "
        "OR EXISTS (SELECT 1 FROM memberships m WHERE m.space_id = s.id "
        "AND m.user_id IN (SELECT id FROM _doomed_users))) "
        "AND NOT EXISTS (SELECT 1 FROM memberships m WHERE m.space_id = s.id "
        "AND m.user_id NOT IN (SELECT id FROM _doomed_users))"
    )
    spaces = [
        r["slug"]
        for r in conn.execute(
            "SELECT slug FROM spaces WHERE id IN (SELECT id FROM _doomed_spaces) ORDER BY slug"
        )
    ]
    memberships = [
        (r["email"], r["slug"], r["role"])
        for r in conn.execute(
            "SELECT u.email, s.slug, m.role FROM memberships m JOIN users u ON u.id = m.user_id "
            "JOIN spaces s ON s.id = m.space_id WHERE m.user_id IN (SELECT id FROM _doomed_users) "
            "ORDER BY u.email, s.slug"
        )
    ]
    records_by_space = {
        r["slug"]: int(r["n"])
        for r in conn.execute(
            "SELECT s.slug, count(*) AS n FROM records r JOIN spaces s ON s.id = r.space_id "
            "WHERE r.author_id IN (SELECT id FROM _doomed_users) "
            "OR r.space_id IN (SELECT id FROM _doomed_spaces) GROUP BY s.slug ORDER BY s.slug"
        )
    }
    owners = [(r["email"], r["slug"]) for r in _new_owners(conn)]
    return CleanupRows(spaces, memberships, records_by_space, owners)


def _new_owners(conn: Conn) -> list[Row]:
    """For each kept space whose owners are all being deleted: the member who takes over (the
    longest-standing admin, else the longest-standing member)."""
    rows: list[Row] = conn.execute(
        "SELECT s.id AS space_id, s.slug, u.id AS user_id, u.email FROM spaces s "
        "JOIN users u ON u.id = (SELECT m.user_id FROM memberships m WHERE m.space_id = s.id "
        "AND m.user_id NOT IN (SELECT id FROM _doomed_users) "
        "ORDER BY m.role = 'admin' DESC, m.created_at, m.user_id LIMIT 1) "
        "WHERE s.id NOT IN (SELECT id FROM _doomed_spaces) "
        "AND EXISTS (SELECT 1 FROM memberships m WHERE m.space_id = s.id AND m.role = 'owner' "
        "AND m.user_id IN (SELECT id FROM _doomed_users)) "
        "AND NOT EXISTS (SELECT 1 FROM memberships m WHERE m.space_id = s.id "
        "AND m.role = 'owner' AND m.user_id NOT IN (SELECT id FROM _doomed_users)) "
        "ORDER BY s.slug"
    ).fetchall()
    return rows


def _delete_doomed(conn: Conn) -> None:
    for r in _new_owners(conn):
        conn.execute(
            "UPDATE memberships SET role = 'owner' WHERE space_id = ? AND user_id = ?",
            (r["space_id"], r["user_id"]),
        )
    conn.execute(
        "DELETE FROM records WHERE author_id IN (SELECT id FROM _doomed_users) "
        "OR space_id IN (SELECT id FROM _doomed_spaces)"
    )
    conn.execute(
        "DELETE FROM audit_log WHERE user_id IN (SELECT id FROM _doomed_users) "
        "OR space_id IN (SELECT id FROM _doomed_spaces)"
    )
    conn.execute("DELETE FROM idempotency_keys WHERE user_id IN (SELECT id FROM _doomed_users)")
    conn.execute("DELETE FROM memberships WHERE user_id IN (SELECT id FROM _doomed_users)")
    conn.execute("DELETE FROM spaces WHERE id IN (SELECT id FROM _doomed_spaces)")
    # Persona rows, their actions, ratings and ticks go with the users (ON DELETE CASCADE).
    conn.execute("DELETE FROM users WHERE id IN (SELECT id FROM _doomed_users)")


def _action(r: Row) -> Action:
    return Action(
        tick_id=r["tick_id"],
        call_index=r["call_index"],
        space_id=r["space_id"],
        tool=r["tool"],
        input_hash=r["input_hash"],
        result=r["result"],
        error_message=r["error_message"],
        latency_ms=r["latency_ms"],
        at=r["at"],
    )


__all__ = [
    "FAILED_RATING",
    "Action",
    "CleanupRows",
    "Feedback",
    "ModuleStats",
    "PersonaProfile",
    "PersonaRow",
    "PersonaStore",
    "SeededSpace",
    "SpaceMember",
    "action_id",
    "feedback_id",
    "persona_cleanup",
    "persona_profile",
    "remove_member",
    "rename_persona_user",
    "rename_space",
    "space_by_slug",
    "space_members",
    "upsert_persona",
]
