"""Proposals: tool calls an agent wanted but its policy said `propose`.

- Staging (the runner, fenced by the iteration's lease like all its writes): the call is stored with the model's rationale and a fingerprint,
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

import asyncio
import hashlib
import json
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from missions.leases import Lease
from missions.models import Mission, Proposal
from missions.settings import MissionSettings
from missions.store import MissionStore, dump_json, mark_step_sql, settle_iteration_sql
from missions.store.fencing import fence_sql
from missions.store.proposals import (
    ClaimRow,
    approved_claim_sql,
    claim_pending_sql,
    insert_proposal_sql,
    move_proposal_sql,
    proposal_by_call_key_sql,
    proposal_sql,
    record_run_sql,
    reject_sql,
    reopen_denied_sql,
    take_over_claim_sql,
)
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
from tool_registry.store.connection import Conn


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
    lease: Lease,
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
    (same `call_key`); a still-pending one moves to the new iteration. Fenced by the iteration's
    `lease`: `LeaseLost` (nothing staged or moved) once another daemon took the mission over."""
    now = store.now()
    stamp = iso(now)
    expires = iso(now + settings.proposal_expiry)
    args_text = canonical_arguments(arguments)
    proposal_id = store.clock.new_id("prp")
    print_ = fingerprint(tool, arguments)

    def work(conn: Conn) -> Staged:
        fence_sql(conn, lease)
        if call_key is not None:
            found = proposal_by_call_key_sql(conn, call_key)
            if found is not None:
                if found.status == "pending" and found.iteration_id != iteration_id:
                    move_proposal_sql(conn, found.id, iteration_id=iteration_id, call_id=call_id)
                    found = proposal_sql(conn, found.id)
                return Staged(found, created=False)
        insert_proposal_sql(
            conn,
            proposal_id=proposal_id,
            iteration_id=iteration_id,
            mission_id=mission.id,
            space_id=mission.space_id,
            agent_id=mission.agent_id,
            call_id=call_id,
            tool=tool,
            arguments=args_text,
            rationale=rationale[:4000],
            reason=reason,
            fingerprint=print_,
            call_key=call_key,
            created_at=stamp,
            expires_at=expires,
        )
        return Staged(proposal_sql(conn, proposal_id), created=True)

    return await store.db.write(work)


@dataclass(frozen=True)
class Decision:
    """What a decision on a proposal is. `proposal` is its stored state, the same for every
    approval of it; `outcome` is the pipeline's outcome when this very approval ran the call
    (None when it answered a decision already made, and for a rejection)."""

    proposal: Proposal
    outcome: Outcome | None = None

    @property
    def executed(self) -> bool:
        return self.proposal.status == "executed"

    def to_json(self) -> dict[str, Any]:
        recorded = self.proposal.result if self.proposal.status != "rejected" else None
        return {
            "proposal": self.proposal.to_json(),
            "executed": self.executed,
            "outcome": recorded,
        }


@dataclass(frozen=True)
class Claim:
    """The right to run a proposal's call: as `executor_id` under the idempotency key `key`
    (both stored on the proposal, so whoever finishes a crashed approval runs the same call
    under the same key, and the pipeline answers a write that already happened by replaying
    it). `claim_id` changes with every claim, so only one approval takes over a stale one."""

    executor_id: str
    key: str
    claim_id: str | None
    claimed_at: str | None


DECIDED = frozenset({"executed", "failed", "rejected"})
CLAIM_LEASE = timedelta(minutes=2)


def execution_key(proposal_id: str) -> str:
    """The idempotency key a proposal's call runs under: derived from the proposal, not from
    who approves it."""
    return f"proposal:{proposal_id}"


class ProposalService:
    """Human decisions on proposals. Built by the CLI (and later an authenticated settings
    endpoint); deliberately not a backend that tools can reach.

    A proposal's call runs exactly once, however many approvals (in any number of processes)
    arrive together: an approval claims it with one conditional UPDATE from `pending`; the
    others wait for the claimed run to be recorded and answer that decision. A claim older than
    `claim_lease` (its approval crashed, or is that slow) is taken over by one waiting
    approval, which runs the call again as the claim's executor under the claim's key, so a
    write that already happened is replayed by the pipeline, not repeated."""

    def __init__(
        self,
        store: MissionStore,
        accounts: Accounts,
        pipeline: Pipeline,
        *,
        claim_lease: timedelta = CLAIM_LEASE,
        poll_seconds: float = 0.05,
    ) -> None:
        self.store = store
        self.accounts = accounts
        self.pipeline = pipeline
        self.claim_lease = claim_lease
        self.poll_seconds = poll_seconds

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
        """Run exactly the fingerprinted call through the pipeline (invoker `user`) and record
        the result on the proposal and its iteration; a proposal that is already decided (or
        gets decided while this approval waits for another one's run) answers that decision."""
        await self.store.expire_proposals()
        proposal = await self.find(user_id, proposal_id, space)
        await self._check_can_decide(user_id, proposal)
        if fingerprint(proposal.tool, proposal.arguments) != proposal.fingerprint:
            raise ConflictError(
                f"proposal {proposal.id} does not match its fingerprint (its stored call was "
                "changed); refusing to run it"
            )
        waiting_since = time.monotonic()
        while True:
            if proposal.status in DECIDED:
                return Decision(proposal)
            if proposal.status == "expired":
                raise ConflictError(f"proposal {proposal.id} expired at {proposal.expires_at}")
            claim = await self._claim(proposal, user_id, waiting_since)
            if claim is not None:
                return await self._run(proposal, claim)
            await asyncio.sleep(self.poll_seconds)
            current = await self.store.find_proposal(proposal.space_id, proposal.id)
            if current is None:
                raise NotFoundError(f"no proposal {proposal_id!r} in your spaces")
            proposal = current

    async def _claim(self, proposal: Proposal, user_id: str, waiting_since: float) -> Claim | None:
        """Claim a pending proposal, or take over a stale claim; None when another approval
        holds a live claim (or won the race)."""
        now = self.store.now()
        stamp = iso(now)
        fresh_after = iso(now - self.claim_lease)
        waited_out = time.monotonic() - waiting_since >= self.claim_lease.total_seconds()
        claim_id = self.store.clock.new_id("clm")
        key = execution_key(proposal.id)

        def live(held: ClaimRow | None) -> bool:
            stale = held is not None and (held.claimed_at is None or held.claimed_at <= fresh_after)
            return held is not None and not (stale or waited_out)

        def claimed(conn: Conn) -> ClaimRow | None:
            return approved_claim_sql(conn, proposal.id)

        if proposal.status == "approved" and live(await self.store.db.read(claimed)):
            return None  # another approval is running it: wait without taking the writer

        def work(conn: Conn) -> Claim | None:
            row = claim_pending_sql(
                conn, proposal.id, user_id=user_id, key=key, claim_id=claim_id, now=stamp
            )
            if row is not None:
                mark_step_sql(conn, proposal.iteration_id, proposal.id, proposal_status="approved")
                return _claim_of(row)
            held = claimed(conn)
            if held is None or live(held):
                return None  # decided or expired meanwhile (look again), or claimed and live
            # Take over the crashed (or overdue) run: same executor, same key, new claim token.
            row = take_over_claim_sql(
                conn, proposal.id, claim_id=claim_id, now=stamp, held_claim_id=held.claim_id
            )
            return _claim_of(row) if row is not None else None

        return await self.store.db.write(work)

    async def _run(self, proposal: Proposal, claim: Claim) -> Decision:
        outcome = await self.pipeline.invoke(
            proposal.tool,
            json.loads(proposal.arguments_json),
            CallContext(
                user_id=claim.executor_id,
                space=proposal.space_id,
                invoker="user",
                idempotency_key=claim.key,
            ),
        )
        decided = await self._record(proposal, outcome)
        return Decision(decided, outcome)

    async def _record(self, proposal: Proposal, outcome: Outcome) -> Proposal:
        """Record the run on a still-claimed proposal; when another approval recorded it first
        (it took over this claim), that record stands and is returned."""
        result = dump_json(outcome.public())

        def work(conn: Conn) -> Proposal:
            if outcome.status == "denied":
                # Nothing ran: back to pending, so it can be approved once the policy allows.
                if reopen_denied_sql(conn, proposal.id, result=result):
                    mark_step_sql(
                        conn, proposal.iteration_id, proposal.id, proposal_status="pending"
                    )
            else:
                status = "executed" if outcome.ok else "failed"
                if record_run_sql(conn, proposal.id, status=status, result=result):
                    mark_step_sql(
                        conn,
                        proposal.iteration_id,
                        proposal.id,
                        proposal_status=status,
                        status=status,
                        request_id=outcome.request_id,
                    )
                    settle_iteration_sql(conn, proposal.iteration_id)
            return proposal_sql(conn, proposal.id)

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

        def work(conn: Conn) -> Proposal:
            if not reject_sql(conn, proposal.id, user_id=user_id, now=stamp, result=result):
                raise ConflictError(f"proposal {proposal.id} was decided meanwhile")
            mark_step_sql(conn, proposal.iteration_id, proposal.id, proposal_status="rejected")
            settle_iteration_sql(conn, proposal.iteration_id)
            return proposal_sql(conn, proposal.id)

        decided = await self.store.db.write(work)
        return Decision(decided)


def _claim_of(row: ClaimRow) -> Claim:
    return Claim(
        executor_id=row.decided_by,
        key=row.exec_key,
        claim_id=row.claim_id,
        claimed_at=row.claimed_at,
    )
