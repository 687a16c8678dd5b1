"""`MissionStore`: the repository over the missions tables.

Every query a person or a tool can reach takes the space and filters by it in SQL; the few
internal reads by id (the runner loading the mission it just claimed) are marked as such. The
scheduling transactions (claim, recover, finish) live in `missions.scheduler` and their SQL in
`missions.store.scheduling`; the SQL of staging and deciding proposals is in
`missions.store.proposals`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from missions.cadence import Cadence, cadence_to_json, next_run
from missions.leases import Lease
from missions.models import (
    AGENT_STATES,
    MISSION_STATES,
    PROPOSAL_STATUSES,
    RETIRED_MISSION_STATES,
    Agent,
    Iteration,
    Mission,
    PlanStep,
    Proposal,
    Skip,
)
from missions.store.fencing import fence_sql
from policy.agent_policy import AgentToolPolicy
from tool_registry.clock import Clock, SystemClock, iso
from tool_registry.errors import ConflictError, NotFoundError, ValidationFailed
from tool_registry.store.connection import Conn
from tool_registry.store.database import Database

MAX_NAME = 80
MAX_TEXT = 20_000
BUDGET_WINDOW = timedelta(hours=24)

MISSION_SELECT = (
    "SELECT m.*, a.name AS agent_name FROM missions m JOIN agents a ON a.id = m.agent_id "
)


# Agent names are unique per space whatever their case (SQLite: `COLLATE NOCASE`; PostgreSQL:
# a unique index on `lower(name)`): every lookup by name matches the same way on both backends,
# and lists sort by the folded name (ASCII folding, as NOCASE does).
AGENT_NAME_IS = "lower(name) = lower(?)"
AGENT_NAME_ORDER = "lower(name), name, id"


def dump_json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


def plan_json(steps: Iterable[PlanStep]) -> str:
    return dump_json([s.to_json() for s in steps])


def _text(value: str, name: str, *, limit: int = MAX_TEXT, required: bool = False) -> str:
    value = value.strip()
    if required and not value:
        raise ValidationFailed(f"{name} must not be empty")
    if len(value) > limit:
        raise ValidationFailed(f"{name} is longer than {limit} characters")
    return value


def tokens_used_sql(conn: Conn, agent_id: str, since: str) -> int:
    row = conn.execute(
        "SELECT COALESCE(SUM(total_tokens), 0) AS used FROM iterations "
        "WHERE agent_id = ? AND started_at > ?",
        (agent_id, since),
    ).fetchone()
    return int(row["used"])


def running_count_sql(conn: Conn, agent_id: str) -> int:
    row = conn.execute(
        "SELECT COUNT(*) AS n FROM iterations WHERE agent_id = ? AND status = 'running'",
        (agent_id,),
    ).fetchone()
    return int(row["n"])


def settle_iteration_sql(conn: Conn, iteration_id: str) -> bool:
    """`awaiting-review` -> `completed` once no proposal of the iteration is still open (and the
    mission's last status follows when this was its latest iteration)."""
    row = conn.execute(
        "UPDATE iterations SET status = 'completed' WHERE id = ? AND status = 'awaiting-review' "
        "AND NOT EXISTS (SELECT 1 FROM proposals WHERE iteration_id = ? "
        "AND status IN ('pending', 'approved')) RETURNING mission_id",
        (iteration_id, iteration_id),
    ).fetchone()
    if row is None:
        return False
    conn.execute(
        "UPDATE missions SET last_status = 'completed' WHERE id = ? "
        "AND last_status = 'awaiting-review' AND ? = (SELECT id FROM iterations "
        "WHERE mission_id = ? ORDER BY started_at DESC, id DESC LIMIT 1)",
        (row["mission_id"], iteration_id, row["mission_id"]),
    )
    return True


def mark_step_sql(
    conn: Conn,
    iteration_id: str,
    proposal_id: str,
    *,
    proposal_status: str,
    status: str | None = None,
    request_id: str | None = None,
) -> None:
    """Follow a proposal's decision on its plan step (and the step's status once it ran)."""
    row = conn.execute("SELECT plan FROM iterations WHERE id = ?", (iteration_id,)).fetchone()
    if row is None:
        return
    steps = json.loads(row["plan"])
    for step in steps:
        if step.get("proposalId") == proposal_id:
            step["proposalStatus"] = proposal_status
            if status is not None:
                step["status"] = status
            if request_id is not None:
                step["requestId"] = request_id
    conn.execute("UPDATE iterations SET plan = ? WHERE id = ?", (dump_json(steps), iteration_id))


class MissionStore:
    def __init__(self, db: Database, clock: Clock | None = None) -> None:
        self.db = db
        self.clock = clock or SystemClock()

    def now(self) -> datetime:
        return self.clock.now()

    # -- agents --------------------------------------------------------------------------------

    async def create_agent(
        self,
        *,
        space_id: str,
        created_by: str | None,
        name: str,
        role: str = "",
        system_prompt: str = "",
        memory: str = "",
        tool_policy: AgentToolPolicy | None = None,
        max_tokens_per_day: int | None = None,
        max_concurrent: int = 1,
    ) -> Agent:
        name = _text(name, "agent name", limit=MAX_NAME, required=True)
        if max_tokens_per_day is not None and max_tokens_per_day < 0:
            raise ValidationFailed("max tokens per day must be 0 (paused), positive, or none")
        if max_concurrent < 1:
            raise ValidationFailed("max concurrent missions must be at least 1")
        policy = tool_policy or AgentToolPolicy.sensible_default()
        now = iso(self.now())
        agent_id = self.clock.new_id("agt")

        def work(conn: Conn) -> Agent:
            taken = "SELECT 1 FROM agents WHERE space_id = ? AND " + AGENT_NAME_IS  # noqa: S608
            if conn.execute(taken, (space_id, name)).fetchone():
                raise ConflictError(f"an agent named {name!r} already exists in this space")
            conn.execute(
                "INSERT INTO agents (id, space_id, name, role, system_prompt, memory, "
                "tool_policy, max_tokens_per_day, max_concurrent, state, created_by, "
                "created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,'active',?,?,?)",
                (
                    agent_id,
                    space_id,
                    name,
                    _text(role, "role"),
                    _text(system_prompt, "system prompt"),
                    _text(memory, "memory"),
                    dump_json(policy.to_json()),
                    max_tokens_per_day,
                    max_concurrent,
                    created_by,
                    now,
                    now,
                ),
            )
            return Agent.from_row(
                conn.execute("SELECT * FROM agents WHERE id = ?", (agent_id,)).fetchone()
            )

        return await self.db.write(work)

    async def list_agents(self, space_id: str, *, include_archived: bool = True) -> list[Agent]:
        sql = "SELECT * FROM agents WHERE space_id = ?"
        if not include_archived:
            sql += " AND state != 'archived'"
        rows = await self.db.read(
            lambda c: c.execute(sql + " ORDER BY " + AGENT_NAME_ORDER, (space_id,)).fetchall()
        )
        return [Agent.from_row(r) for r in rows]

    async def find_agent(self, space_id: str, ref: str) -> Agent | None:
        """An agent of the space by id or (case-insensitive) name."""
        row = await self.db.read(
            lambda c: c.execute(
                "SELECT * FROM agents WHERE space_id = ? AND (id = ? OR "  # noqa: S608 - fixed clauses, bound values
                + AGENT_NAME_IS
                + ") ORDER BY CASE WHEN id = ? THEN 0 ELSE 1 END LIMIT 1",
                (space_id, ref, ref.strip(), ref),
            ).fetchone()
        )
        return Agent.from_row(row) if row else None

    async def require_agent(self, space_id: str, ref: str) -> Agent:
        agent = await self.find_agent(space_id, ref)
        if agent is None:
            raise NotFoundError(f"no agent {ref!r} in this space")
        return agent

    async def set_agent_state(self, space_id: str, agent_id: str, state: str) -> Agent:
        if state not in AGENT_STATES:
            raise ValidationFailed(f"agent state must be one of {', '.join(AGENT_STATES)}")
        now = iso(self.now())

        def work(conn: Conn) -> Agent:
            row = conn.execute(
                "SELECT * FROM agents WHERE id = ? AND space_id = ?", (agent_id, space_id)
            ).fetchone()
            if row is None:
                raise NotFoundError(f"no agent {agent_id!r} in this space")
            if row["state"] == "archived" and state != "archived":
                raise ConflictError(f"agent {row['name']!r} is archived and cannot be {state}")
            conn.execute(
                "UPDATE agents SET state = ?, updated_at = ? WHERE id = ?", (state, now, agent_id)
            )
            return Agent.from_row(
                conn.execute("SELECT * FROM agents WHERE id = ?", (agent_id,)).fetchone()
            )

        return await self.db.write(work)

    async def tokens_used(self, agent_id: str, *, now: datetime | None = None) -> int:
        """Tokens the agent's iterations started in the last 24 hours used."""
        since = iso((now or self.now()) - BUDGET_WINDOW)
        return await self.db.read(lambda c: tokens_used_sql(c, agent_id, since))

    async def running_count(self, agent_id: str) -> int:
        return await self.db.read(lambda c: running_count_sql(c, agent_id))

    # -- missions ------------------------------------------------------------------------------

    async def create_mission(
        self,
        *,
        space_id: str,
        owner_id: str,
        agent_id: str,
        title: str,
        objective: str,
        concept: str = "",
        cadence: Cadence,
    ) -> Mission:
        title = _text(title, "title", limit=200, required=True)
        objective = _text(objective, "objective", required=True)
        concept = _text(concept, "concept")
        now_dt = self.now()
        now = iso(now_dt)
        first = next_run(cadence, None, now_dt)
        first_text = iso(first) if first else None
        mission_id = self.clock.new_id("msn")

        def work(conn: Conn) -> Mission:
            agent = conn.execute(
                "SELECT state, name FROM agents WHERE id = ? AND space_id = ?",
                (agent_id, space_id),
            ).fetchone()
            if agent is None:
                raise NotFoundError(f"no agent {agent_id!r} in this space")
            if agent["state"] == "archived":
                raise ConflictError(f"agent {agent['name']!r} is archived")
            conn.execute(
                "INSERT INTO missions (id, space_id, owner_id, agent_id, title, objective, "
                "concept, cadence, state, next_run_at, window_at, created_at, updated_at) "
                "VALUES (?,?,?,?,?,?,?,?,'active',?,?,?,?)",
                (
                    mission_id,
                    space_id,
                    owner_id,
                    agent_id,
                    title,
                    objective,
                    concept,
                    dump_json(cadence_to_json(cadence)),
                    first_text,
                    first_text,
                    now,
                    now,
                ),
            )
            return Mission.from_row(
                conn.execute(MISSION_SELECT + "WHERE m.id = ?", (mission_id,)).fetchone()
            )

        return await self.db.write(work)

    async def list_missions(
        self,
        space_id: str,
        *,
        state: str | None = None,
        agent_id: str | None = None,
        include_archived: bool = True,
        limit: int = 100,
    ) -> list[Mission]:
        """The space's missions, newest first. `include_archived=False` leaves archived ones out
        unless `state` asks for them explicitly."""
        if state is not None and state not in MISSION_STATES:
            raise ValidationFailed(f"mission state must be one of {', '.join(MISSION_STATES)}")
        clauses, params = ["m.space_id = ?"], [space_id]
        if state is not None:
            clauses.append("m.state = ?")
            params.append(state)
        elif not include_archived:
            clauses.append("m.state != 'archived'")
        if agent_id is not None:
            clauses.append("m.agent_id = ?")
            params.append(agent_id)
        sql = (
            MISSION_SELECT
            + "WHERE "
            + " AND ".join(clauses)
            + " ORDER BY m.created_at DESC, m.id LIMIT ?"
        )
        rows = await self.db.read(lambda c: c.execute(sql, (*params, limit)).fetchall())
        return [Mission.from_row(r) for r in rows]

    async def find_mission(self, space_id: str, mission_id: str) -> Mission | None:
        row = await self.db.read(
            lambda c: c.execute(
                MISSION_SELECT + "WHERE m.id = ? AND m.space_id = ?", (mission_id, space_id)
            ).fetchone()
        )
        return Mission.from_row(row) if row else None

    async def require_mission(self, space_id: str, mission_id: str) -> Mission:
        mission = await self.find_mission(space_id, mission_id)
        if mission is None:
            raise NotFoundError(f"no mission {mission_id!r} in this space")
        return mission

    async def mission_by_id(self, mission_id: str) -> Mission | None:
        """Internal: the runner loading a mission it claimed (the claim was space-checked)."""
        row = await self.db.read(
            lambda c: c.execute(MISSION_SELECT + "WHERE m.id = ?", (mission_id,)).fetchone()
        )
        return Mission.from_row(row) if row else None

    async def agent_by_id(self, agent_id: str) -> Agent | None:
        """Internal: the agent of a claimed mission."""
        row = await self.db.read(
            lambda c: c.execute("SELECT * FROM agents WHERE id = ?", (agent_id,)).fetchone()
        )
        return Agent.from_row(row) if row else None

    async def set_mission_state(self, space_id: str, mission_id: str, state: str) -> Mission:
        """Pause, resume, complete or archive a mission. The rules (all in this one place):

        - `paused`: no longer due (only `active` missions are: the partial index
          `missions_due`); the next run time is kept for display, resume recomputes it.
        - `active` (resume, from `paused` or `done`): the next run is computed afresh from the
          mission's cadence and now (no backlog of missed windows; none for `manual`), and the
          failure count and backoff are reset.
        - `done` (complete) and `archived` (archive): never due, and the next run and due window
          are cleared. `done` can be resumed; `archived` is final: any change away from it is
          refused (`ConflictError`), archiving it again is a no-op.
        - An iteration running when the mission is completed or archived is neither cancelled
          nor killed: it finishes, and its finish does not schedule a next run
          (`Scheduler.finish`); `mana missions cancel` stops it early if wanted.
        - Setting the state a mission already has is a no-op (beyond `updated_at`).
        """
        if state not in MISSION_STATES:
            raise ValidationFailed(f"mission state must be one of {', '.join(MISSION_STATES)}")
        now_dt = self.now()
        now = iso(now_dt)

        def work(conn: Conn) -> Mission:
            row = conn.execute(
                MISSION_SELECT + "WHERE m.id = ? AND m.space_id = ?", (mission_id, space_id)
            ).fetchone()
            if row is None:
                raise NotFoundError(f"no mission {mission_id!r} in this space")
            mission = Mission.from_row(row)
            if mission.state == "archived" and state != "archived":
                verb = {"active": "resumed", "paused": "paused", "done": "completed"}[state]
                raise ConflictError(
                    f"mission {mission.title!r} is archived; archiving is final, so it cannot "
                    f"be {verb} (create a new mission instead)"
                )
            if state in RETIRED_MISSION_STATES:
                conn.execute(
                    "UPDATE missions SET state = ?, next_run_at = NULL, window_at = NULL, "
                    "updated_at = ? WHERE id = ?",
                    (state, now, mission_id),
                )
            elif state == "active" and mission.state != "active":
                upcoming = next_run(mission.cadence, None, now_dt)
                text = iso(upcoming) if upcoming else None
                conn.execute(
                    "UPDATE missions SET state = 'active', next_run_at = ?, window_at = ?, "
                    "failures = 0, backoff_until = NULL, updated_at = ? WHERE id = ?",
                    (text, text, now, mission_id),
                )
            else:
                conn.execute(
                    "UPDATE missions SET state = ?, updated_at = ? WHERE id = ?",
                    (state, now, mission_id),
                )
            return Mission.from_row(
                conn.execute(MISSION_SELECT + "WHERE m.id = ?", (mission_id,)).fetchone()
            )

        return await self.db.write(work)

    async def request_cancel(self, space_id: str, mission_id: str) -> list[str]:
        """Flag the mission's running iterations; the runner stops them between rounds."""

        def work(conn: Conn) -> list[str]:
            rows = conn.execute(
                "SELECT id FROM iterations WHERE mission_id = ? AND space_id = ? "
                "AND status = 'running'",
                (mission_id, space_id),
            ).fetchall()
            ids = [r["id"] for r in rows]
            conn.executemany(
                "UPDATE iterations SET cancel_requested = 1 WHERE id = ?", [(i,) for i in ids]
            )
            return ids

        return await self.db.write(work)

    async def skips(self, space_id: str, mission_id: str, *, limit: int = 20) -> list[Skip]:
        rows = await self.db.read(
            lambda c: c.execute(
                "SELECT s.* FROM mission_skips s JOIN missions m ON m.id = s.mission_id "
                "WHERE s.mission_id = ? AND m.space_id = ? "
                "ORDER BY s.last_at DESC, s.window_at DESC, s.reason LIMIT ?",
                (mission_id, space_id, limit),
            ).fetchall()
        )
        return [Skip.from_row(r) for r in rows]

    # -- iterations ----------------------------------------------------------------------------

    async def list_iterations(
        self, space_id: str, mission_id: str, *, limit: int = 20
    ) -> list[Iteration]:
        rows = await self.db.read(
            lambda c: c.execute(
                "SELECT * FROM iterations WHERE mission_id = ? AND space_id = ? "
                "ORDER BY started_at DESC, id DESC LIMIT ?",
                (mission_id, space_id, limit),
            ).fetchall()
        )
        return [Iteration.from_row(r) for r in rows]

    async def find_iteration(
        self, space_id: str, iteration_id: str, *, transcript: bool = False
    ) -> Iteration | None:
        row = await self.db.read(
            lambda c: c.execute(
                "SELECT * FROM iterations WHERE id = ? AND space_id = ?", (iteration_id, space_id)
            ).fetchone()
        )
        return Iteration.from_row(row, with_transcript=transcript) if row else None

    async def iteration_by_id(self, iteration_id: str, *, transcript: bool = False) -> Iteration:
        """Internal: the runner re-reading the iteration it runs."""
        row = await self.db.read(
            lambda c: c.execute("SELECT * FROM iterations WHERE id = ?", (iteration_id,)).fetchone()
        )
        if row is None:
            raise NotFoundError(f"no iteration {iteration_id!r}")
        return Iteration.from_row(row, with_transcript=transcript)

    async def save_progress(
        self,
        lease: Lease,
        iteration_id: str,
        *,
        phase: str,
        round_: int,
        plan: Sequence[PlanStep] | None = None,
        usage: tuple[int, int, int] | None = None,
    ) -> bool:
        """Record how far a running iteration got, fenced by its `lease` (`LeaseLost` when it
        was taken over: nothing is written); returns whether a cancel was requested."""
        sets, params = ["phase = ?", "round = ?"], [phase, round_]
        if plan is not None:
            sets.append("plan = ?")
            params.append(plan_json(plan))
        if usage is not None:
            sets.extend(["input_tokens = ?", "output_tokens = ?", "total_tokens = ?"])
            params.extend(usage)
        sql = (
            f"UPDATE iterations SET {', '.join(sets)} WHERE id = ? AND status = 'running' "  # noqa: S608
            "RETURNING cancel_requested"
        )

        def work(conn: Conn) -> bool:
            fence_sql(conn, lease)
            row = conn.execute(sql, (*params, iteration_id)).fetchone()
            return bool(row and row["cancel_requested"])

        return await self.db.write(work)

    async def cancel_requested(self, iteration_id: str) -> bool:
        row = await self.db.read(
            lambda c: c.execute(
                "SELECT cancel_requested FROM iterations WHERE id = ?", (iteration_id,)
            ).fetchone()
        )
        return bool(row and row["cancel_requested"])

    # -- proposals -----------------------------------------------------------------------------

    async def list_proposals(
        self,
        space_id: str,
        *,
        status: str | None = "pending",
        mission_id: str | None = None,
        limit: int = 50,
    ) -> list[Proposal]:
        if status is not None and status not in PROPOSAL_STATUSES:
            raise ValidationFailed(
                f"proposal status must be one of {', '.join(PROPOSAL_STATUSES)} (or all)"
            )
        clauses, params = ["space_id = ?"], [space_id]
        if status is not None:
            clauses.append("status = ?")
            params.append(status)
        if mission_id is not None:
            clauses.append("mission_id = ?")
            params.append(mission_id)
        sql = (
            "SELECT * FROM proposals WHERE "  # noqa: S608 - fixed clauses, bound values
            + " AND ".join(clauses)
            + " ORDER BY created_at DESC, id DESC LIMIT ?"
        )
        rows = await self.db.read(lambda c: c.execute(sql, (*params, limit)).fetchall())
        return [Proposal.from_row(r) for r in rows]

    async def find_proposal(self, space_id: str, proposal_id: str) -> Proposal | None:
        row = await self.db.read(
            lambda c: c.execute(
                "SELECT * FROM proposals WHERE id = ? AND space_id = ?", (proposal_id, space_id)
            ).fetchone()
        )
        return Proposal.from_row(row) if row else None

    async def find_proposal_of_member(self, user_id: str, proposal_id: str) -> Proposal | None:
        """A proposal in any space the user is a member of (filtered by membership in SQL)."""
        row = await self.db.read(
            lambda c: c.execute(
                "SELECT p.* FROM proposals p JOIN memberships ms ON ms.space_id = p.space_id "
                "WHERE p.id = ? AND ms.user_id = ?",
                (proposal_id, user_id),
            ).fetchone()
        )
        return Proposal.from_row(row) if row else None

    async def proposals_of_iteration(self, space_id: str, iteration_id: str) -> list[Proposal]:
        rows = await self.db.read(
            lambda c: c.execute(
                "SELECT * FROM proposals WHERE iteration_id = ? AND space_id = ? "
                "ORDER BY created_at, id",
                (iteration_id, space_id),
            ).fetchall()
        )
        return [Proposal.from_row(r) for r in rows]

    async def expire_proposals(self, *, now: datetime | None = None) -> list[str]:
        """Mark pending proposals past their expiry `expired`; returns their ids."""
        stamp = iso(now or self.now())

        def work(conn: Conn) -> list[str]:
            rows = conn.execute(
                "UPDATE proposals SET status = 'expired', decided_at = ? "
                "WHERE status = 'pending' AND expires_at <= ? RETURNING id, iteration_id",
                (stamp, stamp),
            ).fetchall()
            for row in rows:
                mark_step_sql(conn, row["iteration_id"], row["id"], proposal_status="expired")
            for iteration_id in {r["iteration_id"] for r in rows}:
                settle_iteration_sql(conn, iteration_id)
            return [r["id"] for r in rows]

        # Cheap check first, so the common case takes no write lock.
        due = await self.db.read(
            lambda c: c.execute(
                "SELECT 1 FROM proposals WHERE status = 'pending' AND expires_at <= ? LIMIT 1",
                (stamp,),
            ).fetchone()
        )
        if due is None:
            return []
        return await self.db.write(work)
