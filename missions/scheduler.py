"""Scheduling transactions: claim due missions, recover interrupted iterations, finish an
iteration and compute the next run. Each is one write unit, so concurrent daemons (threads or
processes) on one database see each other's claims: on SQLite a `BEGIN IMMEDIATE` transaction
(one writer at a time); on PostgreSQL a claim is not serialised with other writes but holds the
rows it decides on (`FOR UPDATE SKIP LOCKED` on missions and agents, so several daemons claim
side by side, each passing over what another one is deciding on).

Claim (per tick, as many as this daemon has free slots):

1. recover: a `running` iteration whose lease expired, was released, was taken over, or whose
   holder process is gone is marked `failed` (error `Interrupted`, phase kept) and its lease
   released; the mission keeps its due time, so it runs again at once (the re-run uses the same
   run key, so writes the first run made are replayed, not repeated). From the second
   consecutive interruption on, the retry is backed off like any failure;
2. select due missions (`state = 'active' AND next_run_at <= now`, the partial index
   `missions_due`) in due order, in batches, skipping those with a live lease;
3. per mission, check its agent: paused, archived, budget 0, or out of its rolling-24 h token
   budget -> the window is skipped (reason recorded in `mission_skips`, next run = the next
   cadence time); at its concurrency limit -> skipped for now (recorded) and left due;
4. otherwise take the lease (its epoch goes up: `missions.leases`) and insert the iteration
   (`running`, phase `starting`, with that epoch) in the same transaction: the agent's running
   count is exact across daemons (the agent's row is held while the claim decides).

Finish: the iteration's record and the mission's next run (success: next cadence time after
now, so a missed window runs once; failure: exponential backoff within the window; shutdown:
due again at once; none when the mission was completed or archived while it ran) and the lease
release are one transaction, fenced: it commits only while the mission still carries the
claim's lease (`fence_sql`); otherwise nothing of it is written.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import structlog

from missions.cadence import next_run
from missions.leases import Lease, LeaseLost, holder_is_dead
from missions.models import RETIRED_MISSION_STATES, Agent, Mission, PlanStep
from missions.settings import MissionSettings
from missions.store import (
    BUDGET_WINDOW,
    plan_json,
    running_count_sql,
    tokens_used_sql,
)
from missions.store.fencing import LockMode, fence_sql
from missions.store.scheduling import (
    agent_sql,
    back_off_sql,
    cancel_requested_of_sql,
    claimed_mission_sql,
    claimed_space_sql,
    count_failure_sql,
    due_batch_sql,
    due_missions_sql,
    fail_iteration_sql,
    fail_runner_iterations_sql,
    finish_iteration_sql,
    lock_mission_sql,
    mark_skipped_sql,
    mission_in_space_sql,
    mission_row_sql,
    record_skip_sql,
    release_after_run_sql,
    release_lease_sql,
    release_leases_of_sql,
    renew_leases_sql,
    running_iterations_sql,
    schedule_next_sql,
    skip_window_sql,
    start_iteration_sql,
    take_lease_sql,
    window_attempts_sql,
)
from tool_registry.clock import Clock, iso
from tool_registry.errors import ConflictError, NotFoundError
from tool_registry.store.accounts import Space
from tool_registry.store.connection import Conn, Row
from tool_registry.store.database import Database

log = structlog.get_logger("mana.missions.scheduler")

CLAIM_BATCH = 200
INTERRUPTED = "Interrupted"
SHUTDOWN = "DaemonShutdown"


@dataclass(frozen=True)
class Claim:
    """A mission this process may run now: the lease is ours and the iteration row exists."""

    mission: Mission
    agent: Agent
    space: Space
    iteration_id: str
    run_key: str
    trigger: str
    window_at: str | None
    attempt: int
    tokens_used: int
    owner: str
    epoch: int

    @property
    def lease(self) -> Lease:
        """The lease every write of this iteration is fenced by."""
        return Lease(self.mission.id, self.owner, self.epoch)


@dataclass(frozen=True)
class Skipped:
    mission_id: str
    reason: str
    detail: str | None = None


@dataclass
class ClaimReport:
    claimed: list[Claim] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    recovered: list[str] = field(default_factory=list)
    more_due: bool = False


@dataclass(frozen=True)
class IterationEnd:
    """How an iteration ended, as the runner reports it to `finish`."""

    status: str
    phase: str
    round: int
    plan: tuple[PlanStep, ...]
    summary: str | None
    stop_reason: str | None
    usage: tuple[int, int, int]
    transcript: str | None
    error_name: str | None = None
    error_message: str | None = None
    error_phase: str | None = None
    retry_now: bool = False  # interrupted by a shutdown: due again at once, no backoff


@dataclass
class _AgentSlot:
    agent: Agent
    running: int
    used: int | None


def _lease_free(row: Row, now: str) -> bool:
    owner = row["lease_owner"]
    if owner is None:
        return True
    return bool(row["lease_expires_at"] <= now) or holder_is_dead(owner)


class Scheduler:
    """Claims and finishes iterations for one lease owner (a daemon or a CLI run)."""

    def __init__(
        self, db: Database, clock: Clock, settings: MissionSettings, *, owner: str
    ) -> None:
        self.db = db
        self.clock = clock
        self.settings = settings
        self.owner = owner

    # -- selection -----------------------------------------------------------------------------

    async def due(self, *, limit: int = 100, now: datetime | None = None) -> list[tuple[str, str]]:
        """(mission id, next run) of due active missions, earliest first: the tick's indexed
        selection, without claiming anything."""
        stamp = iso(now or self.clock.now())
        return await self.db.read(lambda c: due_missions_sql(c, stamp, limit))

    # -- claim ---------------------------------------------------------------------------------

    async def claim_due(
        self,
        limit: int,
        *,
        own: frozenset[str] = frozenset(),
        as_of: datetime | None = None,
    ) -> ClaimReport:
        """Recover interrupted iterations, then claim up to `limit` missions due at `as_of`
        (default now). `own` is the set of iteration ids this process is running right now
        (never recovered)."""
        now = self.clock.now()
        due_at = min(as_of, now) if as_of is not None else now
        return await self.db.write(
            lambda conn: self._claim_due(conn, now, due_at, limit, own), serialised=False
        )

    def _claim_due(
        self,
        conn: Conn,
        now: datetime,
        due_at: datetime,
        limit: int,
        own: frozenset[str],
    ) -> ClaimReport:
        report = ClaimReport(recovered=self._recover(conn, now, own))
        stamp = iso(now)
        due_stamp = iso(due_at)
        slots: dict[str, _AgentSlot | None] = {}
        last_at, last_id = "", ""
        # A batch holds (PostgreSQL) no more due rows than this claim can take, plus one to see
        # whether more are due, so daemons claiming at the same moment pass over few of each
        # other's rows; rows it cannot take (live leases, skips) just lead to the next batch.
        batch = min(CLAIM_BATCH, limit + 1)
        while True:
            rows = due_batch_sql(conn, due_stamp, after=(last_at, last_id), limit=batch)
            for row in rows:
                last_at, last_id = row["next_run_at"], row["id"]
                if len(report.claimed) >= limit:
                    report.more_due = True
                    return report
                if not _lease_free(row, stamp):
                    continue
                slot = self._slot(conn, slots, row["agent_id"], now)
                if slot is None:
                    continue
                reason = self._skip_reason(slot)
                if reason is not None:
                    self._record_skip(conn, row, reason, now)
                    report.skipped.append(Skipped(row["id"], *reason))
                    continue
                report.claimed.append(self._take(conn, row, slot, now, trigger="schedule"))
                slot.running += 1
            if len(rows) < batch:
                return report

    def _slot(
        self,
        conn: Conn,
        slots: dict[str, _AgentSlot | None],
        agent_id: str,
        now: datetime,
        *,
        lock: LockMode = "skip",
    ) -> _AgentSlot | None:
        """The agent's slot, its row held for the unit. None when the agent is gone or (lock
        `skip`) another claim holds it: its missions wait for a later tick."""
        if agent_id in slots:
            return slots[agent_id]
        agent = agent_sql(conn, agent_id, lock=lock)
        slot = None
        if agent is not None:
            used = None
            if agent.max_tokens_per_day:
                used = tokens_used_sql(conn, agent_id, iso(now - BUDGET_WINDOW))
            slot = _AgentSlot(agent, running_count_sql(conn, agent_id), used)
        slots[agent_id] = slot
        return slot

    @staticmethod
    def _skip_reason(slot: _AgentSlot) -> tuple[str, str | None] | None:
        agent = slot.agent
        if agent.state == "archived":
            return ("agent-archived", f"agent {agent.name} is archived")
        if agent.state == "paused":
            return ("agent-paused", f"agent {agent.name} is paused")
        if agent.max_tokens_per_day == 0:
            return ("agent-paused", f"agent {agent.name} has a token budget of 0")
        budget = agent.max_tokens_per_day
        if budget is not None and slot.used is not None and slot.used >= budget:
            return ("out-of-budget", f"{slot.used} of {budget} tokens used in the last 24 h")
        if slot.running >= agent.max_concurrent:
            return (
                "agent-busy",
                f"agent {agent.name} runs {slot.running} of {agent.max_concurrent} missions",
            )
        return None

    def _record_skip(
        self,
        conn: Conn,
        row: Row,
        reason: tuple[str, str | None],
        now: datetime,
    ) -> None:
        code, detail = reason
        stamp = iso(now)
        window = row["window_at"] or row["next_run_at"]
        record_skip_sql(conn, row["id"], window=window, reason=code, detail=detail, now=stamp)
        if code == "agent-busy":
            # The run only waits for a free slot: the mission stays due.
            mark_skipped_sql(conn, row["id"], reason=code, now=stamp)
            return
        # The agent cannot run this window at all: skip to the next cadence time.
        mission = Mission.from_row(row)
        upcoming = next_run(mission.cadence, mission.window or mission.next_run, now)
        text = iso(upcoming) if upcoming else None
        skip_window_sql(conn, row["id"], next_at=text, reason=code, now=stamp)

    def _take(
        self,
        conn: Conn,
        row: Row,
        slot: _AgentSlot,
        now: datetime,
        *,
        trigger: str,
    ) -> Claim:
        stamp = iso(now)
        expires = iso(now + self.settings.lease)
        mission_id = row["id"]
        iteration_id = self.clock.new_id("itr")
        if trigger == "schedule":
            window = row["window_at"] or row["next_run_at"]
            run_key = f"{mission_id}@{window}"
            attempt = window_attempts_sql(conn, mission_id, window) + 1
        else:
            window = None
            run_key = f"{mission_id}@run-now:{iteration_id}"
            attempt = 1
        epoch = take_lease_sql(
            conn,
            mission_id,
            owner=self.owner,
            expires=expires,
            now=stamp,
            seen_owner=row["lease_owner"],
        )
        if epoch is None:  # pragma: no cover - we hold the mission's row and checked the lease
            raise ConflictError(f"mission {mission_id} is already claimed")
        start_iteration_sql(
            conn,
            iteration_id=iteration_id,
            mission_id=mission_id,
            space_id=row["space_id"],
            agent_id=row["agent_id"],
            trigger=trigger,
            window=window,
            run_key=run_key,
            attempt=attempt,
            runner=self.owner,
            epoch=epoch,
            now=stamp,
        )
        mission = claimed_mission_sql(conn, mission_id)
        space = claimed_space_sql(conn, row["space_id"])
        return Claim(
            mission=mission,
            agent=slot.agent,
            space=space,
            iteration_id=iteration_id,
            run_key=run_key,
            trigger=trigger,
            window_at=window,
            attempt=attempt,
            tokens_used=slot.used
            if slot.used is not None
            else tokens_used_sql(conn, row["agent_id"], iso(now - BUDGET_WINDOW)),
            owner=self.owner,
            epoch=epoch,
        )

    async def claim_now(self, space_id: str, mission_id: str) -> Claim:
        """Claim one mission for an immediate run (`run-now`), whatever its schedule. Refuses
        when it is running elsewhere or its agent cannot run (with the reason)."""
        now = self.clock.now()

        def work(conn: Conn) -> Claim:
            # Hold the mission's row first (waiting for a claim deciding on it), then recover
            # and read it as it is now.
            if mission_in_space_sql(conn, mission_id, space_id) is None:
                raise NotFoundError(f"no mission {mission_id!r} in this space")
            self._recover(conn, now, frozenset(), mission_id=mission_id)
            row = mission_in_space_sql(conn, mission_id, space_id)
            if row is None:  # pragma: no cover - we hold the row
                raise NotFoundError(f"no mission {mission_id!r} in this space")
            if row["state"] == "archived":
                raise ConflictError("the mission is archived")
            if not _lease_free(row, iso(now)):
                raise ConflictError(
                    "the mission is running right now; wait for it or `mana missions cancel` it"
                )
            slot = self._slot(conn, {}, row["agent_id"], now, lock="wait")
            if slot is None:
                raise NotFoundError("the mission's agent no longer exists")
            reason = self._skip_reason(slot)
            if reason is not None:
                raise ConflictError(f"cannot run now ({reason[0]}): {reason[1]}")
            return self._take(conn, row, slot, now, trigger="manual")

        return await self.db.write(work)

    # -- recovery ------------------------------------------------------------------------------

    async def recover(self, *, own: frozenset[str] = frozenset()) -> list[str]:
        now = self.clock.now()
        return await self.db.write(lambda conn: self._recover(conn, now, own))

    def _recover(
        self,
        conn: Conn,
        now: datetime,
        own: frozenset[str],
        *,
        mission_id: str | None = None,
    ) -> list[str]:
        stamp = iso(now)
        recovered = []
        for row in running_iterations_sql(conn, mission_id):
            if row["id"] in own:
                continue
            if not self._interrupted(row, row, stamp):
                continue
            # Decide on the mission's row as it is now, held for the unit (another daemon's
            # claim or the holder's own fenced write may hold it: then it is theirs to settle).
            mission = lock_mission_sql(conn, row["mission_id"])
            if mission is None or not self._interrupted(row, mission, stamp):
                continue
            runner = row["runner"]
            failed = fail_iteration_sql(
                conn,
                row["id"],
                error_name=INTERRUPTED,
                message=f"the process running this iteration ({runner}) stopped before it finished",
                now=stamp,
            )
            if not failed:
                continue  # it ended meanwhile
            if row["trigger"] == "schedule":
                self._after_failure(
                    conn, row["mission_id"], now, f"{INTERRUPTED} in {row['phase']}"
                )
            if mission["lease_owner"] == runner:
                release_lease_sql(conn, row["mission_id"], holder=runner)
            recovered.append(row["id"])
            log.warning(
                "recovered interrupted iteration",
                iteration=row["id"],
                mission=row["mission_id"],
                runner=runner,
                phase=row["phase"],
            )
        return recovered

    def _interrupted(self, iteration: Row, mission: Row, stamp: str) -> bool:
        """Whether a running iteration lost its lease: ours but not running here any more,
        released, taken over (another holder or epoch), expired, or its holder is dead."""
        runner, holder = iteration["runner"], mission["lease_owner"]
        return bool(
            runner == self.owner
            or holder is None
            or holder != runner
            or mission["lease_epoch"] != iteration["iteration_epoch"]
            or mission["lease_expires_at"] <= stamp
            or holder_is_dead(runner)
        )

    def _after_failure(self, conn: Conn, mission_id: str, now: datetime, error: str) -> None:
        """Count a failure; from the second one in a row (an interruption) or the first one (a
        failed run, see `finish`) the next attempt waits for the backoff."""
        row = mission_row_sql(conn, mission_id)
        assert row is not None  # the mission of an iteration that was running
        failures = row["failures"] + 1
        stamp = iso(now)
        if failures == 1 or row["state"] in RETIRED_MISSION_STATES:
            # A first interruption re-runs at once (same window, same run key); a mission
            # completed or archived meanwhile keeps no next run (nothing to back off).
            count_failure_sql(conn, mission_id, failures=failures, error=error, now=stamp)
            return
        self._backoff(conn, row, failures, now, error)

    def _backoff(
        self,
        conn: Conn,
        row: Row,
        failures: int,
        now: datetime,
        error: str,
    ) -> None:
        mission = Mission.from_row(row)
        retry_at = now + self.settings.backoff_after(failures)
        window = mission.window or mission.next_run or now
        upcoming = next_run(mission.cadence, window, now)
        if upcoming is None or retry_at < upcoming:
            next_at, window_at = retry_at, mission.window_at
        else:
            next_at, window_at = upcoming, iso(upcoming)
        back_off_sql(
            conn,
            mission.id,
            failures=failures,
            backoff_until=iso(retry_at),
            error=error,
            next_at=iso(next_at),
            window_at=window_at,
            now=iso(now),
        )

    # -- leases --------------------------------------------------------------------------------

    async def renew(self) -> set[str]:
        """Extend every lease this owner holds; returns the ids of its running iterations that
        someone asked to cancel."""
        now = self.clock.now()
        expires = iso(now + self.settings.lease)

        def work(conn: Conn) -> set[str]:
            renew_leases_sql(conn, self.owner, expires=expires)
            return cancel_requested_of_sql(conn, self.owner)

        return await self.db.write(work)

    async def release_all(self) -> int:
        """Shutdown: fail what this owner still runs (it will be re-run at once) and release
        every lease it holds."""
        now = self.clock.now()
        stamp = iso(now)

        def work(conn: Conn) -> int:
            fail_runner_iterations_sql(
                conn,
                self.owner,
                error_name=SHUTDOWN,
                message="the daemon shut down before the iteration finished",
                now=stamp,
            )
            return release_leases_of_sql(conn, self.owner)

        return await self.db.write(work)

    # -- finish --------------------------------------------------------------------------------

    async def finish(self, claim: Claim, end: IterationEnd) -> bool:
        """Record the iteration's end, schedule the mission's next run and release the lease,
        in one fenced transaction. False when the lease was taken from us meanwhile (recovered
        as interrupted, or claimed by another process); then nothing is changed."""
        now = self.clock.now()
        stamp = iso(now)
        error = f"{end.error_name}: {end.error_message}" if end.error_name else None

        def work(conn: Conn) -> bool:
            fence_sql(conn, claim.lease)
            finished = finish_iteration_sql(
                conn,
                claim.iteration_id,
                status=end.status,
                phase=end.phase,
                round=end.round,
                plan=plan_json(end.plan),
                summary=end.summary,
                stop_reason=end.stop_reason,
                usage=end.usage,
                transcript=end.transcript,
                error_name=end.error_name,
                error_message=end.error_message,
                error_phase=end.error_phase,
                now=stamp,
            )
            if not finished:
                return False
            row = mission_row_sql(conn, claim.mission.id)
            if row is None:  # pragma: no cover - the fence holds the mission's row
                return True
            release_after_run_sql(conn, claim.mission.id, status=end.status, now=stamp)
            if claim.trigger != "schedule":
                return True
            if row["state"] in RETIRED_MISSION_STATES:
                # Completed or archived while this iteration ran: it finished, and nothing new
                # is scheduled (the next run stays cleared).
                return True
            if end.retry_now:
                return True
            if end.status == "failed":
                self._backoff(conn, row, row["failures"] + 1, now, error or "failed")
                return True
            mission = Mission.from_row(row)
            window = mission.window or mission.next_run or now
            upcoming = next_run(mission.cadence, window, now)
            text = iso(upcoming) if upcoming else None
            schedule_next_sql(conn, claim.mission.id, next_at=text)
            return True

        try:
            return await self.db.write(work)
        except LeaseLost:
            # Taken over while it ran: the fence refused the whole unit, nothing was written.
            return False
