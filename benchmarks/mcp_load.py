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
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import shutil
import sqlite3
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.mcp_bench_support import (
    Server,
    percentiles,
    print_table,
    seed_users,
    token_for,
)
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


async def drive_ours(url: str, user_id: str, token: str, calls: int, out: Result) -> None:
    session = Session(url, token)
    await session.open()
    habit_id = ""
    try:
        for i in range(calls):
            tool = ROUND[i % len(ROUND)]
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


async def load(n_sessions: int, run_one: Any, server: Server) -> tuple[Result, float]:
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


def main(argv: list[str] | None = None) -> int:
    configure_logging("WARNING", json=True)
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--sessions", type=int, default=50, help="concurrent sessions (50)")
    p.add_argument("--calls", type=int, default=100, help="calls per session (100)")
    p.add_argument("--timeout", type=float, default=600, help="cap for the whole run, seconds")
    ns = p.parse_args(argv)

    async def bounded() -> int:
        return await asyncio.wait_for(run(ns), ns.timeout)

    return asyncio.run(bounded())


if __name__ == "__main__":
    sys.exit(main())
