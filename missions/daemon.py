"""The mission runner daemon: `mana daemon [--once] [--tick 60s] [--concurrency N]`.

Each tick expires old proposals, recovers interrupted iterations, selects due missions (an
indexed query), claims as many as this process has free slots (leases in the database, so two
daemons never run one mission at once), records skipped ones with their reason, and starts the
claimed iterations concurrently. When a slot frees up and due work was left over, the next tick
starts early. A lease heartbeat renews this process's leases every third of the lease time and
picks up cancel requests.

`--once` runs every mission due at the start of the tick (at most `concurrency` at a time) and
returns. `serve()` runs until `request_stop()` (SIGTERM/SIGINT in the CLI): it stops claiming,
lets running iterations finish within the drain timeout, stops the rest (they are recorded
`failed` with error `DaemonShutdown`, phase kept, and are due again at once), then releases its
leases.

`/health` (JSON; 503 while stopping or when ticks stall) and `/metrics` (Prometheus text, the
daemon's own registry) are served on 127.0.0.1 by a small asyncio HTTP handler.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import structlog

from agent_loop.state import CancelFlag
from missions.metrics import MissionMetrics
from missions.models import Iteration
from missions.runner import SHUTDOWN_REASON, USER_CANCEL_REASON, MissionRunner
from missions.scheduler import Claim, ClaimReport, Scheduler
from missions.settings import DaemonSettings
from missions.store import MissionStore
from tool_registry.clock import Clock, iso

log = structlog.get_logger("mana.missions.daemon")

MAX_REQUEST_LINE = 4096
HTTP_READ_TIMEOUT = 5.0


@dataclass
class RunSummary:
    """What `run_once` did (also printed by `mana daemon --once`)."""

    claimed: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    recovered: int = 0
    expired_proposals: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    iterations: list[str] = field(default_factory=list)

    def add(self, report: ClaimReport) -> None:
        self.claimed += len(report.claimed)
        self.recovered += len(report.recovered)
        for skip in report.skipped:
            self.skipped[skip.reason] = self.skipped.get(skip.reason, 0) + 1

    def to_json(self) -> dict[str, Any]:
        return {
            "claimed": self.claimed,
            "skipped": self.skipped,
            "recovered": self.recovered,
            "expiredProposals": self.expired_proposals,
            "statuses": self.statuses,
            "iterations": self.iterations,
        }

    def text(self) -> str:
        skipped = ", ".join(f"{k} {v}" for k, v in sorted(self.skipped.items())) or "none"
        statuses = ", ".join(f"{k} {v}" for k, v in sorted(self.statuses.items())) or "none"
        return (
            f"ran {self.claimed} iteration(s) ({statuses}); skipped: {skipped}; "
            f"recovered interrupted: {self.recovered}; expired proposals: "
            f"{self.expired_proposals}"
        )


class Daemon:
    """Ticks, concurrency, leases, drain. Built by the composition root around a runner."""

    def __init__(
        self,
        runner: MissionRunner,
        settings: DaemonSettings,
        *,
        metrics: MissionMetrics,
        clock: Clock,
    ) -> None:
        self.runner = runner
        self.scheduler: Scheduler = runner.scheduler
        self.store: MissionStore = runner.store
        self.settings = settings
        self.metrics = metrics
        self.clock = clock
        self._running: dict[str, tuple[asyncio.Task[Iteration], CancelFlag]] = {}
        self._results: list[asyncio.Task[Iteration]] = []
        self._stopping = False
        self._stop_event: asyncio.Event | None = None
        self._wake: asyncio.Event | None = None
        self._backlog = False
        self.started_at = iso(clock.now())
        self.last_tick_at: str | None = None
        self._last_tick_monotonic: float | None = None
        self.ticks = 0
        self.http_port: int | None = None
        self._expired = 0

    @property
    def owner(self) -> str:
        return self.scheduler.owner

    @property
    def running(self) -> int:
        return len(self._running)

    @property
    def stopping(self) -> bool:
        return self._stopping

    def _events(self) -> tuple[asyncio.Event, asyncio.Event]:
        if self._stop_event is None or self._wake is None:
            self._stop_event, self._wake = asyncio.Event(), asyncio.Event()
        return self._stop_event, self._wake

    def request_stop(self) -> None:
        """Stop claiming and start draining (safe to call from a signal handler)."""
        if not self._stopping:
            log.info("daemon stopping", running=self.running)
        self._stopping = True
        stop, wake = self._events()
        stop.set()
        wake.set()

    # -- one tick ------------------------------------------------------------------------------

    async def tick(self, *, as_of: datetime | None = None, expire: bool = True) -> ClaimReport:
        """Expire proposals, recover, claim up to the free slots and start the claims."""
        started = time.perf_counter()
        expired = await self.store.expire_proposals() if expire else []
        free = 0 if self._stopping else self.settings.concurrency - len(self._running)
        report = await self.scheduler.claim_due(
            max(free, 0), own=frozenset(self._running), as_of=as_of
        )
        for claim in report.claimed:
            self._start(claim)
        self._backlog = report.more_due or any(s.reason == "agent-busy" for s in report.skipped)
        self.ticks += 1
        self.last_tick_at = iso(self.clock.now())
        self._last_tick_monotonic = time.monotonic()
        m = self.metrics
        m.ticks.inc()
        m.tick_seconds.observe(time.perf_counter() - started)
        m.last_tick.set(time.time())
        for skip in report.skipped:
            m.missions_skipped.labels(reason=skip.reason).inc()
        if report.recovered:
            m.recovered.inc(len(report.recovered))
        log.info(
            "daemon tick",
            tick=self.ticks,
            claimed=len(report.claimed),
            skipped=len(report.skipped),
            skip_reasons=sorted({s.reason for s in report.skipped}),
            recovered=len(report.recovered),
            expired_proposals=len(expired),
            running=self.running,
            more_due=report.more_due,
        )
        self._expired = len(expired)
        return report

    def _start(self, claim: Claim) -> None:
        flag = CancelFlag()
        task = asyncio.create_task(
            self.runner.run_claim(claim, cancel=flag), name=f"iteration {claim.iteration_id}"
        )
        self._running[claim.iteration_id] = (task, flag)
        self._results.append(task)
        self.metrics.running.set(len(self._running))
        log.info(
            "iteration started",
            iteration=claim.iteration_id,
            mission=claim.mission.id,
            mission_title=claim.mission.title,
            agent=claim.agent.name,
            trigger=claim.trigger,
            attempt=claim.attempt,
        )
        task.add_done_callback(functools.partial(self._done, claim, time.perf_counter()))

    def _done(self, claim: Claim, started: float, task: asyncio.Task[Iteration]) -> None:
        iteration_id = claim.iteration_id
        self._running.pop(iteration_id, None)
        self.metrics.running.set(len(self._running))
        duration_s = round(time.perf_counter() - started, 3)
        if task.cancelled():
            log.info(
                "iteration finished",
                iteration=iteration_id,
                mission=claim.mission.id,
                agent=claim.agent.name,
                outcome="cancelled",
                duration_s=duration_s,
            )
        elif task.exception() is not None:
            log.error("iteration task failed", iteration=iteration_id, error=str(task.exception()))
        else:
            done = task.result()
            log.info(
                "iteration finished",
                iteration=iteration_id,
                mission=claim.mission.id,
                agent=claim.agent.name,
                outcome=done.status,
                stop_reason=done.stop_reason,
                error=done.error_name,
                duration_s=duration_s,
                input_tokens=done.input_tokens,
                output_tokens=done.output_tokens,
                total_tokens=done.total_tokens,
            )
        _, wake = self._events()
        wake.set()

    # -- heartbeat -----------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _heartbeat(self) -> AsyncIterator[None]:
        task = asyncio.create_task(self._beat(), name="lease heartbeat")
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _beat(self) -> None:
        interval = max(self.runner.settings.lease.total_seconds() / 3, 0.1)
        while True:
            await asyncio.sleep(interval)
            try:
                cancelled = await self.scheduler.renew()
            except Exception:
                log.exception("lease renewal failed")
                continue
            for iteration_id in cancelled:
                entry = self._running.get(iteration_id)
                if entry is not None:
                    entry[1].cancel(USER_CANCEL_REASON)

    # -- modes ---------------------------------------------------------------------------------

    async def run_once(self) -> RunSummary:
        """Run every mission due now (at most `concurrency` at once), wait for them, return."""
        as_of = self.clock.now()
        summary = RunSummary()
        _, wake = self._events()
        async with self._heartbeat():
            report = await self.tick(as_of=as_of)
            summary.add(report)
            summary.expired_proposals += self._expired
            while not self._stopping:
                if not self._running:
                    # Everything finished (possibly during the last tick): one more look if
                    # due work was left over, else done.
                    if not self._backlog:
                        break
                    more = await self.tick(as_of=as_of, expire=False)
                    summary.add(more)
                    if not more.claimed:
                        break
                    continue
                wake.clear()
                await wake.wait()
                if self._backlog and len(self._running) < self.settings.concurrency:
                    summary.add(await self.tick(as_of=as_of, expire=False))
            if self._stopping:
                await self._drain()
        for task in self._results:
            if task.done() and not task.cancelled() and task.exception() is None:
                iteration = task.result()
                summary.iterations.append(iteration.id)
                summary.statuses[iteration.status] = summary.statuses.get(iteration.status, 0) + 1
        self._results.clear()
        return summary

    async def serve(self, *, on_ready: Callable[[], None] | None = None) -> None:
        """Tick until `request_stop()`, then drain and release leases. `on_ready` is called
        once `/health` is served (see `http_port`)."""
        _, wake = self._events()
        server = await self._start_http()
        log.info(
            "daemon started",
            owner=self.owner,
            tick_s=self.settings.tick.total_seconds(),
            concurrency=self.settings.concurrency,
            http_port=self.http_port,
        )
        if on_ready is not None:
            on_ready()
        try:
            async with self._heartbeat():
                loop = asyncio.get_running_loop()
                while not self._stopping:
                    try:
                        await self.tick()
                    except Exception:
                        log.exception("daemon tick failed")
                    deadline = loop.time() + self.settings.tick.total_seconds()
                    while not self._stopping:
                        remaining = deadline - loop.time()
                        if remaining <= 0:
                            break
                        wake.clear()
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(wake.wait(), timeout=remaining)
                        if self._backlog and len(self._running) < self.settings.concurrency:
                            break
                await self._drain()
        finally:
            if server is not None:
                server.close()
                await server.wait_closed()

    async def _drain(self) -> None:
        self._stopping = True
        tasks = [task for task, _ in self._running.values()]
        timeout = self.settings.drain_timeout.total_seconds()
        if tasks:
            log.info("waiting for running iterations", running=len(tasks), timeout_s=timeout)
            _, pending = await asyncio.wait(tasks, timeout=timeout)
            if pending:
                log.warning("stopping iterations still running at the deadline", count=len(pending))
                for task, flag in list(self._running.values()):
                    flag.cancel(SHUTDOWN_REASON)
                    task.cancel()
                await asyncio.gather(*pending, return_exceptions=True)
        released = await self.scheduler.release_all()
        log.info("daemon stopped", released_leases=released)

    # -- HTTP ----------------------------------------------------------------------------------

    async def health(self) -> tuple[int, dict[str, Any]]:
        """200 while ticking and the database can take a write now (`Database.probe_write`,
        as the MCP server's `/health`); else 503 with the reason."""
        stale_after = 3 * self.settings.tick.total_seconds() + 30
        stale = (
            self._last_tick_monotonic is not None
            and time.monotonic() - self._last_tick_monotonic > stale_after
        )
        try:
            problem = await self.scheduler.db.probe_write()
        except Exception as exc:  # e.g. the database is closed: that is the answer, not a crash
            problem = f"{type(exc).__name__}: {exc}"
        status = "stopping" if self._stopping else ("stale" if stale else "ok")
        if status == "ok" and problem is not None:
            status = "cannot-write"
        body = {
            "status": status,
            "database": "ok" if problem is None else problem,
            "owner": self.owner,
            "running": self.running,
            "concurrency": self.settings.concurrency,
            "ticks": self.ticks,
            "lastTickAt": self.last_tick_at,
            "startedAt": self.started_at,
        }
        return (200 if status == "ok" else 503), body

    async def _start_http(self) -> asyncio.Server | None:
        if self.settings.port is None:
            return None
        server = await asyncio.start_server(
            self._handle_http, self.settings.host, self.settings.port
        )
        sockets = server.sockets or ()
        self.http_port = sockets[0].getsockname()[1] if sockets else self.settings.port
        log.info("daemon http listening", host=self.settings.host, port=self.http_port)
        return server

    async def _handle_http(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), HTTP_READ_TIMEOUT)
            for _ in range(100):  # skip headers
                header = await asyncio.wait_for(reader.readline(), HTTP_READ_TIMEOUT)
                if header in (b"\r\n", b"\n", b""):
                    break
            parts = line.decode("latin-1", "replace").split()
            method = parts[0] if parts else ""
            path = parts[1].split("?", 1)[0] if len(parts) > 1 else ""
            if len(line) > MAX_REQUEST_LINE or method not in ("GET", "HEAD"):
                status, ctype, body = 405, "text/plain; charset=utf-8", b"method not allowed\n"
            elif path == "/health":
                code, payload = await self.health()
                status, ctype = code, "application/json"
                body = json.dumps(payload).encode()
            elif path == "/metrics":
                status, ctype, body = 200, self.metrics.content_type, self.metrics.render()
            else:
                status, ctype, body = 404, "text/plain; charset=utf-8", b"not found\n"
            reason = {200: "OK", 404: "Not Found", 405: "Method Not Allowed"}.get(
                status, "Service Unavailable"
            )
            head = (
                f"HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            ).encode()
            writer.write(head + (b"" if method == "HEAD" else body))
            await writer.drain()
        except (TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
