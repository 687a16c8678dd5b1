"""GrantCheck, the guard's "is this token's connection still live?": answers from the database,
cached per gid for at most 2 s (a revocation on any replica takes effect within that), and a
use recorded as `last_used_at` at most once a minute per connection; the HTTP app's guard asks
it for every token of a connection."""

from __future__ import annotations

import asyncio
from typing import Any

import jwt
import pytest

from mana_http.guard import McpGuard
from mana_http.testing import McpTestServer
from mana_oauth.connections import CACHE_SECONDS, TOUCH_SECONDS, GrantCheck
from mana_oauth.store import Connection, OAuthStore
from tests.mcp.support import JSON_ACCEPT, MODERN_HEADERS, modern_tools_list
from tests.oauth.helpers import SetClock, code_record, connect_with_code, oauth_database
from tests.oauth.support import PASSWORD, OAuthFlow
from tool_registry.testing import ToolKit


class CountingStore:
    """An `OAuthStore` in front of which reads and touches are counted."""

    def __init__(self, store: OAuthStore) -> None:
        self.store = store
        self.reads = 0
        self.touches: list[tuple[str, float]] = []

    async def connection(self, gid: str) -> Connection | None:
        self.reads += 1
        return await self.store.connection(gid)

    async def touch(self, gid: str, at: float) -> None:
        self.touches.append((gid, at))
        await self.store.touch(gid, at)


async def test_a_revocation_is_seen_within_the_cache_time_not_before_a_read(
    database_target: str,
) -> None:
    clock = SetClock()
    async with oauth_database(database_target) as db:
        store = OAuthStore(db, clock)
        counting = CountingStore(store)
        check = GrantCheck(counting, clock=clock)
        gid, _ = await connect_with_code(store, "code", code_record(clock))

        assert await check.active(gid)
        assert await check.active(gid)
        assert counting.reads == 1  # the second answer came from the cache

        # revoked elsewhere (another replica, the CLI): this process may answer from its
        # cache until the cache time is over, then reads the revocation
        await OAuthStore(db, clock).revoke_connection(gid)
        clock.advance(CACHE_SECONDS - 0.5)
        assert await check.active(gid)
        clock.advance(0.5)
        assert not await check.active(gid)
        assert counting.reads == 2
        assert not await check.active(gid)  # the negative answer is cached too
        assert counting.reads == 2


async def test_unknown_connections_are_not_active(database_target: str) -> None:
    clock = SetClock()
    async with oauth_database(database_target) as db:
        counting = CountingStore(OAuthStore(db, clock))
        check = GrantCheck(counting, clock=clock)
        assert not await check.active("conn_never_issued")
        assert counting.touches == []


async def test_use_is_recorded_at_most_once_a_minute_per_connection(
    database_target: str,
) -> None:
    clock = SetClock()
    async with oauth_database(database_target) as db:
        store = OAuthStore(db, clock)
        counting = CountingStore(store)
        check = GrantCheck(counting, clock=clock)
        gid, _ = await connect_with_code(store, "a", code_record(clock))
        other, _ = await connect_with_code(store, "b", code_record(clock))
        start = clock()

        for _ in range(3):
            assert await check.active(gid)
            clock.advance(TOUCH_SECONDS / 3 - 1)
        assert await check.active(other)
        assert counting.touches == [(gid, start), (other, clock())]
        clock.advance(1 + 3)  # a minute after the first touch of gid
        assert await check.active(gid)
        assert counting.touches[-1] == (gid, clock())

        connection = await store.connection(gid)
        assert connection is not None and connection.last_used_at == clock()


async def test_concurrent_requests_of_one_connection_record_one_use(database_target: str) -> None:
    clock = SetClock()
    async with oauth_database(database_target) as db:
        store = OAuthStore(db, clock)
        counting = CountingStore(store)
        check = GrantCheck(counting, clock=clock)
        gid, _ = await connect_with_code(store, "code", code_record(clock))
        answers = await asyncio.gather(*(check.active(gid) for _ in range(5)))
        assert all(answers)
        assert len(counting.touches) == 1


async def test_forget_drops_the_cached_answer(database_target: str) -> None:
    clock = SetClock()
    async with oauth_database(database_target) as db:
        store = OAuthStore(db, clock)
        check = GrantCheck(store, clock=clock)
        gid, _ = await connect_with_code(store, "code", code_record(clock))
        assert await check.active(gid)
        await store.revoke_connection(gid)
        check.forget(gid)
        assert not await check.active(gid)


class MemoryConnections:
    """Every gid is a live connection; nothing is stored."""

    async def connection(self, gid: str) -> Connection | None:
        return Connection(gid, "usr", "client", "Client", "spc", ("mana:read",), 0.0, None, None)

    async def touch(self, gid: str, at: float) -> None:
        return None


async def test_memory_holds_only_the_connections_seen_recently() -> None:
    clock = SetClock()
    check = GrantCheck(MemoryConnections(), clock=clock)
    for i in range(20_000):  # 1000 new connections a second for 20 s
        clock.advance(0.001)
        assert await check.active(f"conn_{i}")
    assert check.cached() <= 4096  # not 20 000: answers older than 2 s were dropped


def test_negative_times_are_refused() -> None:
    with pytest.raises(ValueError, match="must not be negative"):
        GrantCheck(CountingStore(None), cache_seconds=-1)  # type: ignore[arg-type]


def _guard(server: McpTestServer) -> McpGuard:
    """The app's MCP guard, found through the ASGI layers in front of it."""
    node: Any = server.app.asgi
    while not isinstance(node, McpGuard):
        node = node.mcp if hasattr(node, "mcp") else node.app
    return node


async def test_the_mcp_endpoint_refuses_the_tokens_of_a_revoked_connection(
    mana_mcp: McpTestServer, mana_kit: ToolKit
) -> None:
    user = await mana_kit.user(password=PASSWORD)
    async with mana_mcp.http() as http:
        flow = OAuthFlow(http)
        client_id = (await flow.register(client_name="Claude"))["client_id"]
        tokens = await flow.connect(user.email, PASSWORD, client_id=client_id)
    gid = jwt.decode(tokens.access_token, options={"verify_signature": False})["gid"]
    oauth = mana_mcp.app.oauth
    assert oauth is not None
    bearer = {"Authorization": f"Bearer {tokens.access_token}", **JSON_ACCEPT, **MODERN_HEADERS}

    async with mana_mcp.http() as http:
        listed = await http.post("/mcp", json=modern_tools_list(), headers=bearer)
        assert listed.status_code == 200, listed.text
        connection = await oauth.store.connection(gid)
        assert connection is not None and connection.last_used_at is not None  # use recorded

        # `mana connections revoke` in another process; this one's cached answer runs out
        assert await oauth.store.revoke_connection_of(user.id, gid) is not None
        grants = _guard(mana_mcp).grants
        assert isinstance(grants, GrantCheck)
        grants.forget(gid)
        refused = await http.post("/mcp", json=modern_tools_list(), headers=bearer)
    assert refused.status_code == 401, refused.text
    assert 'error="invalid_token"' in refused.headers["www-authenticate"]
