"""The SQL of staging and deciding proposals (`missions.proposals`).

Every function runs on the connection of the caller's unit: the service decides what commits
together (a claim and its plan step, a recorded run and the iteration it settles)."""

from __future__ import annotations

from dataclasses import dataclass

from missions.models import Proposal
from tool_registry.store.connection import Conn, Row


@dataclass(frozen=True)
class ClaimRow:
    """Who approved a proposal, the idempotency key its call runs under, and the claim on the
    run (a token that changes with every claim, and when it was taken)."""

    decided_by: str
    exec_key: str
    claim_id: str | None
    claimed_at: str | None


def _claim_row(row: Row | None) -> ClaimRow | None:
    if row is None:
        return None
    return ClaimRow(row["decided_by"], row["exec_key"], row["claim_id"], row["claimed_at"])


def proposal_sql(conn: Conn, proposal_id: str) -> Proposal:
    """A proposal the caller knows exists (it just wrote or found it): internal, by id."""
    return Proposal.from_row(
        conn.execute("SELECT * FROM proposals WHERE id = ?", (proposal_id,)).fetchone()
    )


def proposal_by_call_key_sql(conn: Conn, call_key: str) -> Proposal | None:
    row = conn.execute("SELECT * FROM proposals WHERE call_key = ?", (call_key,)).fetchone()
    return None if row is None else Proposal.from_row(row)


def move_proposal_sql(conn: Conn, proposal_id: str, *, iteration_id: str, call_id: str) -> None:
    """Hand a proposal over to a later iteration (a re-run of the same run)."""
    conn.execute(
        "UPDATE proposals SET iteration_id = ?, call_id = ? WHERE id = ?",
        (iteration_id, call_id, proposal_id),
    )


def insert_proposal_sql(
    conn: Conn,
    *,
    proposal_id: str,
    iteration_id: str,
    mission_id: str,
    space_id: str,
    agent_id: str,
    call_id: str,
    tool: str,
    arguments: str,
    rationale: str,
    reason: str,
    fingerprint: str,
    call_key: str | None,
    created_at: str,
    expires_at: str,
) -> None:
    """A new `pending` proposal."""
    conn.execute(
        "INSERT INTO proposals (id, iteration_id, mission_id, space_id, agent_id, call_id, "
        "tool, arguments, rationale, reason, fingerprint, call_key, status, created_at, "
        "expires_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,'pending',?,?)",
        (
            proposal_id,
            iteration_id,
            mission_id,
            space_id,
            agent_id,
            call_id,
            tool,
            arguments,
            rationale,
            reason,
            fingerprint,
            call_key,
            created_at,
            expires_at,
        ),
    )


def approved_claim_sql(conn: Conn, proposal_id: str) -> ClaimRow | None:
    """The claim on an `approved` proposal; None when it is not (or no longer) approved."""
    return _claim_row(
        conn.execute(
            "SELECT decided_by, exec_key, claim_id, claimed_at FROM proposals "
            "WHERE id = ? AND status = 'approved'",
            (proposal_id,),
        ).fetchone()
    )


def claim_pending_sql(
    conn: Conn,
    proposal_id: str,
    *,
    user_id: str,
    key: str,
    claim_id: str,
    now: str,
) -> ClaimRow | None:
    """Approve a `pending`, unexpired proposal and claim its run, in one conditional UPDATE;
    None when it was not pending (or had expired)."""
    return _claim_row(
        conn.execute(
            "UPDATE proposals SET status = 'approved', decided_by = ?, decided_at = ?, "
            "exec_key = ?, claim_id = ?, claimed_at = ? "
            "WHERE id = ? AND status = 'pending' AND expires_at > ? "
            "RETURNING decided_by, exec_key, claim_id, claimed_at",
            (user_id, now, key, claim_id, now, proposal_id, now),
        ).fetchone()
    )


def take_over_claim_sql(
    conn: Conn,
    proposal_id: str,
    *,
    claim_id: str,
    now: str,
    held_claim_id: str | None,
) -> ClaimRow | None:
    """Replace the claim `held_claim_id` on an approved proposal by a new one; None when that
    claim is no longer the one held."""
    return _claim_row(
        conn.execute(
            "UPDATE proposals SET claim_id = ?, claimed_at = ? "
            "WHERE id = ? AND status = 'approved' "
            "AND (claim_id = ? OR (claim_id IS NULL AND CAST(? AS TEXT) IS NULL)) "
            "RETURNING decided_by, exec_key, claim_id, claimed_at",
            (claim_id, now, proposal_id, held_claim_id, held_claim_id),
        ).fetchone()
    )


def reopen_denied_sql(conn: Conn, proposal_id: str, *, result: str) -> bool:
    """An approved proposal whose call the gate denied goes back to `pending` (with the denial
    as its result); False when it was not approved any more."""
    cur = conn.execute(
        "UPDATE proposals SET status = 'pending', decided_by = NULL, "
        "decided_at = NULL, exec_key = NULL, claim_id = NULL, claimed_at = NULL, "
        "result = ? WHERE id = ? AND status = 'approved'",
        (result, proposal_id),
    )
    return bool(cur.rowcount == 1)


def record_run_sql(conn: Conn, proposal_id: str, *, status: str, result: str) -> bool:
    """Record the run of an approved proposal (`executed` or `failed`); False when it was not
    approved any more."""
    cur = conn.execute(
        "UPDATE proposals SET status = ?, result = ? WHERE id = ? AND status = 'approved'",
        (status, result, proposal_id),
    )
    return bool(cur.rowcount == 1)


def reject_sql(
    conn: Conn,
    proposal_id: str,
    *,
    user_id: str,
    now: str,
    result: str | None,
) -> bool:
    """Reject a pending proposal (`result`, when given, replaces its result); False when it
    was not pending any more."""
    cur = conn.execute(
        "UPDATE proposals SET status = 'rejected', decided_by = ?, decided_at = ?, "
        "result = COALESCE(?, result) WHERE id = ? AND status = 'pending'",
        (user_id, now, result, proposal_id),
    )
    return bool(cur.rowcount == 1)
