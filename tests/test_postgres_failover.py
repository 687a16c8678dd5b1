"""PostgreSQL restarting under load: a `mana serve --http` process on a private PostgreSQL server
takes a stream of write calls while the database stops and comes back.

- during the outage every call fails with one clear `unavailable` error (a tool error with
  reason `unavailable`, or the endpoint's 503 with `data.reason` `unavailable`), never an
  internal error or a stack trace, and `/health` answers 503;
- afterwards the server's pools reconnect by themselves: calls succeed again without
  restarting the server;
- every call acknowledged as ok is in the database afterwards.

The pipeline's mapping of `DatabaseUnavailable` is also checked in-process for each step where
the database can go away (membership, gate, handler), on SQLite with a stand-in failure.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import mcp_types as types
import pytest

from mana_http.testing import McpTestServer
from mcp_server import META_ERROR
from tests.mcp.support import Installation, ServerProcess, World, seed_world
from tool_registry.context import CallContext
from tool_registry.gate import Decision, GateRequest
from tool_registry.store import CORE_MIGRATIONS, Transaction, open_database
from tool_registry.store import postgres as postgres_store
from tool_registry.store.postgres import UNAVAILABLE_MESSAGE, DatabaseUnavailable
from tool_registry.testing import ToolKit, tool_kit
from tool_registry.testing.plugin import postgres_unavailable
from tool_registry.testing.postgres import PostgresUnavailable, ThrowawayPostgres

PROTOCOL = "2026-07-28"
WRITERS = 3
# Failure guards only: how long each phase may take at most.
PHASE_TIMEOUT = 90.0


@pytest.fixture
def private_postgres() -> Iterator[ThrowawayPostgres]:
    """A PostgreSQL server of this test's own (the session's shared one is never stopped)."""
    server = ThrowawayPostgres()
    try:
        server.start()
    except PostgresUnavailable as exc:
        postgres_unavailable(str(exc))
    try:
        yield server
    finally:
        server.stop()


@dataclass
class Tally:
    """What the writers saw: acknowledged record ids, unavailable errors, anything else."""

    acknowledged: list[str] = field(default_factory=list)
    unavailable: int = 0
    unexpected: list[str] = field(default_factory=list)
    last_ok_at: float = 0.0
    last_unavailable_at: float = 0.0


def _body(response: httpx.Response) -> dict[str, Any]:
    if response.headers.get("content-type", "").startswith("text/event-stream"):
        for line in response.text.splitlines():
            if line.startswith("data:") and line[5:].strip():
                found: dict[str, Any] = json.loads(line[5:])
                return found
        return {}
    parsed: dict[str, Any] = response.json()
    return parsed


async def _call(http: httpx.AsyncClient, url: str, title: str, n: int) -> tuple[str, str]:
    """One stateless (2026-07-28) `notes.create`: ("ok", record id), ("unavailable", "") or
    ("unexpected", what came back)."""
    request = {
        "jsonrpc": "2.0",
        "id": n,
        "method": "tools/call",
        "params": {
            "name": "notes.create",
            "arguments": {"title": title, "body": "written while the database restarts"},
            "_meta": {
                "io.modelcontextprotocol/protocolVersion": PROTOCOL,
                "io.modelcontextprotocol/clientCapabilities": {},
            },
        },
    }
    headers = {
        "mcp-protocol-version": PROTOCOL,
        "mcp-method": "tools/call",
        "mcp-name": "notes.create",
    }
    try:
        response = await http.post(url, json=request, headers=headers)
    except httpx.HTTPError as exc:
        return "unexpected", f"transport error: {exc!r}"
    text = response.text
    if "Traceback" in text:
        return "unexpected", f"a stack trace reached the client: {text[:500]}"
    try:
        body = _body(response)
    except ValueError:
        return "unexpected", f"HTTP {response.status_code}: {text[:300]}"
    if response.status_code == 503:
        reason = body.get("error", {}).get("data", {}).get("reason")
        return ("unavailable", "") if reason == "unavailable" else ("unexpected", text[:300])
    result = body.get("result")
    if response.status_code != 200 or not isinstance(result, dict):
        return "unexpected", f"HTTP {response.status_code}: {text[:300]}"
    if not result.get("isError"):
        return "ok", str(result["structuredContent"]["id"])
    error = (result.get("_meta") or {}).get(META_ERROR) or {}
    if error.get("reason") == "unavailable":
        return "unavailable", ""
    return "unexpected", text[:300]


async def _writer(
    index: int, world: World, server: ServerProcess, tally: Tally, stop: asyncio.Event
) -> None:
    auth = {"authorization": f"Bearer {world.token(world.demo_id)}"}
    base = {"accept": "application/json, text/event-stream", **auth}
    async with httpx.AsyncClient(headers=base, timeout=60.0) as http:
        n = 0
        while not stop.is_set():
            n += 1
            kind, detail = await _call(http, server.mcp_url, f"w{index}-{n}", n)
            now = time.monotonic()
            if kind == "ok":
                tally.acknowledged.append(detail)
                tally.last_ok_at = now
            elif kind == "unavailable":
                tally.unavailable += 1
                tally.last_unavailable_at = now
                await asyncio.sleep(0.05)  # a client backing off a little
            else:
                tally.unexpected.append(detail)


async def _health(server: ServerProcess) -> int:
    async with httpx.AsyncClient(timeout=30.0) as http:
        return (await http.get(f"{server.url}/health")).status_code


async def _until(condition: Any, what: str, tally: Tally) -> None:
    deadline = time.monotonic() + PHASE_TIMEOUT
    while not condition():
        assert time.monotonic() < deadline, (
            f"timed out waiting until {what}: {len(tally.acknowledged)} acknowledged, "
            f"{tally.unavailable} unavailable, unexpected: {tally.unexpected[:3]}"
        )
        await asyncio.sleep(0.05)


async def _restart_under_load(pg: ThrowawayPostgres, world: World, server: ServerProcess) -> Tally:
    tally = Tally()
    stop = asyncio.Event()
    writers = [asyncio.create_task(_writer(i, world, server, tally, stop)) for i in range(WRITERS)]
    try:
        await _until(lambda: len(tally.acknowledged) >= 20, "20 calls were acknowledged", tally)
        await asyncio.to_thread(pg.stop_server, "fast")
        await _until(lambda: tally.unavailable >= 2 * WRITERS, "calls failed as unavailable", tally)
        assert await _health(server) == 503
        await asyncio.to_thread(pg.start_server)
        restarted_at = time.monotonic()
        before = len(tally.acknowledged)
        await _until(
            lambda: len(tally.acknowledged) >= before + 20 and tally.last_ok_at > restarted_at,
            "calls succeeded again after the restart",
            tally,
        )
        healthy: list[int] = []

        async def health_ok() -> bool:
            healthy.append(await _health(server))
            return healthy[-1] == 200

        deadline = time.monotonic() + PHASE_TIMEOUT
        while not await health_ok():  # the probe may take a moment on a loaded machine
            assert time.monotonic() < deadline, f"/health never recovered: {healthy[-5:]}"
            await asyncio.sleep(0.2)
    finally:
        stop.set()
        await asyncio.gather(*writers)
    return tally


def test_a_server_rides_out_a_postgres_restart(
    tmp_path: Path, private_postgres: ThrowawayPostgres
) -> None:
    installation = Installation(tmp_path, private_postgres.url)
    world = seed_world(installation)
    server = ServerProcess(installation, env={"MANA_RATE_LIMIT": "off"})
    try:
        server.wait_ready()
        pid = server.proc.pid
        tally = asyncio.run(_restart_under_load(private_postgres, world, server))
        assert server.proc.poll() is None and server.proc.pid == pid  # never restarted
    finally:
        code = server.stop()
    assert tally.unexpected == [], tally.unexpected[:5]
    assert tally.unavailable > 0
    assert code == 0, server.stderr()
    stored = {row[0] for row in asyncio.run(installation.query("SELECT id FROM records"))}
    missing = set(tally.acknowledged) - stored
    assert not missing, f"{len(missing)} acknowledged writes are not in the database"


# -- the pipeline's mapping, in-process -----------------------------------------------------------


class _LostGate:
    async def check(self, request: GateRequest) -> Decision:
        raise DatabaseUnavailable(UNAVAILABLE_MESSAGE)


async def test_the_pipeline_reports_a_lost_database_as_unavailable(tmp_path: Path) -> None:
    async with tool_kit(tmp_path / "mana.db", gate=_LostGate()) as kit:
        user = await kit.user()
        outcome = await kit.call_as(user, None, "notes.create", {"title": "x"})
        assert outcome.status == "error" and outcome.error is not None
        assert outcome.error.reason == "unavailable"
        assert "try again" in outcome.error.message

        async def lost(*args: Any, **kwargs: Any) -> Any:
            raise DatabaseUnavailable(UNAVAILABLE_MESSAGE)

        kit.pipeline.resolve = lost  # type: ignore[method-assign]
        outcome = await kit.pipeline.invoke(
            "notes.create", {"title": "x"}, CallContext(user_id=user.id)
        )
        assert (outcome.status, outcome.reason) == ("error", "unavailable")
        audit = await kit.audit()
        assert [row["reason"] for row in audit].count("unavailable") == 2


async def test_an_mcp_client_sees_unavailable_not_an_internal_error(
    mana_kit: ToolKit, mana_mcp: McpTestServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = await mana_kit.user()

    @asynccontextmanager
    async def lost(scopes: Sequence[str] = ()) -> AsyncIterator[Transaction]:
        raise DatabaseUnavailable(UNAVAILABLE_MESSAGE)
        yield  # pragma: no cover - makes this an async generator

    monkeypatch.setattr(mana_kit.db, "transaction", lost)
    async with mana_mcp.client(user) as client:
        result = await client.call_tool("habits.create", {"name": "never"})
    monkeypatch.undo()
    assert result.is_error and result.meta is not None
    assert result.meta["mana/error"]["reason"] == "unavailable"
    block = result.content[0]
    assert isinstance(block, types.TextContent)
    assert "unavailable right now" in block.text and "Traceback" not in block.text


# -- PostgresDatabase on its own ----------------------------------------------------------------


def _one(conn: Any) -> int:
    return int(conn.execute("SELECT count(*) FROM users").fetchone()[0])


async def test_units_after_a_restart_run_on_fresh_connections(
    private_postgres: ThrowawayPostgres,
) -> None:
    """While the server is down a read and a write fail as `unavailable` with the plain message
    (never the pool's timeout or a driver error); once it is back the pools reconnect by
    themselves and reads, writes and transactions succeed again."""
    db = await open_database(private_postgres.url)
    try:
        # Fill both pools with connections that the restart will kill.
        await asyncio.gather(*(db.read(_one) for _ in range(4)))
        await asyncio.gather(*(db.write(_one) for _ in range(4)))
        await asyncio.to_thread(private_postgres.stop_server, "fast")
        with pytest.raises(DatabaseUnavailable) as lost:
            await db.read(_one)
        assert lost.value.message == UNAVAILABLE_MESSAGE and lost.value.reason == "unavailable"
        with pytest.raises(DatabaseUnavailable):
            await db.write(_one)
        await asyncio.to_thread(private_postgres.start_server)
        # The pools reconnect by themselves: reads succeed again (within seconds; the deadline
        # only guards against never), and then writes and transactions on the first try.
        deadline = time.monotonic() + PHASE_TIMEOUT
        while True:
            try:
                assert await db.read(_one) == 0
                break
            except DatabaseUnavailable:
                assert time.monotonic() < deadline, "the read pool never reconnected"
                await asyncio.sleep(0.2)
        assert await db.write(_one, serialised=False) == 0
        async with db.transaction() as tx:
            assert await tx.run(_one) == 0
    finally:
        await db.close()


async def test_a_dead_pooled_connection_is_replaced_without_failing_the_unit(
    private_postgres: ThrowawayPostgres,
) -> None:
    """A restart faster than any call leaves every pooled connection dead: the first read, write
    and transaction afterwards still succeed (each finds its connection dead and runs once more
    on a fresh one)."""
    db = await open_database(private_postgres.url)
    try:
        await asyncio.gather(*(db.read(_one) for _ in range(4)))
        await asyncio.gather(*(db.write(_one) for _ in range(4)))
        await asyncio.to_thread(private_postgres.stop_server, "fast")
        await asyncio.to_thread(private_postgres.start_server)
        assert await db.read(_one) == 0
        assert await db.write(_one) == 0
        await asyncio.to_thread(private_postgres.stop_server, "fast")
        await asyncio.to_thread(private_postgres.start_server)
        async with db.transaction() as tx:
            assert await tx.run(_one) == 0
    finally:
        await db.close()


async def test_a_busy_pool_is_not_taken_for_an_outage(
    private_postgres: ThrowawayPostgres, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every write connection held past the wait: the waiting call fails as `unavailable`, but
    the server still answers, so later calls are not switched to the short outage wait."""
    monkeypatch.setattr(postgres_store, "ACQUIRE_TIMEOUT_SECONDS", 0.5)
    db = await postgres_store.PostgresDatabase.open(
        private_postgres.url, CORE_MIGRATIONS, writers=1
    )
    held, release = asyncio.Event(), asyncio.Event()

    async def hold() -> None:
        async with db.transaction():
            held.set()
            await release.wait()

    try:
        holder = asyncio.create_task(hold())
        await held.wait()
        with pytest.raises(DatabaseUnavailable):
            await db.write(_one)
        assert not db._outage
        release.set()
        await holder
        assert await db.write(_one) == 0
    finally:
        await db.close()
