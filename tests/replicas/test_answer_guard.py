"""The guard's end of the answer relay, over the in-process HTTP server on both backends: a
POSTed answer naming another process is kept for it and answered 202 Accepted like any answer;
only the session's own user can answer in it (another user's POST is 403 and keeps nothing);
an answer naming this process goes to the SDK (nothing kept); the kept answers go with the
session."""

from __future__ import annotations

from typing import Any

import httpx2

from mana_http import store
from mana_http.answers import named_request_id
from mana_http.testing import McpTestServer
from tool_registry.testing import ToolKit

OTHER_PROCESS = "f" * 32
STREAMS = "application/json, text/event-stream"


async def _rows(server: McpTestServer) -> list[tuple[str, str]]:
    return await server.pipeline.db.read(
        lambda c: [
            (str(r[0]), str(r[1]))
            for r in c.execute("SELECT session_id, instance FROM mcp_answers").fetchall()
        ]
    )


async def _open_session(http: httpx2.AsyncClient) -> dict[str, str]:
    """Open a 2025-11-25 session with raw requests; the headers of its later requests."""
    opened = await http.post(
        "/mcp",
        json={
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-11-25",
                "capabilities": {"elicitation": {}},
                "clientInfo": {"name": "raw", "version": "1"},
            },
        },
        headers={"Accept": STREAMS},
    )
    assert opened.status_code == 200, opened.text
    session = {
        "Accept": STREAMS,
        "Mcp-Session-Id": opened.headers["mcp-session-id"],
        "MCP-Protocol-Version": "2025-11-25",
    }
    done = await http.post(
        "/mcp", json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=session
    )
    assert done.status_code == 202, done.text
    return session


def _answer(request_id: str) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "result": {"action": "decline"}}


def _counted(server: McpTestServer, route: str) -> float:
    value = server.app.metrics.registry.get_sample_value(
        "mana_mcp_client_answers_total", {"route": route}
    )
    return value or 0.0


async def test_answers_for_another_process_are_relayed_for_the_sessions_user_only(
    mana_kit: ToolKit, mana_mcp: McpTestServer
) -> None:
    alice, mallory = await mana_kit.user(), await mana_kit.user()
    async with mana_mcp.http(alice) as http, mana_mcp.http(mallory) as other:
        session = await _open_session(http)
        session_id = session["Mcp-Session-Id"]

        relayed = await http.post(
            "/mcp", json=_answer(named_request_id(OTHER_PROCESS, 1)), headers=session
        )
        assert relayed.status_code == 202, relayed.text
        assert relayed.headers["mcp-session-id"] == session_id
        assert await _rows(mana_mcp) == [(session_id, OTHER_PROCESS)]
        assert _counted(mana_mcp, "forwarded") == 1.0

        # another user cannot answer in this session
        foreign = await other.post(
            "/mcp", json=_answer(named_request_id(OTHER_PROCESS, 2)), headers=session
        )
        assert foreign.status_code == 403
        assert len(await _rows(mana_mcp)) == 1

        # an answer naming this process is the SDK's (no request waits: dropped, nothing kept)
        own = named_request_id(mana_mcp.app.instance, 99)
        mine = await http.post("/mcp", json=_answer(own), headers=session)
        assert mine.status_code == 202, mine.text
        assert len(await _rows(mana_mcp)) == 1

        ended = await http.delete("/mcp", headers=session)
        assert ended.status_code == 200, ended.text
        assert await _rows(mana_mcp) == []
        assert await mana_mcp.pipeline.db.read(store.answer_count) == 0
