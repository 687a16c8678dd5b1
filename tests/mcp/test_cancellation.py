"""A cancelled call never wedges the server.

Hundreds of write calls are cancelled at random points (0-5 ms after their request was sent)
against real server processes: over HTTP in the 2026-07-28 era (cancelling is closing the
request) and the 2025-11-25 era (`notifications/cancelled` for the request id), with dropped
TCP connections in both, and over stdio (`notifications/cancelled` on the pipe, and stdin closed
while calls run). Afterwards a fresh session and a `mana call` from another process can still
write, every stored write is audited exactly once, `/health` proves the write path, and no
server logged a traceback.
"""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h11
import httpx
import pytest

from tool_registry.pipeline import input_hash

from .stdio_support import RawStdio, tools_call
from .support import (
    DEMO_EMAIL,
    JSON_ACCEPT,
    REPO,
    Installation,
    ServerProcess,
    headers,
    http_client,
    mana_argv,
    seed_world_async,
)

pytestmark = pytest.mark.slow

MODERN = "2026-07-28"
LEGACY = "2025-11-25"
# Calls per run; the HTTP runs send a few at a time, so cancellations also land while other
# calls hold the writer.
CALLS = 100
DROPS = 30
PARALLEL = 4
# The cancellation comes 0-5 ms after the request was sent. Under load a call takes longer
# than that, so each kind also runs with a wider window, which lands cancellations during and
# after the commit as well.
SHORT = 0.005
WIDE = 0.03
PREFIXES = ("m5", "m30", "md", "l5", "l30", "ld", "s5", "s30", "sx")
SERVER_ENV = {"MANA_RATE_LIMIT": "100000", "MANA_SHUTDOWN_GRACE_SECONDS": "20"}
TRACEBACK_MARKERS = ("Traceback", "Task exception was never retrieved", "never awaited")


@dataclass
class Tally:
    """What happened to the calls of one run (completed: the client read a success)."""

    sent: int = 0
    cancelled: int = 0
    completed: int = 0
    other: Counter[str] = field(default_factory=Counter)

    def add(self, other: Tally) -> None:
        self.sent += other.sent
        self.cancelled += other.cancelled
        self.completed += other.completed
        self.other.update(other.other)


def write_args(prefix: str, i: int) -> tuple[str, dict[str, Any]]:
    """A write tool and arguments unique to this call (so its audit row is found by hash)."""
    if i % 2:
        return "notes.create", {"title": f"{prefix}-{i}", "body": "cancellation test"}
    return "habits.create", {"name": f"{prefix}-{i}"}


def call_message(
    request_id: int, tool: str, args: dict[str, Any], *, modern: bool
) -> dict[str, Any]:
    if modern:
        return tools_call(request_id, tool, args)
    params = {"name": tool, "arguments": args}
    return {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": params}


def call_body(request_id: int, tool: str, args: dict[str, Any], *, modern: bool) -> bytes:
    return json.dumps(call_message(request_id, tool, args, modern=modern)).encode()


def cancel_message(request_id: int) -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "method": "notifications/cancelled",
        "params": {"requestId": request_id, "reason": "test cancels"},
    }


def cancel_body(request_id: int) -> bytes:
    return json.dumps(cancel_message(request_id)).encode()


def result_of(payload: bytes) -> dict[str, Any] | None:
    """The JSON-RPC message in a JSON or SSE response body (the last `data:` line)."""
    text = payload.decode()
    lines = [ln[5:].strip() for ln in text.splitlines() if ln.startswith("data:")]
    candidates = lines or [text]
    for chunk in reversed(candidates):
        if chunk.strip():
            message: dict[str, Any] = json.loads(chunk)
            return message
    return None


def classify(message: dict[str, Any] | None) -> str:
    if message is None:
        return "empty"
    if "error" in message:
        return "cancelled" if message["error"].get("code") == -32800 else "rpc-error"
    return "completed" if message["result"].get("isError") is False else "tool-error"


class RawHttp:
    """One keep-alive HTTP/1.1 connection driven by hand: the test decides exactly when a
    request is on the wire and when the connection closes (FIN) or is reset (RST)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.conn = h11.Connection(our_role=h11.CLIENT)

    @classmethod
    async def open(cls, port: int) -> RawHttp:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    async def send(self, hdrs: dict[str, str], body: bytes) -> None:
        if self.conn.our_state is h11.DONE:
            self.conn.start_next_cycle()
        request = h11.Request(
            method="POST",
            target="/mcp",
            headers=[
                ("host", "127.0.0.1"),
                ("content-length", str(len(body))),
                *hdrs.items(),
            ],
        )
        self.writer.write(self.conn.send(request) + self.conn.send(h11.Data(data=body)))
        self.writer.write(self.conn.send(h11.EndOfMessage()))
        await self.writer.drain()

    async def response(self) -> tuple[int, dict[str, str], bytes]:
        status, hdrs, body = 0, {}, b""
        while True:
            event = self.conn.next_event()
            if event is h11.NEED_DATA:
                data = await self.reader.read(65536)
                self.conn.receive_data(data)
                if not data and self.conn.their_state is not h11.DONE:
                    raise ConnectionError("server closed the connection")
                continue
            if isinstance(event, h11.Response):
                status = event.status_code
                hdrs = {k.decode(): v.decode() for k, v in event.headers}
            elif isinstance(event, h11.Data):
                body += bytes(event.data)
            elif isinstance(event, h11.EndOfMessage):
                return status, hdrs, body

    def close(self, *, reset: bool = False) -> None:
        if reset:
            self.writer.transport.abort()
        else:
            self.writer.close()


class HttpRun:
    """Calls against one HTTP server, as one user."""

    def __init__(self, server: ServerProcess, token: str) -> None:
        self.server = server
        self.token = token
        self.auth = headers(token)
        self.ids = iter(range(1, 1_000_000))

    def modern_headers(self, tool: str) -> dict[str, str]:
        return {
            **JSON_ACCEPT,
            **self.auth,
            "mcp-protocol-version": MODERN,
            "mcp-method": "tools/call",
            "mcp-name": tool,
        }

    async def modern(self, prefix: str, i: int, window: float, *, reset: bool) -> str:
        """Send a call, wait up to `window` (at random) for its answer, else close the
        connection (or reset it: a dropped connection)."""
        tool, args = write_args(prefix, i)
        conn = await RawHttp.open(self.server.port)
        try:
            await conn.send(
                self.modern_headers(tool), call_body(next(self.ids), tool, args, modern=True)
            )
            try:
                _, _, body = await asyncio.wait_for(conn.response(), random.uniform(0, window))
            except TimeoutError:
                return "cancelled"
            return classify(result_of(body))
        finally:
            conn.close(reset=reset)

    async def legacy_session(self) -> dict[str, str]:
        init = {
            "jsonrpc": "2.0",
            "id": 0,
            "method": "initialize",
            "params": {
                "protocolVersion": LEGACY,
                "capabilities": {},
                "clientInfo": {"name": "cancellation-test", "version": "1"},
            },
        }
        async with httpx.AsyncClient(timeout=30) as http:
            resp = await http.post(
                self.server.mcp_url, json=init, headers={**JSON_ACCEPT, **self.auth}
            )
            assert resp.status_code == 200, resp.text
            session = {
                **JSON_ACCEPT,
                **self.auth,
                "mcp-session-id": resp.headers["mcp-session-id"],
                "mcp-protocol-version": LEGACY,
            }
            note = {"jsonrpc": "2.0", "method": "notifications/initialized"}
            assert (await http.post(self.server.mcp_url, json=note, headers=session)).is_success
        return session

    async def legacy(
        self, session: dict[str, str], prefix: str, i: int, window: float, *, drop: bool
    ) -> str:
        """Send a call; within `window` (at random) send `notifications/cancelled` for it (or
        drop the connection that carries it). A cancelled call is answered with -32800 here."""
        tool, args = write_args(prefix, i)
        request_id = next(self.ids)
        conn = await RawHttp.open(self.server.port)
        try:
            await conn.send(session, call_body(request_id, tool, args, modern=False))
            await asyncio.sleep(random.uniform(0, window))
            if drop:
                conn.close(reset=True)
                return "cancelled"
            other = await RawHttp.open(self.server.port)
            try:
                await other.send(session, cancel_body(request_id))
                status, _, _ = await other.response()
                assert status == 202, status
            finally:
                other.close()
            _, _, body = await conn.response()
            return classify(result_of(body))
        finally:
            conn.close()


async def run_batched(count: int, one: Any) -> Tally:
    tally = Tally()
    queue = iter(range(count))

    async def worker() -> None:
        for i in queue:
            outcome = await one(i)
            tally.sent += 1
            if outcome == "cancelled":
                tally.cancelled += 1
            elif outcome == "completed":
                tally.completed += 1
            else:
                tally.other[outcome] += 1

    await asyncio.gather(*(worker() for _ in range(PARALLEL)))
    return tally


def stdio_outcome(answer: dict[str, Any] | None) -> str:
    return "cancelled" if answer is None else classify(answer)


@dataclass
class Stored:
    """The writes of the test in the database and their audit rows."""

    records: int
    by_prefix: Counter[str]
    audited_ok: int
    unaudited: list[str]
    audited_twice: list[str]
    audit_without_record: int


async def stored_writes(installation: Installation, prefixes: tuple[str, ...]) -> Stored:
    rows = [
        (collection, json.loads(data))
        for collection, data in await installation.query(
            "SELECT collection, data FROM records WHERE collection IN ('habits', 'notes')"
        )
    ]
    audits = Counter(
        h
        for (h,) in await installation.query(
            "SELECT input_hash FROM audit_log WHERE outcome = 'ok' "
            "AND tool IN ('habits.create', 'notes.create')"
        )
    )
    hashes: dict[str, str] = {}
    for collection, data in rows:
        label = data.get("name") if collection == "habits" else data.get("title")
        if not isinstance(label, str) or not label.startswith(tuple(f"{p}-" for p in prefixes)):
            continue
        args = (
            {"name": label}
            if collection == "habits"
            else {"title": label, "body": "cancellation test"}
        )
        hashes[input_hash(args)] = label
    ours = {h for h in audits if h in hashes}
    all_ours = {
        input_hash(args)
        for prefix in prefixes
        for i in range(CALLS + DROPS)
        for args in (write_args(prefix, i)[1],)
    }
    return Stored(
        records=len(hashes),
        by_prefix=Counter(label.rsplit("-", 1)[0] for label in hashes.values()),
        audited_ok=sum(audits[h] for h in ours),
        unaudited=[label for h, label in hashes.items() if audits[h] == 0],
        audited_twice=[label for h, label in hashes.items() if audits[h] > 1],
        audit_without_record=sum(1 for h in audits if h in all_ours and h not in hashes),
    )


def tracebacks(text: str) -> list[str]:
    return [marker for marker in TRACEBACK_MARKERS if marker in text]


async def test_cancelled_calls_never_wedge_the_server(tmp_path: Path, database_target: str) -> None:
    world = await seed_world_async(Installation(tmp_path, database_target))
    server = ServerProcess(world.installation, env=SERVER_ENV)
    figures: dict[str, Tally] = {}
    stdio: RawStdio | None = None
    try:
        await asyncio.to_thread(server.wait_ready)
        run = HttpRun(server, world.token(world.demo_id, email=DEMO_EMAIL))

        for label, window in (("0-5 ms", SHORT), ("0-30 ms", WIDE)):
            prefix = f"m{int(window * 1000)}"
            figures[f"http 2026-07-28, request closed {label}"] = await run_batched(
                CALLS, lambda i, p=prefix, w=window: run.modern(p, i, w, reset=False)
            )
        figures["http 2026-07-28, connection dropped 0-30 ms"] = await run_batched(
            DROPS, lambda i: run.modern("md", i, WIDE, reset=True)
        )
        session = await run.legacy_session()
        for label, window in (("0-5 ms", SHORT), ("0-30 ms", WIDE)):
            prefix = f"l{int(window * 1000)}"
            figures[f"http 2025-11-25, notifications/cancelled {label}"] = await run_batched(
                CALLS, lambda i, p=prefix, w=window: run.legacy(session, p, i, w, drop=False)
            )
        figures["http 2025-11-25, connection dropped 0-30 ms"] = await run_batched(
            DROPS, lambda i: run.legacy(session, "ld", i, WIDE, drop=True)
        )

        # stdio: cancel over the pipe, then close stdin while calls are still running
        stdio = await RawStdio.start(world.installation, "stdio-cancel", SERVER_ENV)
        sent: dict[str, list[int]] = {}
        request_id = iter(range(1, 1_000_000))
        for label, window in (("0-5 ms", SHORT), ("0-30 ms", WIDE)):
            prefix = f"s{int(window * 1000)}"
            ids = sent[f"stdio, notifications/cancelled {label}"] = []
            for i in range(CALLS):
                tool, args = write_args(prefix, i)
                ids.append(next(request_id))
                await stdio.send(call_message(ids[-1], tool, args, modern=True))
                await asyncio.sleep(random.uniform(0, window))
                await stdio.send(cancel_message(ids[-1]))
        last = sent["stdio, in flight when stdin closed"] = []
        for i in range(DROPS):
            tool, args = write_args("sx", i)
            last.append(next(request_id))
            await stdio.send(call_message(last[-1], tool, args, modern=True))
        stdio.close_stdin()
        assert await stdio.wait() == 0, stdio.stderr()[-3000:]
        for name, ids in sent.items():
            tally = figures[name] = Tally()
            for rid in ids:
                outcome = stdio_outcome(stdio.answers.get(rid))
                tally.sent += 1
                tally.cancelled += outcome == "cancelled"
                tally.completed += outcome == "completed"
                if outcome not in ("cancelled", "completed"):
                    tally.other[outcome] += 1
        # Closing stdin does not cancel: every call still running then is answered.
        assert figures["stdio, in flight when stdin closed"].completed == DROPS, {
            rid: stdio.answers.get(rid) for rid in last
        }

        total = Tally()
        for t in figures.values():
            total.add(t)
        assert total.other == Counter(), figures  # nothing but completed or cancelled

        # A fresh session writes ...
        status, body = await fresh_modern_write(run, "after-http")
        assert status == 200 and classify(result_of(body)) == "completed", body
        async with http_client(server.mcp_url, run.token, mode="legacy") as (client, _):
            fresh = await client.call_tool("habits.create", {"name": "after-legacy-session"})
        assert not fresh.is_error, fresh.content
        # ... so does another process (not "database is locked") ...
        cli = await asyncio.to_thread(
            subprocess.run,
            mana_argv(
                world.data_dir,
                "call",
                "habits.create",
                "--as",
                DEMO_EMAIL,
                "--args",
                json.dumps({"name": "after-cli"}),
            ),
            cwd=REPO,
            env=world.installation.env(),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert cli.returncode == 0, cli.stderr
        # ... and /health proves the write path.
        async with httpx.AsyncClient(timeout=30) as http:
            health = await http.get(f"{server.url}/health")
        assert health.status_code == 200, health.text
    finally:
        if stdio is not None:
            stdio.kill()
        code = await asyncio.to_thread(server.stop)
    assert code == 0

    stored = await stored_writes(world.installation, PREFIXES)
    print_figures(figures, total, stored)
    assert stored.unaudited == [] and stored.audited_twice == []
    assert stored.audit_without_record == 0
    assert stored.records == stored.audited_ok
    assert stored.records >= total.completed  # a call answered as done is stored
    logs = server.stderr_path.read_text(errors="replace") + stdio.stderr()
    assert tracebacks(logs) == [], logs[-4000:]


async def fresh_modern_write(run: HttpRun, name: str) -> tuple[int, bytes]:
    conn = await RawHttp.open(run.server.port)
    try:
        await conn.send(
            run.modern_headers("habits.create"),
            call_body(next(run.ids), "habits.create", {"name": name}, modern=True),
        )
        status, _, body = await asyncio.wait_for(conn.response(), 60)
        return status, body
    finally:
        conn.close()


def print_figures(figures: dict[str, Tally], total: Tally, stored: Stored) -> None:
    for name, t in figures.items():
        print(f"{name}: sent {t.sent}, cancelled {t.cancelled}, completed {t.completed}")
    print(
        f"records stored by run (prefix): {dict(sorted(stored.by_prefix.items()))}\n"
        f"total: sent {total.sent}, cancelled {total.cancelled}, completed {total.completed}; "
        f"records stored {stored.records}, audit rows {stored.audited_ok}"
    )
