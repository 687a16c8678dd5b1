"""Attacks on the built-in authorization server, each refused with the right OAuth error (in-
process app, both backends): code replay (and the first exchange's tokens dead afterwards),
missing or wrong PKCE verifier, redirect URI mismatch at authorize and at token, open redirect
attempts (never a Location to an unregistered place), refresh-token reuse revoking the whole
family, a token for another resource, a read-only connection calling a write tool, a code of
another client, authorization errors sent back to the validated redirect URI only, and client
metadata documents at forbidden addresses, on another loopback port, oversized or naming
another client_id."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx2
import pytest

from mana_http import HttpConfig
from mana_http.testing import BASE_URL, McpTestServer
from tests.oauth.document_server import DocumentServer
from tests.oauth.support import PASSWORD, REDIRECT_URI, OAuthFlow, Pkce, query_of
from tool_registry.store.accounts import User
from tool_registry.testing import ToolKit

MCP_HEADERS = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-11-25",
        "capabilities": {},
        "clientInfo": {"name": "attack-test", "version": "1"},
    },
}


@pytest.fixture
async def server(mana_kit: ToolKit, tmp_path: Path) -> AsyncIterator[McpTestServer]:
    """The app with revocations seen at once (no grant cache), so a test needs no waiting."""
    config = HttpConfig(grant_cache_seconds=0.0)
    async with McpTestServer(mana_kit.pipeline, tmp_path / "keys", config=config) as started:
        yield started


@pytest.fixture
async def user(mana_kit: ToolKit) -> User:
    return await mana_kit.user(password=PASSWORD)


async def _mcp_status(server: McpTestServer, access_token: str, body: Any = None) -> int:
    headers = {**MCP_HEADERS, "authorization": f"Bearer {access_token}"}
    async with server.http() as http:
        resp = await http.post("/mcp", json=body or INITIALIZE, headers=headers)
        return resp.status_code


def _error(resp: httpx2.Response) -> str:
    assert resp.status_code in (400, 401), resp.text
    assert resp.headers["cache-control"] == "no-store"
    error: str = resp.json()["error"]
    return error


async def _registered(flow: OAuthFlow, **metadata: Any) -> str:
    client_id: str = (await flow.register(**metadata))["client_id"]
    return client_id


async def test_code_replay_is_refused_and_kills_the_first_exchange(
    server: McpTestServer, user: User
) -> None:
    async with server.http() as http:
        flow = OAuthFlow(http)
        client_id = await _registered(flow)
        pkce = Pkce.new()
        code = await flow.code(flow.params(client_id, pkce), user.email, PASSWORD)
        first = await flow.exchange(client_id, code, pkce.verifier)
        assert first.status_code == 200, first.text
        tokens = first.json()
        assert await _mcp_status(server, tokens["access_token"]) == 200

        replay = await flow.exchange(client_id, code, pkce.verifier)
        assert _error(replay) == "invalid_grant"
        # the connection of the first exchange is revoked: its tokens are dead too
        assert await _mcp_status(server, tokens["access_token"]) == 401
        assert _error(await flow.refresh(client_id, tokens["refresh_token"])) == "invalid_grant"


async def test_pkce_verifier_is_required_and_must_match(server: McpTestServer, user: User) -> None:
    async with server.http() as http:
        flow = OAuthFlow(http)
        client_id = await _registered(flow)
        pkce = Pkce.new()
        params = flow.params(client_id, pkce)
        code = await flow.code(params, user.email, PASSWORD)
        assert _error(await flow.exchange(client_id, code, None)) == "invalid_request"
        wrong = await flow.exchange(client_id, code, Pkce.new().verifier)
        assert _error(wrong) == "invalid_grant"
        # the code is spent by the failed attempt: the right verifier is too late now
        assert _error(await flow.exchange(client_id, code, pkce.verifier)) == "invalid_grant"

        code = await flow.code(params, user.email, PASSWORD)
        malformed = await flow.exchange(client_id, code, "short")
        assert _error(malformed) == "invalid_grant"


async def test_redirect_uri_must_match_at_authorize_and_at_token(
    server: McpTestServer, user: User
) -> None:
    other = "http://127.0.0.1:9/other"
    async with server.http() as http:
        flow = OAuthFlow(http)
        client_id = await _registered(flow, redirect_uris=[REDIRECT_URI, other])
        pkce = Pkce.new()
        # several registered and none named: refused on a page
        unnamed = await flow.authorize(flow.params(client_id, pkce, redirect_uri=None))
        assert unnamed.status_code == 400 and "location" not in unnamed.headers

        code = await flow.code(flow.params(client_id, pkce), user.email, PASSWORD)
        mismatch = await flow.exchange(client_id, code, pkce.verifier, redirect_uri=other)
        assert _error(mismatch) == "invalid_grant"


@pytest.mark.parametrize(
    "redirect_uri",
    [
        "https://evil.example/callback",
        REDIRECT_URI + "?next=https://evil.example",
        REDIRECT_URI + "/evil",
        REDIRECT_URI + "#x",
        "http://127.0.0.1:9/CALLBACK",
        "//evil.example/callback",
    ],
)
async def test_open_redirect_attempts_get_a_page_never_a_redirect(
    server: McpTestServer, redirect_uri: str
) -> None:
    async with server.http() as http:
        flow = OAuthFlow(http)
        client_id = await _registered(flow)
        # even with every other parameter wrong too: no error goes to an unchecked URI
        for extra in ({}, {"response_type": "token"}, {"code_challenge_method": "plain"}):
            params = {**flow.params(client_id, Pkce.new(), redirect_uri=redirect_uri), **extra}
            resp = await flow.authorize(params)
            assert resp.status_code == 400, (redirect_uri, extra)
            assert "location" not in resp.headers
            assert resp.headers["content-type"].startswith("text/html")


async def test_unknown_client_gets_a_page_never_a_redirect(server: McpTestServer) -> None:
    async with server.http() as http:
        flow = OAuthFlow(http)
        for client_id in ("mana_client_nobody", "no-such-client"):
            resp = await flow.authorize(flow.params(client_id, Pkce.new()))
            assert resp.status_code == 400
            assert "location" not in resp.headers
        missing = await http.get("/oauth/authorize", params={"redirect_uri": REDIRECT_URI})
        assert missing.status_code == 400 and "location" not in missing.headers


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"response_type": "token"}, "unsupported_response_type"),
        ({"response_type": None}, "invalid_request"),
        ({"code_challenge": None}, "invalid_request"),
        ({"code_challenge_method": "plain"}, "invalid_request"),
        ({"code_challenge_method": None}, "invalid_request"),
        ({"scope": "mana:read mana:admin"}, "invalid_scope"),
        ({"resource": "https://other.example/mcp"}, "invalid_target"),
    ],
)
async def test_request_errors_go_back_to_the_validated_redirect_uri(
    server: McpTestServer, change: dict[str, str | None], error: str
) -> None:
    async with server.http() as http:
        flow = OAuthFlow(http)
        client_id = await _registered(flow)
        params = {**flow.params(client_id, Pkce.new()), **change}
        resp = await flow.authorize({k: v for k, v in params.items() if v is not None})
        assert resp.status_code == 302, resp.text
        location = resp.headers["location"]
        assert location.startswith(REDIRECT_URI + "?")
        query = query_of(location)
        assert query["error"] == error
        assert query["state"] == "state-123"
        assert query["iss"] == BASE_URL
        assert "code" not in query


async def test_refresh_token_reuse_revokes_the_whole_family(
    server: McpTestServer, user: User
) -> None:
    async with server.http() as http:
        flow = OAuthFlow(http)
        client_id = await _registered(flow)
        first = await flow.connect(user.email, PASSWORD, client_id=client_id)
        rotated = await flow.refresh(client_id, first.refresh_token)
        assert rotated.status_code == 200
        newest = rotated.json()
        assert await _mcp_status(server, newest["access_token"]) == 200

        # a thief replays the old refresh token: refused, and the family is ended
        assert _error(await flow.refresh(client_id, first.refresh_token)) == "invalid_grant"
        assert _error(await flow.refresh(client_id, newest["refresh_token"])) == "invalid_grant"
        assert await _mcp_status(server, newest["access_token"]) == 401
        assert await _mcp_status(server, first.access_token) == 401


async def test_codes_and_refresh_tokens_belong_to_their_client(
    server: McpTestServer, user: User
) -> None:
    async with server.http() as http:
        flow = OAuthFlow(http)
        client_id = await _registered(flow)
        thief = await _registered(flow)
        pkce = Pkce.new()
        code = await flow.code(flow.params(client_id, pkce), user.email, PASSWORD)
        assert _error(await flow.exchange(thief, code, pkce.verifier)) == "invalid_grant"
        tokens = await flow.connect(user.email, PASSWORD, client_id=client_id)
        assert _error(await flow.refresh(thief, tokens.refresh_token)) == "invalid_grant"
        # the rightful client is unaffected
        assert (await flow.refresh(client_id, tokens.refresh_token)).status_code == 200


async def test_token_for_another_resource_is_refused(server: McpTestServer, user: User) -> None:
    other = "https://other.example/mcp"
    async with server.http() as http:
        flow = OAuthFlow(http)
        client_id = await _registered(flow)
        pkce = Pkce.new()
        code = await flow.code(flow.params(client_id, pkce), user.email, PASSWORD)
        asked = await flow.exchange(client_id, code, pkce.verifier, resource=other)
        assert _error(asked) == "invalid_target"
    issuer = server.auth.issuer
    assert issuer is not None
    foreign = issuer.issue(
        user.id,
        email=user.email,
        ttl=timedelta(minutes=5),
        audience=other,
        claims={"scope": "mana:read mana:write"},
    ).token
    assert await _mcp_status(server, foreign) == 401


async def test_read_only_connection_cannot_call_a_write_tool(
    server: McpTestServer, user: User
) -> None:
    async with server.http() as http:
        flow = OAuthFlow(http)
        tokens = await flow.connect(user.email, PASSWORD, access="read")
    assert tokens.scope == "mana:read"
    bearer = {"Authorization": f"Bearer {tokens.access_token}"}
    async with server.http(headers=bearer) as http, server.client(user, http=http) as mcp:
        names = {tool.name for tool in (await mcp.list_tools()).tools}
        assert "me.listReferenceImages" in names and "habits.create" not in names
    call = {
        "jsonrpc": "2.0",
        "id": 2,
        "method": "tools/call",
        "params": {"name": "habits.create", "arguments": {"name": "Walk"}},
    }
    assert await _mcp_status(server, tokens.access_token, call) == 403


async def test_client_authentication_of_a_confidential_client(
    server: McpTestServer, user: User
) -> None:
    async with server.http() as http:
        flow = OAuthFlow(http)
        registered = await flow.register(token_endpoint_auth_method="client_secret_post")
        client_id, secret = registered["client_id"], registered["client_secret"]
        pkce = Pkce.new()
        code = await flow.code(flow.params(client_id, pkce), user.email, PASSWORD)
        # without its secret (as a public client would), then with a wrong one
        unauthenticated = await flow.exchange(client_id, code, pkce.verifier)
        assert unauthenticated.status_code == 401 and _error(unauthenticated) == "invalid_client"
        wrong = await flow.exchange(client_id, code, pkce.verifier, client_secret="nope")
        assert _error(wrong) == "invalid_client"
        ok = await flow.exchange(client_id, code, pkce.verifier, client_secret=secret)
        assert ok.status_code == 200, ok.text
        # Basic credentials for a client registered for client_secret_post: refused, with the
        # Basic challenge (RFC 6749 §5.2)
        basic = await http.post(
            "/oauth/token",
            data={"grant_type": "refresh_token", "refresh_token": ok.json()["refresh_token"]},
            auth=(client_id, secret),
        )
        assert _error(basic) == "invalid_client"
        assert basic.headers["www-authenticate"].startswith("Basic")


# -- client metadata documents -------------------------------------------------------------------


def _document(url: str, **changes: Any) -> dict[str, Any]:
    return {
        "client_id": url,
        "client_name": "Doc Client",
        "redirect_uris": [REDIRECT_URI],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "none",
        **changes,
    }


@pytest.fixture
def documents() -> Iterator[DocumentServer]:
    with DocumentServer().running() as served:
        yield served


@pytest.fixture
async def cimd_server(
    mana_kit: ToolKit, tmp_path: Path, documents: DocumentServer
) -> AsyncIterator[McpTestServer]:
    """The app allowing metadata documents from `documents`' loopback origin only."""
    config = HttpConfig(oauth_loopback_clients=frozenset({documents.origin}))
    async with McpTestServer(mana_kit.pipeline, tmp_path / "keys", config=config) as started:
        yield started


@pytest.mark.parametrize(
    "client_id",
    [
        "https://10.1.2.3/client.json",  # a private address
        "https://169.254.169.254/latest/meta-data",  # link-local (cloud metadata)
        "https://[::1]/client.json",  # loopback that is not allowlisted
        "http://client.example/client.json",  # plain http off loopback
    ],
)
async def test_metadata_documents_at_forbidden_addresses_are_not_fetched(
    cimd_server: McpTestServer, client_id: str
) -> None:
    async with cimd_server.http() as http:
        flow = OAuthFlow(http)
        resp = await flow.authorize(flow.params(client_id, Pkce.new()))
        assert resp.status_code == 400, resp.text
        assert "location" not in resp.headers
        token = await flow.exchange(client_id, "code", Pkce.new().verifier)
        assert _error(token) == "invalid_client"


async def test_a_loopback_document_on_another_port_is_refused_unfetched(
    cimd_server: McpTestServer,
) -> None:
    with DocumentServer().running() as elsewhere:  # a loopback origin not on the allowlist
        url = elsewhere.url("/client.json")
        elsewhere.serve_json("/client.json", _document(url))
        async with cimd_server.http() as http:
            flow = OAuthFlow(http)
            resp = await flow.authorize(flow.params(url, Pkce.new()))
        assert resp.status_code == 400 and "location" not in resp.headers
        assert elsewhere.hits["/client.json"] == 0


async def test_oversized_or_mismatched_documents_are_refused(
    cimd_server: McpTestServer, documents: DocumentServer
) -> None:
    big = documents.url("/big.json")
    documents.serve_json("/big.json", _document(big, client_name="x" * 6000))
    other_id = documents.url("/other.json")
    documents.serve_json("/other.json", _document("https://client.example/other.json"))
    async with cimd_server.http() as http:
        flow = OAuthFlow(http)
        for url in (big, other_id):
            resp = await flow.authorize(flow.params(url, Pkce.new()))
            assert resp.status_code == 400, url
            assert "location" not in resp.headers
    assert documents.hits["/big.json"] == 1


async def test_a_metadata_document_client_signs_in_with_its_registered_redirect_only(
    cimd_server: McpTestServer, documents: DocumentServer, user: User
) -> None:
    url = documents.url("/client.json")
    documents.serve_json("/client.json", _document(url))
    async with cimd_server.http() as http:
        flow = OAuthFlow(http)
        evil = await flow.authorize(
            flow.params(url, Pkce.new(), redirect_uri="http://127.0.0.1:9/evil")
        )
        assert evil.status_code == 400 and "location" not in evil.headers
        tokens = await flow.connect(user.email, PASSWORD, client_id=url)
        assert tokens.scope == "mana:read mana:write"
        assert await _mcp_status(cimd_server, tokens.access_token) == 200
        assert (await flow.refresh(url, tokens.refresh_token)).status_code == 200
    assert documents.hits["/client.json"] == 1  # fetched once, then cached


async def test_a_code_is_only_good_for_the_resource_it_was_issued_for(
    mana_kit: ToolKit, tmp_path: Path, user: User
) -> None:
    """A code issued while the server was http://127.0.0.1:3069 (say, before MANA_PUBLIC_URL
    changed) gives no token for the resource of http://localhost:3069."""
    a = McpTestServer(mana_kit.pipeline, tmp_path)
    moved = HttpConfig(public_url="http://localhost:3069")
    b = McpTestServer(mana_kit.pipeline, tmp_path, config=moved)
    async with a, b, a.http() as on_a, b.http() as on_b:
        flow = OAuthFlow(on_a)
        client_id = await _registered(flow)
        pkce = Pkce.new()
        code = await flow.code(flow.params(client_id, pkce), user.email, PASSWORD)
        elsewhere = await OAuthFlow(on_b).exchange(client_id, code, pkce.verifier)
        assert _error(elsewhere) == "invalid_target"


async def test_a_reused_refresh_token_ends_the_family_whatever_scope_it_asks(
    server: McpTestServer, user: User
) -> None:
    async with server.http() as http:
        flow = OAuthFlow(http)
        client_id = await _registered(flow)
        first = await flow.connect(user.email, PASSWORD, client_id=client_id, access="read")
        newest = (await flow.refresh(client_id, first.refresh_token)).json()
        reuse = await flow.refresh(client_id, first.refresh_token, scope="mana:read mana:write")
        assert _error(reuse) == "invalid_grant"
        assert _error(await flow.refresh(client_id, newest["refresh_token"])) == "invalid_grant"
