"""The daemon's `/health` proves the write path like the MCP server's: 503 with the reason while
another process holds the database's write lock."""

from __future__ import annotations

import asyncio
import json

import pytest

from tests.missions.helpers import World, hold_write_lock, scripted, turn
from tool_registry.store import database


async def _get(port: int, path: str) -> tuple[int, dict[str, object]]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
    await writer.drain()
    raw = await reader.read()
    writer.close()
    await writer.wait_closed()
    head, _, body = raw.decode().partition("\r\n\r\n")
    payload: dict[str, object] = json.loads(body)
    return int(head.split()[1]), payload


async def test_health_is_503_while_another_process_holds_the_write_lock(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(database, "WRITE_PROBE_SECONDS", 0.05)
    daemon = world.daemon(scripted([turn("ok")]), port=0)
    ready = asyncio.Event()
    serving = asyncio.create_task(daemon.serve(on_ready=ready.set))
    await ready.wait()
    assert daemon.http_port
    healthy, before = await _get(daemon.http_port, "/health")

    with hold_write_lock(world.target):
        locked, during = await _get(daemon.http_port, "/health")
    again, _ = await _get(daemon.http_port, "/health")
    daemon.request_stop()
    await serving

    assert healthy == 200 and before["database"] == "ok", before
    assert locked == 503 and during["status"] == "cannot-write", during
    assert during["database"] != "ok" and during["database"], during
    assert again == 200
