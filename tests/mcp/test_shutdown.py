"""SIGTERM: the HTTP server stops accepting, finishes the calls in flight and exits 0; no write
that was answered as done is lost, none that was refused happened."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from pathlib import Path
from typing import Any

import httpx

from mana_cli.runtime import open_runtime
from tool_registry.context import CallContext

from .stdio_support import WAIT_TOOLS, RawStdio, tools_call, wait_for_file
from .support import (
    DEMO_EMAIL,
    JSON_ACCEPT,
    Installation,
    ServerProcess,
    headers,
    http_client,
    seed_world_async,
)


def modern_call(
    request_id: int, tool: str, args: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, str]]:
    body = {
        "jsonrpc": "2.0",
        "id": request_id,
        "method": "tools/call",
        "params": {
            "name": tool,
            "arguments": args,
            "_meta": {
                "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                "io.modelcontextprotocol/clientCapabilities": {},
            },
        },
    }
    hdrs = {
        **JSON_ACCEPT,
        "mcp-protocol-version": "2026-07-28",
        "mcp-method": "tools/call",
        "mcp-name": tool,
    }
    return body, hdrs


async def _count_habits(installation: Installation, prefix: str) -> int:
    async with open_runtime(installation.settings()) as rt:
        user = await rt.accounts.require_user(DEMO_EMAIL)
        out = await rt.pipeline.invoke(
            "habits.list", {}, CallContext(user_id=user.id, invoker="cli")
        )
        assert out.result is not None
        return sum(1 for h in out.result["habits"] if h["name"].startswith(prefix))


async def test_sigterm_drains_and_exits_zero(tmp_path: Path, database_target: str) -> None:
    world = await seed_world_async(Installation(tmp_path, database_target))
    server = ServerProcess(world.installation, env={"MANA_SHUTDOWN_GRACE_SECONDS": "20"})
    try:
        server.wait_ready()
        token = world.token(world.demo_id, email=DEMO_EMAIL)

        async def write(i: int) -> str:
            body, hdrs = modern_call(i, "habits.create", {"name": f"sigterm-{i}"})
            # one connection per request: no keep-alive race at shutdown
            async with httpx.AsyncClient(timeout=30.0) as http:
                try:
                    resp = await http.post(
                        server.mcp_url, json=body, headers={**hdrs, **headers(token)}
                    )
                except httpx.ConnectError:
                    return "refused"  # listening socket closed
                except (httpx.ReadError, httpx.RemoteProtocolError):
                    return "dropped"  # accepted by the kernel, never served
            if resp.status_code == 503:
                return "refused"  # draining
            if resp.status_code == 200 and resp.json()["result"]["isError"] is False:
                return "ok"
            return f"unexpected {resp.status_code}: {resp.text[:300]}"

        outcomes: list[str] = []
        counter = iter(range(10_000))
        stop_after = 20

        async def worker() -> None:
            while True:
                outcome = await write(next(counter))
                outcomes.append(outcome)
                if outcomes.count("ok") == stop_after:
                    server.terminate()  # the other workers have calls in flight right now
                if outcome != "ok":
                    return

        # A 2025-11-25 session keeps a GET stream open; it must not hold up the shutdown.
        with contextlib.suppress(Exception):  # the client's goodbye DELETE finds no server
            async with http_client(server.mcp_url, token, mode="legacy") as (legacy, _):
                await legacy.list_tools()
                await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(8))), 60)
        code = await asyncio.to_thread(server.proc.wait, 40)
        assert code == 0, server.stderr()
        assert set(outcomes) <= {"ok", "refused", "dropped"}, outcomes
        answered_ok = outcomes.count("ok")
        assert answered_ok >= stop_after
        assert await _count_habits(world.installation, "sigterm-") == answered_ok
    finally:
        server.stop()


async def test_stdio_sigterm_finishes_calls_in_flight_and_exits_zero(
    tmp_path: Path, database_target: str
) -> None:
    """SIGTERM on stdio, with stdin still open: no new request is read, the call in flight
    finishes and is answered, the audit is flushed, and the exit code is 0 as over HTTP."""
    world = await seed_world_async(Installation(tmp_path, database_target))
    signals = tmp_path / "signals"
    signals.mkdir()
    env = {**WAIT_TOOLS, "MANA_KILLTEST_DIR": str(signals)}
    server = await RawStdio.start(world.installation, "stdio-sigterm", env)
    try:
        await server.send(tools_call(1, "killtest.wait", {"label": "in flight at SIGTERM"}))
        await wait_for_file(signals / "entered")
        server.proc.send_signal(signal.SIGTERM)
        await asyncio.sleep(0.1)
        (signals / "release").touch()
        code = await server.wait()
    finally:
        server.kill()
    assert code == 0, server.stderr()
    assert server.answers[1]["result"]["structuredContent"] == {"released": True}
    async with open_runtime(world.installation.settings()) as rt:
        rows = await rt.pipeline.audit.recent(tool="killtest.wait")
    assert [r["outcome"] for r in rows] == ["ok"]
    assert "Traceback" not in server.stderr()
