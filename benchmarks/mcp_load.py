#!/usr/bin/env python3
"""MCP load test: 50 concurrent Streamable HTTP sessions (protocol 2025-11-25) × 100 tool calls
each, half reads and half writes, against our server (one user per session, default policy
gate), and the same load of `echo` calls against a bare `mcp` low-level server as the baseline
measured in the same run.

    .venv/bin/python benchmarks/mcp_load.py [--sessions 50] [--calls 100]

The load generator is deliberately light: one asyncio process with a minimal HTTP/1.1 client on
raw streams (one keep-alive connection per session) speaking the session protocol (initialize,
notifications/initialized, tools/call ..., DELETE) and reading the SSE answers — the `mcp`
client costs about 2 ms of CPU per call on this machine and httpx about 3 ms with SSE, either of
which would make the generator, not the server, the bottleneck. The table shows CPU per call of
the server and of the generator.

Checks: zero errors (HTTP status, JSON-RPC error or isError result), zero lost writes (rows per
user in the database after the run = writes acknowledged), every call audited, no session left
open; reports the server's RSS before and after the load and after the sessions were closed.
Loopback only; servers are stopped at the end; the whole run is capped by `--timeout`.

PostgreSQL and replicas:

    .venv/bin/python benchmarks/mcp_load.py --backend postgres --replicas 2 [--spread workers]

starts its own throwaway PostgreSQL server (tool_registry.testing.postgres), then runs the same
load three times, each on a fresh database and data directory: our server on SQLite (the
reference for CPU per call), one server on PostgreSQL (`mana init --database-url`, then
`mana serve --http`), and REPLICAS server processes on PostgreSQL. `--spread workers` (default)
runs them as `mana serve --http --workers REPLICAS` on one port, the kernel handing each new
connection to a worker; `--spread ports` starts REPLICAS separate `mana serve` processes on their
own ports and the generator deals the sessions out round-robin (a client-side balancer: a proxy
process would take CPU from the two cores the servers need). Prints throughput of REPLICAS over
one, CPU per call of the Mana processes and of PostgreSQL against SQLite, errors and lost writes
(each must be 0) per phase, and what PostgreSQL's sessions were doing meanwhile (running,
waiting for the write lock, idle in a transaction). `--replicas 1` runs the SQLite and the
one-server phases only; `--mix reads` calls the read tools only (how far the servers scale when
no call takes the database-wide write lock).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import sqlite3
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.mcp_bench_support import (
    REPO,
    Server,
    free_port,
    mana_argv,
    percentiles,
    print_table,
    seed_users,
    server_env,
    token_for,
)
from mana_cli.config import Settings
from mana_cli.runtime import open_runtime
from tool_registry.logging import configure_logging

PROTOCOL = "2025-11-25"
WRITES = ("habits.create", "habits.log", "notes.create", "todo.create", "mood.log")
ROUND = (
    "habits.create",
    "habits.log",
    "notes.create",
    "todo.create",
    "mood.log",
    "habits.list",
    "notes.search",
    "todo.list",
    "me.listReferenceImages",
    "spaces.list",
)


@dataclass
class Result:
    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    writes: dict[str, int] = field(default_factory=dict)  # user id -> acknowledged writes
    server_cpu_s: float = 0.0
    generator_cpu_s: float = 0.0


def _sse_message(body: str) -> dict[str, Any]:
    for line in body.splitlines():
        if line.startswith("data:"):
            message: dict[str, Any] = json.loads(line[5:].strip())
            return message
    message = json.loads(body)
    return message


class RawHttp:
    """A minimal HTTP/1.1 keep-alive connection on asyncio streams: requests with a body,
    responses with Content-Length or chunked bodies (SSE). Far cheaper per call than a full
    client library, so the generator does not eat the CPU the server needs."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def request(
        self, method: str, path: str, headers: dict[str, str], body: bytes = b""
    ) -> tuple[int, dict[str, str], bytes]:
        if self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        assert self._reader is not None
        lines = [f"{method} {path} HTTP/1.1", f"host: {self.host}:{self.port}"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        lines.append(f"content-length: {len(body)}")
        self._writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        reader = self._reader
        status = int((await reader.readline()).split(b" ", 2)[1])
        head: dict[str, str] = {}
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            head[name.strip().lower()] = value.strip()
        if "content-length" in head:
            data = await reader.readexactly(int(head["content-length"]))
        elif head.get("transfer-encoding") == "chunked":
            parts = []
            while size := int((await reader.readline()).split(b";")[0], 16):
                parts.append(await reader.readexactly(size))
                await reader.readexactly(2)
            await reader.readline()
            data = b"".join(parts)
        else:
            data = await reader.read()
        if head.get("connection") == "close":
            await self.close()
        return status, head, data

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(Exception):
                await self._writer.wait_closed()
        self._reader = self._writer = None


class Session:
    """One 2025-11-25 session over its own raw HTTP connection."""

    def __init__(self, url: str, token: str | None) -> None:
        parts = urlsplit(url)
        self.http = RawHttp(parts.hostname or "127.0.0.1", parts.port or 80)
        self.path = parts.path
        self.headers = {
            "accept": "application/json, text/event-stream",
            "content-type": "application/json",
        }
        if token:
            self.headers["authorization"] = f"Bearer {token}"
        self.next_id = 0

    async def _post(self, body: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
        return await self.http.request("POST", self.path, self.headers, json.dumps(body).encode())

    async def open(self) -> None:
        status, head, _ = await self._post(
            {
                "jsonrpc": "2.0",
                "id": 0,
                "method": "initialize",
                "params": {
                    "protocolVersion": PROTOCOL,
                    "capabilities": {},
                    "clientInfo": {"name": "mana-load", "version": "0"},
                },
            }
        )
        if status != 200:
            raise RuntimeError(f"initialize: HTTP {status}")
        self.headers["mcp-session-id"] = head["mcp-session-id"]
        self.headers["mcp-protocol-version"] = PROTOCOL
        status, _, _ = await self._post({"jsonrpc": "2.0", "method": "notifications/initialized"})
        if status >= 300:
            raise RuntimeError(f"notifications/initialized: HTTP {status}")

    async def call(self, tool: str, args: dict[str, Any]) -> dict[str, Any]:
        self.next_id += 1
        status, _, data = await self._post(
            {
                "jsonrpc": "2.0",
                "id": self.next_id,
                "method": "tools/call",
                "params": {"name": tool, "arguments": args},
            }
        )
        text = data.decode()
        if status != 200:
            raise RuntimeError(f"{tool}: HTTP {status} {text[:200]}")
        message = _sse_message(text)
        if "error" in message:
            raise RuntimeError(f"{tool}: JSON-RPC error {message['error']}")
        result: dict[str, Any] = message["result"]
        if result.get("isError"):
            raise RuntimeError(f"{tool}: {result['content'][0]['text'][:200]}")
        return result

    async def close(self) -> None:
        try:
            await self.http.request("DELETE", self.path, self.headers)
        finally:
            await self.http.close()


READ_ROUND = tuple(tool for tool in ROUND if tool not in WRITES)


async def drive_ours(
    url: str,
    user_id: str,
    token: str,
    calls: int,
    out: Result,
    round_: tuple[str, ...] = ROUND,
) -> None:
    session = Session(url, token)
    await session.open()
    habit_id = ""
    try:
        for i in range(calls):
            tool = round_[i % len(round_)]
            all_args: dict[str, dict[str, Any]] = {
                "habits.create": {"name": f"Load habit {i}"},
                "habits.log": {"habitId": habit_id},
                "notes.create": {"title": f"Note {i}", "body": "written under load"},
                "todo.create": {"title": f"Todo {i}"},
                "mood.log": {"score": 1 + i % 5},
                "habits.list": {},
                "notes.search": {"query": "load"},
                "todo.list": {},
                "me.listReferenceImages": {},
                "spaces.list": {},
            }
            args = all_args[tool]
            t0 = time.perf_counter()
            try:
                result = await session.call(tool, args)
            except Exception as exc:
                out.errors.append(str(exc))
                continue
            out.latencies.append(time.perf_counter() - t0)
            if tool == "habits.create":
                habit_id = result["structuredContent"]["id"]
            if tool in WRITES:
                out.writes[user_id] = out.writes.get(user_id, 0) + 1
    finally:
        await session.close()


async def drive_baseline(url: str, calls: int, out: Result) -> None:
    session = Session(url, None)
    await session.open()
    try:
        for i in range(calls):
            t0 = time.perf_counter()
            try:
                await session.call("echo", {"text": f"hello {i}"})
            except Exception as exc:
                out.errors.append(str(exc))
                continue
            out.latencies.append(time.perf_counter() - t0)
    finally:
        await session.close()


class CpuMeter(Protocol):
    def cpu_seconds(self) -> float: ...


async def load(n_sessions: int, run_one: Any, server: CpuMeter) -> tuple[Result, float]:
    out = Result()
    cpu_server = server.cpu_seconds()
    cpu_self = time.process_time()
    started = time.perf_counter()
    await asyncio.gather(*(run_one(i, out) for i in range(n_sessions)))
    wall = time.perf_counter() - started
    out.server_cpu_s = server.cpu_seconds() - cpu_server
    out.generator_cpu_s = time.process_time() - cpu_self
    return out, wall


def _db_counts(db_path: Path) -> tuple[dict[str, int], int]:
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT author_id, count(*) FROM records GROUP BY author_id")
        per_author = {str(a): int(c) for a, c in rows}
        audited = int(conn.execute("SELECT count(*) FROM audit_log").fetchone()[0])
    finally:
        conn.close()
    return per_author, audited


async def _metric(url: str, name: str) -> float | None:
    async with httpx.AsyncClient() as http:
        for line in (await http.get(f"{url}/metrics")).text.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[-1])
    return None


async def run(ns: argparse.Namespace) -> int:
    data_dir = Path(tempfile.mkdtemp(prefix="mana-bench-load-"))
    try:
        return await _run(ns, data_dir)
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


async def _run(ns: argparse.Namespace, data_dir: Path) -> int:
    emails = [f"load-{i:03d}@mana.test" for i in range(ns.sessions)]
    ids = await seed_users(data_dir, emails)
    tokens = [(ids[e], token_for(data_dir, ids[e], e)) for e in emails]
    # The default policy gate (rate limit 30 calls/tool/user/min; each session calls each tool
    # 10 times), not the raised limit of the latency benchmark.
    ours = Server.ours(data_dir, env={"MANA_RATE_LIMIT": "30"})
    base = Server.baseline()
    try:
        await ours.ready(health=True)
        await base.ready(health=False)
        rss_ours_start = ours.rss_kib()
        rss_base_start = base.rss_kib()

        async def one_base(i: int, out: Result) -> None:
            await drive_baseline(f"{base.url}/mcp", ns.calls, out)

        async def one_ours(i: int, out: Result) -> None:
            user_id, token = tokens[i]
            await drive_ours(f"{ours.url}/mcp", user_id, token, ns.calls, out)

        base_result, base_wall = await load(ns.sessions, one_base, base)
        rss_base_after = base.rss_kib()
        ours_result, ours_wall = await load(ns.sessions, one_ours, ours)
        rss_ours_after = ours.rss_kib()
        await asyncio.sleep(0.5)
        open_sessions = await _metric(ours.url, "mana_mcp_open_sessions")
        rss_ours_closed = ours.rss_kib()
    finally:
        ours.stop()  # SIGTERM: drains and flushes the audit log
        base.stop()

    per_author, audited = _db_counts(data_dir / "mana.db")
    acknowledged = sum(ours_result.writes.values())
    lost = sum(max(0, n - per_author.get(uid, 0)) for uid, n in ours_result.writes.items())
    extra = sum(
        max(0, per_author.get(uid, 0) - ours_result.writes.get(uid, 0)) for uid, _ in tokens
    )
    total_calls = ns.sessions * ns.calls

    def row(name: str, res: Result, wall: float, rss: tuple[int, int, int | None]) -> list[str]:
        p50, p95 = percentiles(res.latencies)
        return [
            name,
            str(ns.sessions),
            str(len(res.latencies) + len(res.errors)),
            str(len(res.errors)),
            f"{wall:.1f}",
            f"{len(res.latencies) / wall:.0f}",
            f"{p50:.1f}",
            f"{p95:.1f}",
            f"{res.server_cpu_s / max(1, len(res.latencies)) * 1000:.2f}",
            f"{res.generator_cpu_s / max(1, len(res.latencies)) * 1000:.2f}",
            f"{rss[0] / 1024:.1f}",
            f"{rss[1] / 1024:.1f}",
            "-" if rss[2] is None else f"{rss[2] / 1024:.1f}",
        ]

    print(
        f"\nMCP load: {ns.sessions} concurrent 2025-11-25 sessions x {ns.calls} calls, "
        "raw-HTTP load generator, same run\n"
    )
    print_table(
        [
            "server",
            "sessions",
            "calls",
            "errors",
            "wall s",
            "calls/s",
            "p50 ms",
            "p95 ms",
            "server CPU ms/call",
            "generator CPU ms/call",
            "RSS start MiB",
            "RSS after MiB",
            "RSS closed MiB",
        ],
        [
            row("baseline (echo)", base_result, base_wall, (rss_base_start, rss_base_after, None)),
            row(
                "ours (50/50 read/write)",
                ours_result,
                ours_wall,
                (rss_ours_start, rss_ours_after, rss_ours_closed),
            ),
        ],
    )
    b50, _ = percentiles(base_result.latencies)
    o50, _ = percentiles(ours_result.latencies)
    base_rate = len(base_result.latencies) / base_wall
    ours_rate = len(ours_result.latencies) / ours_wall
    print(f"\nratios ours/baseline: p50 {o50 / b50:.2f}x, throughput {ours_rate / base_rate:.2f}x")
    print(
        f"writes acknowledged {acknowledged}, rows in the database {sum(per_author.values())}, "
        f"lost {lost}, unexpected {extra}; audit rows {audited} (calls {total_calls}); "
        f"open sessions after the run {open_sessions}"
    )
    for err in (base_result.errors + ours_result.errors)[:5]:
        print(f"error: {err}")
    failed = (
        base_result.errors
        or ours_result.errors
        or lost
        or extra
        or audited < total_calls
        or open_sessions not in (0.0, None)
    )
    return 1 if failed else 0


# -- PostgreSQL and replicas ---------------------------------------------------------------


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and all its descendants, live ones and reaped ones
    (Linux /proc: utime, stime, cutime, cstime), e.g. a `--workers` parent with its workers or
    the postmaster with its backends. 0 for a process that is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    own = sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")
    return own + sum(tree_cpu_seconds(int(child)) for child in children)


@dataclass
class Deployment:
    """The server processes of one phase and the URLs the sessions are dealt out to."""

    servers: list[Server]
    workers: int  # worker processes per server (1: plain `mana serve --http`)

    @property
    def urls(self) -> list[str]:
        return [f"{s.url}/mcp" for s in self.servers]

    def cpu_seconds(self) -> float:
        return sum(tree_cpu_seconds(s.proc.pid) for s in self.servers)

    async def ready(self) -> None:
        """Every server answers /health, and with workers every worker has answered once."""
        for server in self.servers:
            await server.ready(health=True)
            if self.workers > 1:
                await _worker_pids(server.url, self.workers)

    async def open_sessions(self) -> float:
        """`mana_mcp_open_sessions` summed over every server process (each worker has its
        own sessions; /metrics is asked until each worker answered)."""
        total = 0.0
        for server in self.servers:
            if self.workers == 1:
                total += await _metric(server.url, "mana_mcp_open_sessions") or 0.0
                continue
            per_worker = await _metric_per_worker(server.url, self.workers)
            total += sum(per_worker.values())
        return total

    def stop(self) -> None:
        for server in self.servers:
            server.stop()


async def _worker_pids(url: str, workers: int, attempts: int = 2000) -> set[str]:
    pids: set[str] = set()
    async with httpx.AsyncClient(timeout=5.0) as http:
        for _ in range(attempts):
            response = await http.get(f"{url}/health", headers={"connection": "close"})
            pids.add(response.headers.get("mana-worker", ""))
            if len(pids) >= workers:
                return pids
    raise RuntimeError(f"only {len(pids)} of {workers} workers answered at {url}")


async def _metric_per_worker(url: str, workers: int, attempts: int = 2000) -> dict[str, float]:
    found: dict[str, float] = {}
    async with httpx.AsyncClient(timeout=5.0) as http:
        for _ in range(attempts):
            response = await http.get(f"{url}/metrics", headers={"connection": "close"})
            for line in response.text.splitlines():
                if line.startswith("mana_mcp_open_sessions "):
                    found[response.headers["mana-worker"]] = float(line.split()[-1])
            if len(found) >= workers:
                break
    return found


@dataclass
class Phase:
    name: str
    result: Result
    wall: float
    db_cpu_s: float
    acknowledged: int
    lost: int
    extra: int
    audited: int
    open_sessions: float
    sampled: DbSample | None = None


@dataclass
class DbSample:
    """What PostgreSQL's sessions of the benchmark database were doing, sampled every 50 ms
    during the load: averages of sessions running a statement, waiting for a lock (the
    database-wide write lock of serialised write units is an advisory lock) and idle inside a
    transaction (a unit holding its connection while the server works in Python)."""

    samples: int = 0
    active: float = 0.0
    lock_waits: float = 0.0
    idle_in_tx: float = 0.0

    def add(self, active: int, lock_waits: int, idle_in_tx: int) -> None:
        self.samples += 1
        self.active += active
        self.lock_waits += lock_waits
        self.idle_in_tx += idle_in_tx

    def mean(self, total: float) -> float:
        return total / max(1, self.samples)


async def _sample_db(url: str, out: DbSample, stop: asyncio.Event) -> None:
    import psycopg

    query = (
        "SELECT count(*) FILTER (WHERE state = 'active'), "
        "count(*) FILTER (WHERE wait_event_type = 'Lock'), "
        "count(*) FILTER (WHERE state = 'idle in transaction') "
        "FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
    )
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        while not stop.is_set():
            row = await (await conn.execute(query)).fetchone()
            if row is not None:
                out.add(int(row[0]), int(row[1]), int(row[2]))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.05)


def _pg_counts(url: str) -> tuple[dict[str, int], int]:
    import psycopg

    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT author_id, count(*) FROM records GROUP BY author_id")
        per_author = {str(a): int(c) for a, c in rows.fetchall()}
        found = conn.execute("SELECT count(*) FROM audit_log").fetchone()
        audited = int(found[0]) if found else 0
    return per_author, audited


def _postmaster_pid(pg: Any) -> int:
    return int((pg.data_dir / "postmaster.pid").read_text().split()[0])


def _mana_init(data_dir: Path, database_url: str) -> None:
    import subprocess

    done = subprocess.run(
        mana_argv(data_dir, "init"),
        cwd=REPO,
        env=server_env({"MANA_DATABASE_URL": database_url}),
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"mana init failed: {done.stderr.strip()}")


async def _seed_postgres(data_dir: Path, database_url: str, emails: list[str]) -> dict[str, str]:
    settings = Settings.load(
        {"data_dir": str(data_dir), "database_url": database_url}, environ=server_env()
    )
    ids: dict[str, str] = {}
    async with open_runtime(settings) as rt:
        for email in emails:
            user = await rt.accounts.create_user(email)
            ids[email] = user.id
    return ids


def _deploy(
    data_dir: Path, database_url: str | None, replicas: int, spread: str, env: dict[str, str]
) -> Deployment:
    if database_url is not None:
        env = {**env, "MANA_DATABASE_URL": database_url}
    if replicas == 1 or spread == "ports":
        return Deployment([Server.ours(data_dir, env=env) for _ in range(replicas)], workers=1)
    port = free_port()
    argv = mana_argv(data_dir, "serve", "--http", "--port", str(port), "--workers", str(replicas))
    return Deployment([Server(argv, port, env=env)], workers=replicas)


async def _phase(
    name: str,
    ns: argparse.Namespace,
    *,
    database_url: str | None,
    replicas: int,
    postmaster: int | None,
) -> Phase:
    data_dir = Path(tempfile.mkdtemp(prefix="mana-bench-load-"))
    try:
        emails = [f"load-{i:03d}@mana.test" for i in range(ns.sessions)]
        if database_url is None:
            ids = await seed_users(data_dir, emails)
        else:
            _mana_init(data_dir, database_url)
            ids = await _seed_postgres(data_dir, database_url, emails)
        tokens = [(ids[e], token_for(data_dir, ids[e], e)) for e in emails]
        deployment = _deploy(data_dir, database_url, replicas, ns.spread, {"MANA_RATE_LIMIT": "30"})
        try:
            await deployment.ready()
            urls = deployment.urls
            db_cpu = tree_cpu_seconds(postmaster) if postmaster else 0.0

            async def one(i: int, out: Result) -> None:
                user_id, token = tokens[i]
                round_ = READ_ROUND if ns.mix == "reads" else ROUND
                await drive_ours(urls[i % len(urls)], user_id, token, ns.calls, out, round_)

            sampled: DbSample | None = None
            sampler: asyncio.Task[None] | None = None
            stop_sampling = asyncio.Event()
            if database_url is not None:
                sampled = DbSample()
                sampler = asyncio.create_task(_sample_db(database_url, sampled, stop_sampling))
            result, wall = await load(ns.sessions, one, deployment)
            db_cpu = (tree_cpu_seconds(postmaster) - db_cpu) if postmaster else 0.0
            stop_sampling.set()
            if sampler is not None:
                await sampler
            await asyncio.sleep(0.5)
            open_sessions = await deployment.open_sessions()
        finally:
            deployment.stop()  # SIGTERM: drains and flushes the audit log
        if database_url is None:
            per_author, audited = _db_counts(data_dir / "mana.db")
        else:
            per_author, audited = _pg_counts(database_url)
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
    lost = sum(max(0, n - per_author.get(uid, 0)) for uid, n in result.writes.items())
    extra = sum(max(0, per_author.get(uid, 0) - result.writes.get(uid, 0)) for uid, _ in tokens)
    return Phase(
        name,
        result,
        wall,
        db_cpu,
        sum(result.writes.values()),
        lost,
        extra,
        audited,
        open_sessions,
        sampled,
    )


async def run_postgres(ns: argparse.Namespace) -> int:
    from tool_registry.testing.postgres import ThrowawayPostgres, temporary_database

    plan = [("sqlite, 1 server", None, 1), ("postgres, 1 server", "pg", 1)]
    if ns.replicas > 1:
        plan.append((f"postgres, {ns.replicas} {_spread_label(ns.spread)}", "pg", ns.replicas))
    phases: list[Phase] = []
    with ThrowawayPostgres() as pg:
        postmaster = _postmaster_pid(pg)
        for name, backend, replicas in plan:
            if backend is None:
                phases.append(
                    await _phase(name, ns, database_url=None, replicas=1, postmaster=None)
                )
                continue
            with temporary_database(pg.admin_url, prefix="mana_bench") as url:
                phases.append(
                    await _phase(
                        name, ns, database_url=url, replicas=replicas, postmaster=postmaster
                    )
                )
    _report_postgres(ns, phases)
    total_calls = ns.sessions * ns.calls
    failed = any(
        p.result.errors or p.lost or p.extra or p.audited < total_calls or p.open_sessions
        for p in phases
    )
    return 1 if failed else 0


def _spread_label(spread: str) -> str:
    return "workers on one port" if spread == "workers" else "servers on own ports"


def _report_postgres(ns: argparse.Namespace, phases: list[Phase]) -> None:
    print(
        f"\nMCP load on {os.cpu_count()} CPUs: {ns.sessions} concurrent 2025-11-25 sessions x "
        f"{ns.calls} calls ({'reads only' if ns.mix == 'reads' else '50/50 read/write'}, rate "
        "limit 30/tool/user/min), raw-HTTP load "
        "generator, all phases in this run\n"
    )
    rows = []
    for p in phases:
        ok = max(1, len(p.result.latencies))
        p50, p95 = percentiles(p.result.latencies)
        rows.append(
            [
                p.name,
                str(len(p.result.latencies) + len(p.result.errors)),
                str(len(p.result.errors)),
                f"{p.wall:.1f}",
                f"{len(p.result.latencies) / p.wall:.0f}",
                f"{p50:.1f}",
                f"{p95:.1f}",
                f"{p.result.server_cpu_s / ok * 1000:.2f}",
                f"{p.db_cpu_s / ok * 1000:.2f}" if p.db_cpu_s else "-",
                f"{(p.result.server_cpu_s + p.db_cpu_s) / ok * 1000:.2f}",
                f"{p.result.generator_cpu_s / ok * 1000:.2f}",
                f"{p.acknowledged}",
                f"{p.lost}",
                f"{p.extra}",
                f"{p.audited}",
                f"{p.open_sessions:.0f}",
            ]
        )
    print_table(
        [
            "phase",
            "calls",
            "errors",
            "wall s",
            "calls/s",
            "p50 ms",
            "p95 ms",
            "Mana CPU ms/call",
            "PostgreSQL CPU ms/call",
            "server total CPU ms/call",
            "generator CPU ms/call",
            "writes acked",
            "lost",
            "unexpected",
            "audit rows",
            "open sessions after",
        ],
        rows,
    )

    def rate(p: Phase) -> float:
        return len(p.result.latencies) / p.wall

    def cpu(p: Phase, with_db: bool) -> float:
        spent = p.result.server_cpu_s + (p.db_cpu_s if with_db else 0.0)
        return spent / max(1, len(p.result.latencies))

    sqlite, one = phases[0], phases[1]
    print(
        f"\nCPU per call, PostgreSQL (1 server) / SQLite: Mana processes "
        f"{cpu(one, False) / cpu(sqlite, False):.2f}x, Mana + PostgreSQL "
        f"{cpu(one, True) / cpu(sqlite, False):.2f}x"
    )
    if len(phases) > 2:
        many = phases[2]
        print(
            f"throughput, {ns.replicas} {_spread_label(ns.spread)} / 1 server: "
            f"{rate(many) / rate(one):.2f}x (goal >= 1.5x)"
        )
    print("\nPostgreSQL sessions of the benchmark database during the load (mean of samples):")
    for p in phases:
        if p.sampled is not None:
            d = p.sampled
            print(
                f"  {p.name}: running a statement {d.mean(d.active):.1f}, waiting for a lock "
                f"{d.mean(d.lock_waits):.1f}, idle in a transaction {d.mean(d.idle_in_tx):.1f} "
                f"({d.samples} samples)"
            )
    for p in phases:
        for err in p.result.errors[:3]:
            print(f"error ({p.name}): {err}")


def main(argv: list[str] | None = None) -> int:
    configure_logging("WARNING", json=True)
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--sessions", type=int, default=50, help="concurrent sessions (50)")
    p.add_argument("--calls", type=int, default=100, help="calls per session (100)")
    p.add_argument("--timeout", type=float, default=900, help="cap for the whole run, seconds")
    p.add_argument(
        "--backend",
        choices=("sqlite", "postgres"),
        default="sqlite",
        help="sqlite: ours against the echo baseline (default); postgres: see above",
    )
    p.add_argument("--replicas", type=int, default=2, help="postgres: server processes (2)")
    p.add_argument(
        "--spread",
        choices=("workers", "ports"),
        default="workers",
        help="postgres: replicas as --workers on one port (default) or processes on own ports",
    )
    p.add_argument(
        "--mix",
        choices=("mixed", "reads"),
        default="mixed",
        help="postgres: half reads and half writes (default), or the read tools only",
    )
    ns = p.parse_args(argv)
    if ns.replicas < 1:
        p.error("--replicas must be at least 1")

    async def bounded() -> int:
        job = run(ns) if ns.backend == "sqlite" else run_postgres(ns)
        return await asyncio.wait_for(job, ns.timeout)

    return asyncio.run(bounded())


if __name__ == "__main__":
    sys.exit(main())
