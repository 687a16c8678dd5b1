"""OAuth-shaped access tokens at the MCP endpoint, in both protocol eras and on both backends:
scopes narrow the tool list and are enforced on calls (HTTP 403 scope challenge before the
SDK, and the pipeline behind it); the token's `space` claim is the default space
(`X-Mana-Space` still overrides it, membership still decides); a revoked connection's tokens
are refused; tokens without a scope claim keep full access."""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

import httpx2
import pytest

from mana_http.guard import McpGuard
from mana_http.testing import McpTestServer
from tool_registry.access_scopes import READ_SCOPE, WRITE_SCOPE
from tool_registry.store.accounts import User
from tool_registry.testing import ToolKit

READ_ONLY = READ_SCOPE
READ_WRITE = f"{READ_SCOPE} {WRITE_SCOPE}"
LEGACY = "2025-11-25"
MODERN = "2026-07-28"
ACCEPT = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
MODES = ("auto", "legacy")  # the 2026-07-28 era (auto) and 2025-11-25 sessions


class Grants:
    """A stand-in for the authorization server's connection check."""

    def __init__(self) -> None:
        self.revoked: set[str] = set()
        self.asked: list[str] = []

    async def active(self, gid: str) -> bool:
        self.asked.append(gid)
        return gid not in self.revoked


def _guard(server: McpTestServer) -> McpGuard:
    """The app's MCP guard, found through the ASGI layers in front of it."""
    node: Any = server.app.asgi
    while not isinstance(node, McpGuard):
        node = node.mcp if hasattr(node, "mcp") else node.app
    return node


def _token(server: McpTestServer, user: User, **claims: Any) -> str:
    """An access token as the built-in authorization server issues it: for the resource URL,
    with the connection's claims."""
    issuer = server.auth.issuer
    assert issuer is not None
    return issuer.issue(
        user.id,
        email=user.email,
        ttl=timedelta(minutes=5),
        audience=server.app.resource.resource,
        claims=claims,
    ).token


def _bearer(token: str, space: str | None = None) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {token}"}
    if space is not None:
        headers["X-Mana-Space"] = space
    return headers


def _challenge(header: str) -> dict[str, str]:
    assert header.startswith("Bearer ")
    return dict(re.findall(r'(\w+)="([^"]*)"', header))


def _call(name: str, args: dict[str, Any], request_id: int = 7) -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "id": request_id,
        "method": "tools/call",
        "params": {"name": name, "arguments": args},
    }


def _modern(message: dict[str, Any]) -> dict[str, Any]:
    meta = {
        "io.modelcontextprotocol/protocolVersion": MODERN,
        "io.modelcontextprotocol/clientCapabilities": {},
    }
    return {**message, "params": {**message.get("params", {}), "_meta": meta}}


def _initialize() -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "id": 0,
        "method": "initialize",
        "params": {
            "protocolVersion": LEGACY,
            "capabilities": {},
            "clientInfo": {"name": "scope-test", "version": "0"},
        },
    }


async def _post(http: httpx2.AsyncClient, body: Any, headers: dict[str, str]) -> httpx2.Response:
    return await http.post("/mcp", json=body, headers={**ACCEPT, **headers})


async def _raw_call(http: httpx2.AsyncClient, path: str, body: Any) -> httpx2.Response:
    """POST `body` (a tools/call or a batch) on one of the guard's three request paths."""
    if path == "stateless":
        first = body[0] if isinstance(body, list) else body
        hdrs = {
            "mcp-protocol-version": MODERN,
            "mcp-method": "tools/call",
            "mcp-name": first["params"]["name"],
        }
        modern = [_modern(m) for m in body] if isinstance(body, list) else _modern(body)
        return await _post(http, modern, hdrs)
    if path == "opening":  # no session yet: the request that would open one
        return await _post(http, body, {})
    opened = await _post(http, _initialize(), {})
    assert opened.status_code == 200, opened.text
    sid = opened.headers["mcp-session-id"]
    return await _post(http, body, {"mcp-session-id": sid, "mcp-protocol-version": LEGACY})


def _names(tools: Iterable[Any]) -> set[str]:
    return {t.name for t in tools}


async def _habit_count(kit: ToolKit) -> int:
    sql = "SELECT count(*) FROM records WHERE collection = 'habits'"
    return int(await kit.db.read(lambda c: c.execute(sql).fetchone()[0]))


# -- listing and calling -----------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
async def test_read_only_token_lists_and_calls_read_tools_only(
    mana_mcp: McpTestServer, mana_kit: ToolKit, mode: Any
) -> None:
    user = await mana_kit.user()
    every = mana_kit.pipeline.visible_tools("personal", "mcp")
    reads = {s.name for s in every if s.read_only}
    token = _token(mana_mcp, user, scope=READ_ONLY)
    async with (
        mana_mcp.http(headers=_bearer(token)) as http,
        mana_mcp.client(user, http=http, mode=mode) as client,
    ):
        listed = _names((await client.list_tools()).tools)
        assert listed == reads and "habits.create" not in listed
        result = await client.call_tool("habits.list", {})  # the body was read, then replayed
        assert not result.is_error, result.content
    assert len(every) > len(reads)


@pytest.mark.parametrize("path", ["stateless", "session", "opening"])
async def test_read_only_token_gets_the_scope_challenge_for_a_write_tool(
    mana_mcp: McpTestServer, mana_kit: ToolKit, path: str
) -> None:
    _guard(mana_mcp).grants = Grants()  # "conn_1" is live (the store knows no such connection)
    user = await mana_kit.user()
    token = _token(mana_mcp, user, scope=READ_ONLY, client_id="c1", gid="conn_1")
    async with mana_mcp.http(headers=_bearer(token)) as http:
        resp = await _raw_call(http, path, _call("habits.create", {"name": "Walk"}))
    assert resp.status_code == 403, resp.text
    params = _challenge(resp.headers["www-authenticate"])
    assert params["error"] == "insufficient_scope"
    assert params["scope"] == "mana:read mana:write"
    assert params["resource_metadata"] == mana_mcp.app.resource.metadata_url
    body = resp.json()
    assert body["id"] == 7
    assert body["error"]["data"]["reason"] == "insufficient-scope"
    assert "mana:write" in body["error"]["message"] and "habits.create" in body["error"]["message"]
    assert "mcp-session-id" not in resp.headers or path == "session"
    assert await _habit_count(mana_kit) == 0


@pytest.mark.parametrize("path", ["stateless", "session"])
async def test_a_batch_with_one_write_call_is_refused_whole(
    mana_mcp: McpTestServer, mana_kit: ToolKit, path: str
) -> None:
    user = await mana_kit.user()
    token = _token(mana_mcp, user, scope=READ_ONLY)
    batch = [_call("habits.list", {}, 5), _call("habits.create", {"name": "Walk"}, 6)]
    async with mana_mcp.http(headers=_bearer(token)) as http:
        resp = await _raw_call(http, path, batch)
    assert resp.status_code == 403, resp.text
    assert resp.json()["id"] == 6
    assert await _habit_count(mana_kit) == 0


async def test_unknown_tool_of_a_read_only_token_reaches_the_pipeline(
    mana_mcp: McpTestServer, mana_kit: ToolKit
) -> None:
    user = await mana_kit.user()
    token = _token(mana_mcp, user, scope=READ_ONLY)
    async with (
        mana_mcp.http(headers=_bearer(token)) as http,
        mana_mcp.client(user, http=http) as client,
    ):
        result = await client.call_tool("habits.fly", {})
    assert result.is_error and result.meta is not None
    assert result.meta["mana/error"]["reason"] == "unknown-tool"


@pytest.mark.parametrize("mode", MODES)
async def test_write_token_lists_everything_and_writes(
    mana_mcp: McpTestServer, mana_kit: ToolKit, mode: Any
) -> None:
    _guard(mana_mcp).grants = Grants()  # "conn_2" is live (the store knows no such connection)
    user = await mana_kit.user()
    token = _token(mana_mcp, user, scope=READ_WRITE, client_id="c1", gid="conn_2")
    every = {s.name for s in mana_kit.pipeline.visible_tools("personal", "mcp")}
    async with (
        mana_mcp.http(headers=_bearer(token)) as http,
        mana_mcp.client(user, http=http, mode=mode) as client,
    ):
        assert _names((await client.list_tools()).tools) == every
        result = await client.call_tool("habits.create", {"name": "Walk"})
        assert not result.is_error, result.content
    assert await _habit_count(mana_kit) == 1


@pytest.mark.parametrize("mode", MODES)
async def test_local_token_without_scope_claim_is_unchanged(
    mana_mcp: McpTestServer, mana_kit: ToolKit, mode: Any
) -> None:
    user = await mana_kit.user()
    every = {s.name for s in mana_kit.pipeline.visible_tools("personal", "mcp")}
    async with mana_mcp.client(user, mode=mode) as client:  # `mana token issue`'s shape
        assert _names((await client.list_tools()).tools) == every
        result = await client.call_tool("habits.create", {"name": "Walk"})
        assert not result.is_error, result.content


async def test_token_without_read_scope_is_refused(
    mana_mcp: McpTestServer, mana_kit: ToolKit
) -> None:
    user = await mana_kit.user()
    for scope in (WRITE_SCOPE, "", "openid"):
        token = _token(mana_mcp, user, scope=scope)
        async with mana_mcp.http(headers=_bearer(token)) as http:
            resp = await _post(http, _initialize(), {})
        assert resp.status_code == 403, resp.text
        params = _challenge(resp.headers["www-authenticate"])
        assert (params["error"], params["scope"]) == ("insufficient_scope", READ_SCOPE)
        assert resp.json()["error"]["data"]["reason"] == "insufficient-scope"
        assert "mcp-session-id" not in resp.headers


# -- the connection's space ----------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
async def test_space_claim_is_the_default_and_the_header_overrides_it(
    mana_mcp: McpTestServer, mana_kit: ToolKit, mode: Any
) -> None:
    user = await mana_kit.user()
    personal = await mana_kit.personal(user)
    brand = await mana_kit.space(user, "brand")
    token = _token(mana_mcp, user, scope=READ_ONLY, space=brand.id)

    async def space_of_a_call(space_header: str | None) -> str:
        async with (
            mana_mcp.http(headers=_bearer(token, space_header)) as http,
            mana_mcp.client(user, http=http, mode=mode) as client,
        ):
            result = await client.call_tool("me.listReferenceImages", {})
        assert not result.is_error and result.meta is not None, result.content
        return str(result.meta["mana/spaceId"])

    assert await space_of_a_call(None) == brand.id
    assert await space_of_a_call(personal.id) == personal.id


async def test_space_claim_of_a_space_the_user_left_is_refused(
    mana_mcp: McpTestServer, mana_kit: ToolKit
) -> None:
    owner, user = await mana_kit.user(), await mana_kit.user()
    team = await mana_kit.space(owner, "team")
    await mana_kit.add_member(team, user)
    token = _token(mana_mcp, user, scope=READ_ONLY, space=team.id)
    async with mana_mcp.http(headers=_bearer(token)) as http:
        assert (await _post(http, _initialize(), {})).status_code == 200
        await mana_kit.db.write(
            lambda c: c.execute(
                "DELETE FROM memberships WHERE space_id = ? AND user_id = ?", (team.id, user.id)
            )
        )
        resp = await _post(http, _initialize(), {})
    assert resp.status_code == 403, resp.text
    assert resp.json()["error"]["data"]["reason"] == "not-a-member"


# -- revoked connections -------------------------------------------------------------------------


async def test_revoked_connection_token_is_refused(
    mana_mcp: McpTestServer, mana_kit: ToolKit
) -> None:
    grants = Grants()
    _guard(mana_mcp).grants = grants
    user = await mana_kit.user()
    token = _token(mana_mcp, user, scope=READ_ONLY, client_id="c1", gid="conn_9")
    async with mana_mcp.http(headers=_bearer(token)) as http:
        assert (await _post(http, _initialize(), {})).status_code == 200
        grants.revoked.add("conn_9")
        resp = await _post(http, _initialize(), {})
        assert resp.status_code == 401, resp.text
        params = _challenge(resp.headers["www-authenticate"])
        assert params["error"] == "invalid_token"
        assert params["resource_metadata"] == mana_mcp.app.resource.metadata_url
        assert resp.json()["error"]["data"]["reason"] == "connection-revoked"
        assert "revoked" in resp.json()["error"]["message"]
    assert grants.asked == ["conn_9", "conn_9"]
    # a token without a connection (local) is never looked up
    async with mana_mcp.http(user) as http:
        assert (await _post(http, _initialize(), {})).status_code == 200
    assert grants.asked == ["conn_9", "conn_9"]


async def test_read_only_session_keeps_one_tool_view_per_space_type(
    mana_mcp: McpTestServer, mana_kit: ToolKit
) -> None:
    """A read-only 2025-11-25 session is listed read tools only, but its list_changed view is
    the space type's full set (what every replica stores and compares), so listing and then
    calling sends no spurious tools/list_changed."""
    user = await mana_kit.user()
    token = _token(mana_mcp, user, scope=READ_ONLY)
    async with mana_mcp.http(headers=_bearer(token)) as http:
        opened = await _post(http, _initialize(), {})
        hdrs = {"mcp-session-id": opened.headers["mcp-session-id"], "mcp-protocol-version": LEGACY}
        listed = await _post(http, {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}, hdrs)
        assert listed.status_code == 200 and "habits.create" not in listed.text
        called = await _post(http, _call("habits.list", {}, 3), hdrs)
        assert called.status_code == 200, called.text
        assert '"id":3' in called.text and "list_changed" not in called.text
    (entry,) = mana_mcp.app.sessions.of_user(user.id)
    assert entry.watch.seen == mana_mcp.app.adapter.catalog.names("personal")
