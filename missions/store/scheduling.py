"""The SQL of the scheduling transactions (`missions.scheduler`): select due missions, take and
release leases, start, recover and finish iterations, record skips and the next run.

Every function runs on the connection of the scheduler's unit: the scheduler decides what
commits together and keeps the rules (when a lease is free, which window a run belongs to,
backoff). Mission rows are returned as they are stored, the shape `Mission.from_row` reads.
Row locks and the lease fence are in `missions.store.fencing`."""

from __future__ import annotations

from typing import Any

from missions.models import Agent, Mission
from missions.store import MISSION_SELECT
from missions.store.fencing import LockMode, row_lock
from tool_registry.store.accounts import Space, space_from_row
from tool_registry.store.connection import Conn, Row

# -- selection -------------------------------------------------------------------------------


def due_missions_sql(conn: Conn, now: str, limit: int) -> list[tuple[str, str]]:
    """(id, next run) of active missions due at `now`, in due order (next run, then id)."""
    rows = conn.execute(
        "SELECT id, next_run_at FROM missions WHERE state = 'active' "
        "AND next_run_at <= ? ORDER BY next_run_at, id LIMIT ?",
        (now, limit),
    ).fetchall()
    return [(r["id"], r["next_run_at"]) for r in rows]


def due_batch_sql(conn: Conn, due: str, *, after: tuple[str, str], limit: int) -> list[Row]:
    """The next `limit` active missions due at `due`, in due order after the position `after`
    (next run, id), each locked for the unit; on PostgreSQL rows another claim holds are
    skipped (it is deciding on them)."""
    rows: list[Row] = conn.execute(
        "SELECT * FROM missions WHERE state = 'active' "  # noqa: S608 - fixed clauses, bound values
        "AND next_run_at <= ? AND (next_run_at, id) > (?, ?) "
        "ORDER BY next_run_at, id LIMIT ?" + row_lock(conn, "skip"),
        (due, after[0], after[1], limit),
    ).fetchall()
    return rows


def mission_in_space_sql(conn: Conn, mission_id: str, space_id: str) -> Row | None:
    """The mission's row, if it lives in the space, locked for the unit (waiting for a claim
    that holds it)."""
    row: Row | None = conn.execute(
        "SELECT * FROM missions WHERE id = ? AND space_id = ?" + row_lock(conn, "wait"),  # noqa: S608 - fixed clauses, bound values
        (mission_id, space_id),
    ).fetchone()
    return row


def lock_mission_sql(conn: Conn, mission_id: str) -> Row | None:
    """The mission's row locked for the unit, or None when another unit holds it (PostgreSQL;
    SQLite's writer is alone, so always the row)."""
    sql = "SELECT * FROM missions WHERE id = ?" + row_lock(conn, "skip")  # noqa: S608
    row: Row | None = conn.execute(sql, (mission_id,)).fetchone()
    return row


def mission_row_sql(conn: Conn, mission_id: str) -> Row | None:
    """The mission's row by id (internal: the scheduler's own mission)."""
    row: Row | None = conn.execute("SELECT * FROM missions WHERE id = ?", (mission_id,)).fetchone()
    return row


def agent_sql(conn: Conn, agent_id: str, *, lock: LockMode | None = None) -> Agent | None:
    """The agent by id (internal: the agent of a mission being claimed). With `lock`, its row is
    held for the unit, so its running count stays exact while the claim decides; None also when
    `lock` is `skip` and another claim holds it."""
    lock_clause = row_lock(conn, lock) if lock is not None else ""
    row = conn.execute("SELECT * FROM agents WHERE id = ?" + lock_clause, (agent_id,)).fetchone()  # noqa: S608 - fixed clauses, bound values
    return None if row is None else Agent.from_row(row)


# -- skips -----------------------------------------------------------------------------------


def record_skip_sql(
    conn: Conn,
    mission_id: str,
    *,
    window: str,
    reason: str,
    detail: str | None,
    now: str,
) -> None:
    """Count one skip of the mission's window for `reason` (one row per window and reason)."""
    conn.execute(
        "INSERT INTO mission_skips (mission_id, window_at, reason, detail, first_at, "
        "last_at, count) VALUES (?,?,?,?,?,?,1) ON CONFLICT (mission_id, window_at, reason) "
        "DO UPDATE SET count = mission_skips.count + 1, last_at = excluded.last_at, "
        "detail = excluded.detail",
        (mission_id, window, reason, detail, now, now),
    )


def mark_skipped_sql(conn: Conn, mission_id: str, *, reason: str, now: str) -> None:
    """Note why the mission did not run now; it stays due."""
    conn.execute(
        "UPDATE missions SET skip_reason = ?, skipped_at = ? WHERE id = ?",
        (reason, now, mission_id),
    )


def skip_window_sql(
    conn: Conn, mission_id: str, *, next_at: str | None, reason: str, now: str
) -> None:
    """Move the mission past its window to `next_at` (also its new window), noting why."""
    conn.execute(
        "UPDATE missions SET next_run_at = ?, window_at = ?, skip_reason = ?, "
        "skipped_at = ?, updated_at = ? WHERE id = ?",
        (next_at, next_at, reason, now, now, mission_id),
    )


# -- leases and iterations -------------------------------------------------------------------


def window_attempts_sql(conn: Conn, mission_id: str, window: str) -> int:
    """How many iterations the mission has started for this window."""
    return int(
        conn.execute(
            "SELECT COUNT(*) AS n FROM iterations WHERE mission_id = ? AND window_at = ?",
            (mission_id, window),
        ).fetchone()["n"]
    )


def take_lease_sql(
    conn: Conn,
    mission_id: str,
    *,
    owner: str,
    expires: str,
    now: str,
    seen_owner: str | None,
) -> int | None:
    """Take the mission's lease for `owner` until `expires`, if it is free, expired, already
    ours, or still held by `seen_owner` (the holder the caller found dead), with the next
    epoch; returns that epoch, None when the lease was not free."""
    row = conn.execute(
        "UPDATE missions SET lease_owner = ?, lease_expires_at = ?, "
        "lease_epoch = lease_epoch + 1 WHERE id = ? "
        "AND (lease_owner IS NULL OR lease_owner = ? OR lease_expires_at <= ? "
        "OR lease_owner = ?) RETURNING lease_epoch",
        (owner, expires, mission_id, owner, now, seen_owner),
    ).fetchone()
    return None if row is None else int(row["lease_epoch"])


def start_iteration_sql(
    conn: Conn,
    *,
    iteration_id: str,
    mission_id: str,
    space_id: str,
    agent_id: str,
    trigger: str,
    window: str | None,
    run_key: str,
    attempt: int,
    runner: str,
    epoch: int,
    now: str,
) -> None:
    """A new iteration, `running` in phase `starting`, under lease epoch `epoch`."""
    conn.execute(
        "INSERT INTO iterations (id, mission_id, space_id, agent_id, trigger, window_at, "
        "run_key, attempt, runner, lease_epoch, status, phase, started_at) "
        "VALUES (?,?,?,?,?,?,?,?,?,?,'running','starting',?)",
        (
            iteration_id,
            mission_id,
            space_id,
            agent_id,
            trigger,
            window,
            run_key,
            attempt,
            runner,
            epoch,
            now,
        ),
    )


def claimed_mission_sql(conn: Conn, mission_id: str) -> Mission:
    """The mission just claimed, with its agent's name."""
    return Mission.from_row(
        conn.execute(MISSION_SELECT + "WHERE m.id = ?", (mission_id,)).fetchone()
    )


def claimed_space_sql(conn: Conn, space_id: str) -> Space:
    """The space of the mission just claimed."""
    return space_from_row(conn.execute("SELECT * FROM spaces WHERE id = ?", (space_id,)).fetchone())


def running_iterations_sql(conn: Conn, mission_id: str | None = None) -> list[Row]:
    """Every `running` iteration (of one mission, when given) with its runner, phase, trigger
    and lease epoch (`iteration_epoch`), and its mission's lease (`lease_owner`,
    `lease_expires_at`, `lease_epoch`)."""
    sql = (
        "SELECT i.id, i.mission_id, i.runner, i.phase, i.trigger, "
        "i.lease_epoch AS iteration_epoch, m.lease_owner, m.lease_expires_at, m.lease_epoch "
        "FROM iterations i JOIN missions m ON m.id = i.mission_id WHERE i.status = 'running'"
    )
    params: tuple[Any, ...] = ()
    if mission_id is not None:
        sql += " AND i.mission_id = ?"
        params = (mission_id,)
    rows: list[Row] = conn.execute(sql + " ORDER BY i.started_at, i.id", params).fetchall()
    return rows


def fail_iteration_sql(
    conn: Conn, iteration_id: str, *, error_name: str, message: str, now: str
) -> bool:
    """Mark a still-running iteration `failed` (its phase kept as the error's phase); False
    when it was not running any more."""
    cur = conn.execute(
        "UPDATE iterations SET status = 'failed', error_name = ?, error_message = ?, "
        "error_phase = phase, finished_at = ? WHERE id = ? AND status = 'running'",
        (error_name, message, now, iteration_id),
    )
    return bool(cur.rowcount == 1)


def fail_runner_iterations_sql(
    conn: Conn, runner: str, *, error_name: str, message: str, now: str
) -> None:
    """Mark every iteration `runner` is still running under its lease `failed` (those whose
    mission moved on to another epoch are someone else's now and stay as they are)."""
    conn.execute(
        "UPDATE iterations SET status = 'failed', error_name = ?, error_message = ?, "
        "error_phase = phase, finished_at = ? WHERE runner = ? AND status = 'running' "
        "AND EXISTS (SELECT 1 FROM missions m WHERE m.id = iterations.mission_id "
        "AND m.lease_owner = iterations.runner AND m.lease_epoch = iterations.lease_epoch)",
        (error_name, message, now, runner),
    )


def release_lease_sql(conn: Conn, mission_id: str, *, holder: str) -> None:
    """Take the mission's lease away from `holder` (recovery), if it still holds it: released,
    and the epoch moves on, so none of the holder's writes can commit any more."""
    conn.execute(
        "UPDATE missions SET lease_owner = NULL, lease_expires_at = NULL, "
        "lease_epoch = lease_epoch + 1 WHERE id = ? AND lease_owner = ?",
        (mission_id, holder),
    )


def release_leases_of_sql(conn: Conn, owner: str) -> int:
    """Release every lease `owner` holds; returns how many."""
    cur = conn.execute(
        "UPDATE missions SET lease_owner = NULL, lease_expires_at = NULL WHERE lease_owner = ?",
        (owner,),
    )
    return int(cur.rowcount)


def renew_leases_sql(conn: Conn, owner: str, *, expires: str) -> None:
    """Extend every lease `owner` holds to `expires` (a lease taken over is not `owner`'s any
    more, so it is not renewed)."""
    conn.execute(
        "UPDATE missions SET lease_expires_at = ? WHERE lease_owner = ?",
        (expires, owner),
    )


def cancel_requested_of_sql(conn: Conn, runner: str) -> set[str]:
    """Ids of the iterations `runner` is running that someone asked to cancel."""
    rows = conn.execute(
        "SELECT id FROM iterations WHERE status = 'running' AND runner = ? "
        "AND cancel_requested = 1",
        (runner,),
    ).fetchall()
    return {r["id"] for r in rows}


# -- failures and the next run ---------------------------------------------------------------


def count_failure_sql(conn: Conn, mission_id: str, *, failures: int, error: str, now: str) -> None:
    """Record the mission's failure count and last error; its next run stays as it is."""
    conn.execute(
        "UPDATE missions SET failures = ?, last_error = ?, updated_at = ? WHERE id = ?",
        (failures, error, now, mission_id),
    )


def back_off_sql(
    conn: Conn,
    mission_id: str,
    *,
    failures: int,
    backoff_until: str,
    error: str,
    next_at: str,
    window_at: str | None,
    now: str,
) -> None:
    """Record a failure and move the mission's next run to `next_at` (in window `window_at`)."""
    conn.execute(
        "UPDATE missions SET failures = ?, backoff_until = ?, last_error = ?, "
        "next_run_at = ?, window_at = ?, updated_at = ? WHERE id = ?",
        (failures, backoff_until, error, next_at, window_at, now, mission_id),
    )


def finish_iteration_sql(
    conn: Conn,
    iteration_id: str,
    *,
    status: str,
    phase: str,
    round: int,
    plan: str,
    summary: str | None,
    stop_reason: str | None,
    usage: tuple[int, int, int],
    transcript: str | None,
    error_name: str | None,
    error_message: str | None,
    error_phase: str | None,
    now: str,
) -> bool:
    """Record how a still-running iteration ended (`usage`: input, output and total tokens);
    False when it is not running any more (someone else recovered it)."""
    cur = conn.execute(
        "UPDATE iterations SET status = ?, phase = ?, round = ?, plan = ?, summary = ?, "
        "stop_reason = ?, input_tokens = ?, output_tokens = ?, total_tokens = ?, "
        "transcript = ?, error_name = ?, error_message = ?, error_phase = ?, "
        "finished_at = ? WHERE id = ? AND status = 'running'",
        (
            status,
            phase,
            round,
            plan,
            summary,
            stop_reason,
            *usage,
            transcript,
            error_name,
            error_message,
            error_phase,
            now,
            iteration_id,
        ),
    )
    return bool(cur.rowcount == 1)


def release_after_run_sql(conn: Conn, mission_id: str, *, status: str, now: str) -> None:
    """Release the mission's lease after a run and record the run's time and status (the
    caller holds the lease: `fence_sql` passed in this unit)."""
    conn.execute(
        "UPDATE missions SET lease_owner = NULL, lease_expires_at = NULL, "
        "last_run_at = ?, last_status = ?, updated_at = ? WHERE id = ?",
        (now, status, now, mission_id),
    )


def schedule_next_sql(conn: Conn, mission_id: str, *, next_at: str | None) -> None:
    """After a successful run: clear failures, backoff, error and skip; next run (and window)
    at `next_at` (None: no next run)."""
    conn.execute(
        "UPDATE missions SET failures = 0, backoff_until = NULL, last_error = NULL, "
        "skip_reason = NULL, next_run_at = ?, window_at = ? WHERE id = ?",
        (next_at, next_at, mission_id),
    )
