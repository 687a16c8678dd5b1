"""Proposals: tool calls an agent wanted but its policy said `propose`.

- Staging (the runner): the call is stored with the model's rationale and a fingerprint,
  sha256 of the tool name and the canonical JSON of the arguments. The call's idempotency key is
  stored too (`call_key`, unique), so a mission re-run after a crash finds the proposal it
  already made instead of making a second one.
- Deciding (a human, from the CLI; never a tool a model can call): `approve` verifies the
  fingerprint, then runs exactly the stored call through the one invocation pipeline as the
  approving user (invoker `user`, idempotency key `proposal:<id>`), so the policy gate still
  applies: a destructive tool still needs the space's allowlist. A call the gate denies did not
  run; the proposal stays `pending` (with the denial recorded) and can be approved again once
  the policy allows it. The result is recorded on the proposal and on the iteration's plan step;
  an iteration `awaiting-review` becomes `completed` once none of its proposals is open.
- Expiry: a pending proposal expires `proposal_expiry` after it was made (default 7 days).
  Proposals are rows in the database, so they survive restarts.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from missions.models import Mission, Proposal
from missions.settings import MissionSettings
from missions.store import MissionStore, dump_json, mark_step_sql, settle_iteration_sql
from tool_registry.clock import iso
from tool_registry.context import CallContext
from tool_registry.errors import (
    ConflictError,
    NotFoundError,
    PermissionDeniedError,
)
from tool_registry.membership import is_manager, require_member
from tool_registry.pipeline import Outcome, Pipeline
from tool_registry.store.accounts import Accounts


def canonical_arguments(arguments: Any) -> str:
    """The one text form of a call's arguments: sorted keys, no insignificant whitespace."""
    return json.dumps(arguments, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def fingerprint(tool: str, arguments: Any) -> str:
    """sha256 over the tool name and the canonical arguments."""
    text = f"{tool}\n{canonical_arguments(arguments)}"
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Staged:
    proposal: Proposal
    created: bool


async def stage_proposal(
    store: MissionStore,
    settings: MissionSettings,
    *,
    iteration_id: str,
    mission: Mission,
    call_id: str,
    tool: str,
    arguments: dict[str, Any],
    rationale: str,
    reason: str,
    call_key: str | None,
) -> Staged:
    """Store a proposal, or find the one a previous attempt of the same run already stored
    (same `call_key`); a still-pending one moves to the new iteration."""
    now = store.now()
    stamp = iso(now)
    expires = iso(now + settings.proposal_expiry)
    args_text = canonical_arguments(arguments)
    proposal_id = store.clock.new_id("prp")
    print_ = fingerprint(tool, arguments)

    def work(conn: sqlite3.Connection) -> Staged:
        if call_key is not None:
            row = conn.execute("SELECT * FROM proposals WHERE call_key = ?", (call_key,)).fetchone()
            if row is not None:
                if row["status"] == "pending" and row["iteration_id"] != iteration_id:
                    conn.execute(
                        "UPDATE proposals SET iteration_id = ?, call_id = ? WHERE id = ?",
                        (iteration_id, call_id, row["id"]),
                    )
                    row = conn.execute(
                        "SELECT * FROM proposals WHERE id = ?", (row["id"],)
                    ).fetchone()
                return Staged(Proposal.from_row(row), created=False)
        conn.execute(
            "INSERT INTO proposals (id, iteration_id, mission_id, space_id, agent_id, call_id, "
            "tool, arguments, rationale, reason, fingerprint, call_key, status, created_at, "
            "expires_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,'pending',?,?)",
            (
                proposal_id,
                iteration_id,
                mission.id,
                mission.space_id,
                mission.agent_id,
                call_id,
                tool,
                args_text,
                rationale[:4000],
                reason,
                print_,
                call_key,
                stamp,
                expires,
            ),
        )
        row = conn.execute("SELECT * FROM proposals WHERE id = ?", (proposal_id,)).fetchone()
        return Staged(Proposal.from_row(row), created=True)

    return await store.db.write(work)


@dataclass(frozen=True)
class Decision:
    """What a human decision did. `outcome` is the pipeline's outcome for an approval (None for
    a rejection); `executed` tells whether the call ran successfully."""

    proposal: Proposal
    outcome: Outcome | None
    executed: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "proposal": self.proposal.to_json(),
            "executed": self.executed,
            "outcome": self.outcome.public() if self.outcome else None,
        }


class ProposalService:
    """Human decisions on proposals. Built by the CLI (and later an authenticated settings
    endpoint); deliberately not a backend that tools can reach."""

    def __init__(self, store: MissionStore, accounts: Accounts, pipeline: Pipeline) -> None:
        self.store = store
        self.accounts = accounts
        self.pipeline = pipeline

    async def find(self, user_id: str, proposal_id: str, space: str | None = None) -> Proposal:
        """The proposal, if it lives in a space the user belongs to (`space` narrows it)."""
        if space is not None:
            access = await require_member(self.accounts, user_id, space)
            found = await self.store.find_proposal(access.space.id, proposal_id)
        else:
            found = await self.store.find_proposal_of_member(user_id, proposal_id)
        if found is None:
            raise NotFoundError(f"no proposal {proposal_id!r} in your spaces")
        return found

    async def _check_can_decide(self, user_id: str, proposal: Proposal) -> None:
        access = await require_member(self.accounts, user_id, proposal.space_id)
        if is_manager(access.role):
            return
        mission = await self.store.find_mission(proposal.space_id, proposal.mission_id)
        if mission is None or mission.owner_id != user_id:
            raise PermissionDeniedError(
                "only the mission's owner or the space's owner or an admin may decide proposals"
            )

    async def approve(
        self, user_id: str, proposal_id: str, *, space: str | None = None
    ) -> Decision:
        """Run exactly the fingerprinted call through the pipeline as `user_id` (invoker
        `user`), record the result on the proposal and its iteration."""
        await self.store.expire_proposals()
        proposal = await self.find(user_id, proposal_id, space)
        await self._check_can_decide(user_id, proposal)
        if proposal.status == "expired":
            raise ConflictError(f"proposal {proposal.id} expired at {proposal.expires_at}")
        if proposal.status not in ("pending", "approved"):
            raise ConflictError(f"proposal {proposal.id} is already {proposal.status}")
        if fingerprint(proposal.tool, proposal.arguments) != proposal.fingerprint:
            raise ConflictError(
                f"proposal {proposal.id} does not match its fingerprint (its stored call was "
                "changed); refusing to run it"
            )
        now = self.store.now()
        await self._claim(proposal, user_id, now)
        outcome = await self.pipeline.invoke(
            proposal.tool,
            json.loads(proposal.arguments_json),
            CallContext(
                user_id=user_id,
                space=proposal.space_id,
                invoker="user",
                idempotency_key=f"proposal:{proposal.id}",
            ),
        )
        decided = await self._record(proposal, user_id, outcome)
        return Decision(decided, outcome, executed=outcome.ok)

    async def _claim(self, proposal: Proposal, user_id: str, now: datetime) -> None:
        stamp = iso(now)

        def work(conn: sqlite3.Connection) -> None:
            cur = conn.execute(
                "UPDATE proposals SET status = 'approved', decided_by = ?, decided_at = ? "
                "WHERE id = ? AND status IN ('pending', 'approved') AND expires_at > ?",
                (user_id, stamp, proposal.id, stamp),
            )
            if cur.rowcount != 1:
                raise ConflictError(f"proposal {proposal.id} was decided or expired meanwhile")
            mark_step_sql(conn, proposal.iteration_id, proposal.id, proposal_status="approved")

        await self.store.db.write(work)

    async def _record(self, proposal: Proposal, user_id: str, outcome: Outcome) -> Proposal:
        result = dump_json(outcome.public())

        def work(conn: sqlite3.Connection) -> Proposal:
            if outcome.status == "denied":
                # Nothing ran: back to pending, so it can be approved once the policy allows.
                conn.execute(
                    "UPDATE proposals SET status = 'pending', decided_by = NULL, "
                    "decided_at = NULL, result = ? WHERE id = ?",
                    (result, proposal.id),
                )
                mark_step_sql(conn, proposal.iteration_id, proposal.id, proposal_status="pending")
            else:
                status = "executed" if outcome.ok else "failed"
                conn.execute(
                    "UPDATE proposals SET status = ?, result = ? WHERE id = ?",
                    (status, result, proposal.id),
                )
                mark_step_sql(
                    conn,
                    proposal.iteration_id,
                    proposal.id,
                    proposal_status=status,
                    status=status,
                    request_id=outcome.request_id,
                )
                settle_iteration_sql(conn, proposal.iteration_id)
            row = conn.execute("SELECT * FROM proposals WHERE id = ?", (proposal.id,)).fetchone()
            return Proposal.from_row(row)

        return await self.store.db.write(work)

    async def reject(
        self,
        user_id: str,
        proposal_id: str,
        *,
        space: str | None = None,
        note: str | None = None,
    ) -> Decision:
        await self.store.expire_proposals()
        proposal = await self.find(user_id, proposal_id, space)
        await self._check_can_decide(user_id, proposal)
        if proposal.status != "pending":
            raise ConflictError(f"proposal {proposal.id} is {proposal.status}, not pending")
        stamp = iso(self.store.now())
        result = dump_json({"note": note.strip()}) if note and note.strip() else None

        def work(conn: sqlite3.Connection) -> Proposal:
            cur = conn.execute(
                "UPDATE proposals SET status = 'rejected', decided_by = ?, decided_at = ?, "
                "result = COALESCE(?, result) WHERE id = ? AND status = 'pending'",
                (user_id, stamp, result, proposal.id),
            )
            if cur.rowcount != 1:
                raise ConflictError(f"proposal {proposal.id} was decided meanwhile")
            mark_step_sql(conn, proposal.iteration_id, proposal.id, proposal_status="rejected")
            settle_iteration_sql(conn, proposal.iteration_id)
            row = conn.execute("SELECT * FROM proposals WHERE id = ?", (proposal.id,)).fetchone()
            return Proposal.from_row(row)

        decided = await self.store.db.write(work)
        return Decision(decided, None, executed=False)
