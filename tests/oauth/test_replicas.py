"""The sign-in across two `mana serve --http` replicas on one PostgreSQL database behind a
round-robin proxy (no stickiness): every step of the flow may land on either process, because
browser sessions, codes, connections and refresh tokens live in the database."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx2
import jwt
import pytest

from tests.mcp.support import (
    BOB_EMAIL,
    BOB_PASSWORD,
    Installation,
    ServerProcess,
    http_client,
    seed_world_async,
)
from tests.oauth.support import OAuthFlow
from tool_registry.testing.plugin import new_database
from tool_registry.testing.proxy import RoundRobinProxy


@pytest.fixture
async def proxied(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[RoundRobinProxy]:
    """Two replicas whose public URL is the proxy's (the one URL clients and browsers see)."""
    with new_database(request, "postgres", tmp_path / "mana.db") as url:
        world = await seed_world_async(Installation(tmp_path, url))
        async with RoundRobinProxy([("127.0.0.1", 1)]) as proxy:
            env = {"MANA_PUBLIC_URL": proxy.url}
            replicas = [ServerProcess(world.installation, env=env) for _ in range(2)]
            try:
                for replica in replicas:
                    await asyncio.to_thread(replica.wait_ready)
                proxy.backends[:] = [("127.0.0.1", r.port) for r in replicas]
                yield proxy
            finally:
                for replica in replicas:
                    replica.stop()


async def test_every_step_may_land_on_either_replica(proxied: RoundRobinProxy) -> None:
    async with httpx2.AsyncClient(base_url=proxied.url, timeout=30.0) as http:
        flow = OAuthFlow(http)
        metadata = (await http.get("/.well-known/oauth-authorization-server")).json()
        assert metadata["issuer"] == proxied.url
        client_id = (await flow.register(client_name="Replica Client"))["client_id"]
        tokens = await flow.connect(BOB_EMAIL, BOB_PASSWORD, client_id=client_id)
        rotated = await flow.refresh(client_id, tokens.refresh_token)
        assert rotated.status_code == 200, rotated.text
        # the rotated token is known as rotated on the other replica too: reuse ends it all
        again = await flow.refresh(client_id, tokens.refresh_token)
        assert again.json()["error"] == "invalid_grant"
        newest = rotated.json()["refresh_token"]
        for _ in range(2):  # once per replica
            assert (await flow.refresh(client_id, newest)).json()["error"] == "invalid_grant"
    assert proxied.served_by(0) >= 4 and proxied.served_by(1) >= 4

    claims = jwt.decode(tokens.access_token, options={"verify_signature": False})
    assert claims["aud"] == f"{proxied.url}/mcp"


async def test_a_connected_client_uses_mcp_through_both_replicas(
    proxied: RoundRobinProxy,
) -> None:
    async with httpx2.AsyncClient(base_url=proxied.url, timeout=30.0) as http:
        tokens = await OAuthFlow(http).connect(BOB_EMAIL, BOB_PASSWORD, access="read")
    async with http_client(f"{proxied.url}/mcp", tokens.access_token) as (client, _):
        for _ in range(2):
            names = {tool.name for tool in (await client.list_tools()).tools}
            assert "me.listReferenceImages" in names and "habits.create" not in names
