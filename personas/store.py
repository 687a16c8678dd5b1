"""Reads and writes of the personas tables (see `personas.schema`).

Ids of tick rows are deterministic: an action is `pac_` + sha256(tick id, persona email, call
index), a rating `pfb_` + sha256(tick id, persona email, module). Writing them is an upsert, so
a re-run of a tick replaces its rows instead of adding to them.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from tool_registry.clock import Clock, SystemClock, iso, parse_iso
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


def _persona(row: sqlite3.Row) -> PersonaRow:
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

        def work(conn: sqlite3.Connection) -> int:
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

        def work(conn: sqlite3.Connection) -> None:
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

        def work(conn: sqlite3.Connection) -> dict[str, ModuleStats]:
            lo, hi = iso(start), iso(end)
            stats: dict[str, ModuleStats] = {}
            for r in conn.execute(
                "SELECT module, avg(rating) AS avg, count(*) AS n FROM persona_feedback "
                "WHERE at >= ? AND at < ? AND rating IS NOT NULL GROUP BY module",
                (lo, hi),
            ):
                stats[r["module"]] = ModuleStats(r["module"], int(r["n"]), float(r["avg"]))
            for r in conn.execute(
                "SELECT module, count(*) AS n, sum(result = 'error') AS errors "
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


def _action(r: sqlite3.Row) -> Action:
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
    "Feedback",
    "ModuleStats",
    "PersonaRow",
    "PersonaStore",
    "action_id",
    "feedback_id",
]
