"""A loopback-bound server without MANA_PUBLIC_URL describes itself by the loopback name each
request used (`127.0.0.1`, `localhost` or `[::1]`, with the server's port): the protected
resource metadata, the 401 challenge, the authorization server metadata, the `iss` of its
answers, the resource a code is for and the access token's audience. The `mcp` client's own
OAuth flow connects through each name (in-process app, both backends) and a real
`mana serve --http` through `localhost`. With MANA_PUBLIC_URL, or bound to another address,
there is one base URL and `Host` is not read. The JWKS is readable from any browser origin."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx2
import jwt
import pytest
from mcp import Client
from mcp.client.auth import OAuthClientProvider
from mcp.client.auth.utils import (
    build_oauth_authorization_server_metadata_discovery_urls,
    build_protected_resource_metadata_discovery_urls,
    extract_field_from_www_auth,
    extract_resource_metadata_from_www_auth,
    handle_auth_metadata_response,
    handle_protected_resource_response,
    validate_metadata_issuer,
)
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import (
    AuthorizationCodeResult,
    OAuthClientMetadata,
    OAuthMetadata,
    ProtectedResourceMetadata,
)
from mcp.shared.auth_utils import check_resource_allowed, resource_url_from_server_url
from pydantic import AnyUrl
from starlette.types import Message, Scope

from mana_auth import TokenIssuer
from mana_auth.tokens import LOCAL_ISSUER
from mana_http import HttpConfig
from mana_http.testing import McpTestServer
from tests.mcp.support import ServerProcess, seed_world_async
from tests.oauth.support import (
    PASSWORD,
    REDIRECT_URI,
    MemoryStorage,
    OAuthFlow,
    Pkce,
    page_form,
    query_of,
)
from tool_registry.store.accounts import User
from tool_registry.testing import ToolKit

PORT = 3069  # the in-process server's configured port (HttpConfig's default)
NAMES = ("127.0.0.1", "localhost", "[::1]")
MCP_HEADERS = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-11-25",
        "capabilities": {},
        "clientInfo": {"name": "alias-test", "version": "1"},
    },
}


def _base(name: str, port: int = PORT) -> str:
    return f"http://{name}:{port}"


def _claims(token: str) -> dict[str, Any]:
    claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return claims


def _challenge_metadata(resp: httpx2.Response) -> str | None:
    return extract_resource_metadata_from_www_auth(resp)


async def _described(http: httpx2.AsyncClient, base: str) -> tuple[str, str, dict[str, Any]]:
    """What a client reaching the server at `base` is told: the 401's metadata URL, the
    protected resource document's `resource`, and the authorization server metadata."""
    unauthorized = await http.post(f"{base}/mcp", json=INITIALIZE, headers=MCP_HEADERS)
    assert unauthorized.status_code == 401
    metadata_url = _challenge_metadata(unauthorized)
    assert metadata_url is not None
    prm = (await http.get(f"{base}/.well-known/oauth-protected-resource")).json()
    assert prm["authorization_servers"] == [base]
    asm = (await http.get(f"{base}/.well-known/oauth-authorization-server")).json()
    return metadata_url, prm["resource"], asm


@pytest.mark.parametrize("name", NAMES)
async def test_each_loopback_name_is_described_as_itself(
    mana_mcp: McpTestServer, name: str
) -> None:
    base = _base(name)
    async with mana_mcp.http() as http:
        metadata_url, resource, asm = await _described(http, base)
        assert metadata_url == f"{base}/.well-known/oauth-protected-resource/mcp"
        assert resource == f"{base}/mcp"
        assert asm["issuer"] == base
        for endpoint, path in [
            ("authorization_endpoint", "/oauth/authorize"),
            ("token_endpoint", "/oauth/token"),
            ("revocation_endpoint", "/oauth/revoke"),
            ("registration_endpoint", "/oauth/register"),
            ("jwks_uri", "/.well-known/jwks.json"),
        ]:
            assert asm[endpoint] == base + path
        # a Host naming another port still gets the server's own port
        other = await http.get(
            "/.well-known/oauth-protected-resource", headers={"host": f"{name}:9999"}
        )
        assert other.json()["resource"] == f"{base}/mcp"


async def _discover(http: httpx2.AsyncClient, server_url: str) -> tuple[str, OAuthMetadata]:
    """The `mcp` client's discovery, step by step with its own helpers (as its OAuth flow runs
    them): the resource it accepts for `server_url`, and the validated AS metadata."""
    unauthorized = await http.post(server_url, json=INITIALIZE, headers=MCP_HEADERS)
    urls = build_protected_resource_metadata_discovery_urls(
        extract_resource_metadata_from_www_auth(unauthorized), server_url
    )
    prm: ProtectedResourceMetadata | None = None
    for url in urls:
        prm = await handle_protected_resource_response(await http.get(url))
        if prm is not None:
            break
    assert prm is not None and prm.resource is not None
    assert check_resource_allowed(resource_url_from_server_url(server_url), str(prm.resource))
    issuer = str(prm.authorization_servers[0])
    for url in build_oauth_authorization_server_metadata_discovery_urls(issuer, server_url):
        ok, asm = await handle_auth_metadata_response(await http.get(url))
        if asm is not None:
            validate_metadata_issuer(asm, issuer)  # RFC 8414 §3.3
            return str(prm.resource), asm
        assert ok
    raise AssertionError("no authorization server metadata")


async def test_a_real_server_is_discovered_through_localhost_and_127_0_0_1(
    tmp_path: Path,
) -> None:
    """`mana serve --http` on 127.0.0.1 (no MANA_PUBLIC_URL), reached over real sockets."""
    proc = ServerProcess((await seed_world_async(tmp_path)).installation)
    try:
        proc.wait_ready()
        async with httpx2.AsyncClient(timeout=10.0) as http:
            for name in ("localhost", "127.0.0.1"):
                server_url = f"http://{name}:{proc.port}/mcp"
                resource, asm = await _discover(http, server_url)
                assert resource == server_url
                assert str(asm.issuer) == f"http://{name}:{proc.port}"
                assert str(asm.token_endpoint) == f"http://{name}:{proc.port}/oauth/token"
    finally:
        proc.stop()


@dataclass
class _FormBrowser:
    """The user's browser without JavaScript: opens the authorization URL, signs in, allows the
    consent form's defaults and remembers where Allow sent it."""

    http: httpx2.AsyncClient
    user: User
    landed: str | None = None

    async def authorize(self, url: str) -> None:
        page = await self.http.get(url)
        assert page.status_code == 200, page.text
        login = page_form(page.text)
        origin = "{0.scheme}://{0.netloc}".format(urlsplit(url))
        signed = await self.http.post(
            urljoin(url, login.action),
            data={
                **login.fields,
                "email": self.user.email,
                "password": PASSWORD,
                "action": "login",
            },
            headers={"origin": origin},
        )
        assert signed.status_code == 303, signed.text
        consent = await self.http.get(urljoin(url, signed.headers["location"]))
        form = page_form(consent.text)
        allowed = await self.http.post(
            urljoin(url, form.action),
            data={**form.fields, "decision": "allow"},
            headers={"origin": origin},
        )
        assert allowed.status_code == 302, allowed.text
        self.landed = allowed.headers["location"]

    async def callback(self) -> AuthorizationCodeResult:
        assert self.landed is not None
        query = query_of(self.landed)
        assert "error" not in query, query
        return AuthorizationCodeResult(code=query["code"], state=query["state"], iss=query["iss"])


@pytest.mark.parametrize("name", NAMES)
async def test_the_sdk_client_signs_in_through_each_loopback_name(
    mana_mcp: McpTestServer, mana_kit: ToolKit, name: str
) -> None:
    """The `mcp` package's whole OAuth flow (discovery from the 401, the resource check, the AS
    issuer check, registration, PKCE, the `iss` check, the code exchange) given
    `http://NAME:PORT/mcp`; its token is for that URL and lists the tools."""
    user = await mana_kit.user(password=PASSWORD)
    server_url = f"{_base(name)}/mcp"
    storage = MemoryStorage()
    async with mana_mcp.http() as browser_http, mana_mcp.http() as http:
        browser = _FormBrowser(browser_http, user)
        provider = OAuthClientProvider(
            server_url,
            OAuthClientMetadata(
                redirect_uris=[AnyUrl(REDIRECT_URI)],
                client_name="Alias test",
                grant_types=["authorization_code", "refresh_token"],
                token_endpoint_auth_method="none",
            ),
            storage,
            redirect_handler=browser.authorize,
            callback_handler=browser.callback,
        )
        http.auth = provider
        async with Client(
            streamable_http_client(server_url, http_client=http), read_timeout_seconds=30
        ) as client:
            assert (await client.list_tools()).tools
    assert browser.landed is not None and query_of(browser.landed)["iss"] == _base(name)
    assert storage.tokens is not None
    assert _claims(storage.tokens.access_token)["aud"] == server_url


@asynccontextmanager
async def _at(server: McpTestServer, base: str) -> AsyncIterator[httpx2.AsyncClient]:
    """A client into the in-process app whose relative URLs (and so `Host`) are below `base`."""
    async with server.http() as http:
        http.base_url = httpx2.URL(base)
        yield http


def _token(server: McpTestServer, user: User, audience: str) -> str:
    keys = server.auth.keys
    assert keys is not None
    issuer = TokenIssuer(keys, audience=audience, issuer=LOCAL_ISSUER)
    return issuer.issue(user.id, email=user.email, ttl=timedelta(minutes=5)).token


async def _initialize(http: httpx2.AsyncClient, token: str) -> httpx2.Response:
    return await http.post(
        "/mcp", json=INITIALIZE, headers={**MCP_HEADERS, "authorization": f"Bearer {token}"}
    )


async def test_a_whole_flow_through_localhost_gives_a_token_for_localhost(
    mana_mcp: McpTestServer, mana_kit: ToolKit
) -> None:
    user = await mana_kit.user(password=PASSWORD)
    base = _base("localhost")
    async with _at(mana_mcp, base) as http:
        flow = OAuthFlow(http)
        client_id = (await flow.register())["client_id"]
        pkce = Pkce.new()
        params = flow.params(client_id, pkce, resource=f"{base}/mcp")
        page = await flow.authorize(params)
        assert page_form(page.text).action == "/oauth/authorize"  # posts back to this name
        code = await flow.code(params, user.email, PASSWORD)
        token = await flow.exchange(client_id, code, pkce.verifier, resource=f"{base}/mcp")
        assert token.status_code == 200, token.text
        tokens = token.json()
        assert _claims(tokens["access_token"])["aud"] == f"{base}/mcp"
        assert (await _initialize(http, tokens["access_token"])).status_code == 200

        # refreshed through [::1] without naming a resource: a token for that name
        async with _at(mana_mcp, _base("[::1]")) as other:
            rotated = await OAuthFlow(other).refresh(client_id, tokens["refresh_token"])
        assert rotated.status_code == 200, rotated.text
        assert _claims(rotated.json()["access_token"])["aud"] == f"{_base('[::1]')}/mcp"
        # naming one of the server's names (with the slash a user typed): that one, canonical
        named = await flow.refresh(
            client_id, rotated.json()["refresh_token"], resource=f"{_base('127.0.0.1')}/mcp/"
        )
        assert named.status_code == 200, named.text
        assert _claims(named.json()["access_token"])["aud"] == f"{_base('127.0.0.1')}/mcp"

        # its access token revokes its connection like the canonical name's would
        revoked = await flow.revoke(client_id, named.json()["access_token"])
        assert revoked.status_code == 200
        after = await flow.refresh(client_id, named.json()["refresh_token"])
        assert after.status_code == 400 and after.json()["error"] == "invalid_grant"


async def test_the_resource_parameter_picks_one_name_and_the_code_keeps_it(
    mana_mcp: McpTestServer, mana_kit: ToolKit
) -> None:
    user = await mana_kit.user(password=PASSWORD)
    async with _at(mana_mcp, _base("localhost")) as http:
        flow = OAuthFlow(http)
        client_id = (await flow.register())["client_id"]

        # asked through localhost for the [::1] resource: the code and token are for [::1]
        pkce = Pkce.new()
        params = flow.params(client_id, pkce, resource=f"{_base('[::1]')}/mcp/")
        code = await flow.code(params, user.email, PASSWORD)
        token = await flow.exchange(client_id, code, pkce.verifier)
        assert token.status_code == 200, token.text
        assert _claims(token.json()["access_token"])["aud"] == f"{_base('[::1]')}/mcp"

        # a token request naming another of the names than its code's: invalid_target
        pkce = Pkce.new()
        code = await flow.code(flow.params(client_id, pkce), user.email, PASSWORD)
        other = await flow.exchange(
            client_id, code, pkce.verifier, resource=f"{_base('127.0.0.1')}/mcp"
        )
        assert other.status_code == 400 and other.json()["error"] == "invalid_target"

        # another port is not one of the names
        elsewhere = f"{_base('localhost', PORT + 1)}/mcp"
        refused = await flow.authorize(flow.params(client_id, Pkce.new(), resource=elsewhere))
        assert refused.status_code == 302
        query = query_of(refused.headers["location"])
        assert query["error"] == "invalid_target" and query["iss"] == _base("localhost")
        pkce = Pkce.new()
        code = await flow.code(flow.params(client_id, pkce), user.email, PASSWORD)
        wrong = await flow.exchange(client_id, code, pkce.verifier, resource=elsewhere)
        assert wrong.status_code == 400 and wrong.json()["error"] == "invalid_target"


async def test_tokens_for_each_name_are_accepted_and_another_port_refused(
    mana_mcp: McpTestServer, mana_kit: ToolKit
) -> None:
    user = await mana_kit.user()
    async with _at(mana_mcp, _base("localhost")) as http:
        for name in NAMES:
            token = _token(mana_mcp, user, f"{_base(name)}/mcp")
            assert (await _initialize(http, token)).status_code == 200, name
        other = _token(mana_mcp, user, f"{_base('localhost', PORT + 1)}/mcp")
        resp = await _initialize(http, other)
        assert resp.status_code == 401
        assert resp.json()["error"]["data"]["reason"] == "wrong-audience"
        # the refusal's challenge names the metadata under the name this request used
        assert _challenge_metadata(resp) == (
            f"{_base('localhost')}/.well-known/oauth-protected-resource/mcp"
        )


async def test_scope_challenges_name_the_metadata_under_the_name_used(
    mana_mcp: McpTestServer, mana_kit: ToolKit
) -> None:
    """The 403 `insufficient_scope` challenges (no mana:read at all; a read-only token calling
    a write tool) point at the metadata under the name the request used."""
    user = await mana_kit.user()
    base = _base("[::1]")
    issuer = mana_mcp.auth.issuer
    assert issuer is not None

    def token(scope: str) -> str:
        return issuer.issue(
            user.id,
            email=user.email,
            ttl=timedelta(minutes=5),
            audience=f"{base}/mcp",
            claims={"scope": scope},
        ).token

    call = {
        "jsonrpc": "2.0",
        "id": 7,
        "method": "tools/call",
        "params": {"name": "habits.create", "arguments": {"name": "Walk"}},
    }
    async with _at(mana_mcp, base) as http:
        for scope, body in [("other", INITIALIZE), ("mana:read", call)]:
            resp = await http.post(
                "/mcp",
                json=body,
                headers={**MCP_HEADERS, "authorization": f"Bearer {token(scope)}"},
            )
            assert resp.status_code == 403, resp.text
            assert extract_field_from_www_auth(resp, "error") == "insufficient_scope"
            assert _challenge_metadata(resp) == (f"{base}/.well-known/oauth-protected-resource/mcp")


async def test_the_sign_in_forms_take_posts_from_each_name_with_a_narrow_allowlist(
    mana_kit: ToolKit, tmp_path: Path
) -> None:
    """MANA_ALLOWED_ORIGINS without any loopback origin: the pages still take their own
    forms, posted from whichever name the browser used."""
    user = await mana_kit.user(password=PASSWORD)
    config = HttpConfig(allowed_origins=("https://app.example",))
    async with McpTestServer(mana_kit.pipeline, tmp_path, config=config) as server:
        for name in NAMES:
            base = _base(name)
            async with _at(server, base) as http:
                http.headers["origin"] = base
                flow = OAuthFlow(http)
                client_id = (await flow.register())["client_id"]
                pkce = Pkce.new()
                code = await flow.code(flow.params(client_id, pkce), user.email, PASSWORD)
                token = await flow.exchange(client_id, code, pkce.verifier)
                assert token.status_code == 200, token.text
                assert _claims(token.json()["access_token"])["aud"] == f"{base}/mcp"


async def test_a_public_url_is_the_only_name(mana_kit: ToolKit, tmp_path: Path) -> None:
    public = "https://mana.example"
    user = await mana_kit.user(password=PASSWORD)
    config = HttpConfig(public_url=public)
    async with (
        McpTestServer(mana_kit.pipeline, tmp_path, config=config) as server,
        _at(server, public) as http,  # https: the browser cookie is Secure
    ):
        http.headers["host"] = f"localhost:{PORT}"  # what a loopback proxy may forward
        unauthorized = await http.post("/mcp", json=INITIALIZE, headers=MCP_HEADERS)
        assert _challenge_metadata(unauthorized) == (
            f"{public}/.well-known/oauth-protected-resource/mcp"
        )
        prm = (await http.get("/.well-known/oauth-protected-resource")).json()
        assert prm["resource"] == f"{public}/mcp"
        assert prm["authorization_servers"] == [public]
        asm = (await http.get("/.well-known/oauth-authorization-server")).json()
        assert asm["issuer"] == public
        assert asm["token_endpoint"] == f"{public}/oauth/token"

        flow = OAuthFlow(http)
        client_id = (await flow.register())["client_id"]
        pkce = Pkce.new()
        params = flow.params(client_id, pkce)
        page = await flow.authorize(params)
        code = await flow.code(params, user.email, PASSWORD)
        assert page.status_code == 200
        token = await flow.exchange(client_id, code, pkce.verifier)
        assert _claims(token.json()["access_token"])["aud"] == f"{public}/mcp"
        denied = await flow.authorize(
            flow.params(client_id, Pkce.new(), resource=f"{_base('localhost')}/mcp")
        )
        assert query_of(denied.headers["location"])["error"] == "invalid_target"
        assert query_of(denied.headers["location"])["iss"] == public
        # a token for a loopback name is not one for this server
        local = _token(server, user, f"{_base('localhost')}/mcp")
        assert (await _initialize(http, local)).status_code == 401


# a configured bind address (nothing is bound in-process)
@pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.10"])  # noqa: S104
async def test_a_bind_to_another_address_keeps_its_literal_base(
    mana_kit: ToolKit, tmp_path: Path, host: str
) -> None:
    config = HttpConfig(host=host)
    async with (
        McpTestServer(mana_kit.pipeline, tmp_path, config=config) as server,
        _at(server, _base("localhost")) as http,
    ):
        literal = _base(host)
        prm = (await http.get("/.well-known/oauth-protected-resource")).json()
        assert prm["resource"] == f"{literal}/mcp"
        asm = (await http.get("/.well-known/oauth-authorization-server")).json()
        assert asm["issuer"] == literal
        unauthorized = await http.post("/mcp", json=INITIALIZE, headers=MCP_HEADERS)
        assert _challenge_metadata(unauthorized) == (
            f"{literal}/.well-known/oauth-protected-resource/mcp"
        )


async def test_a_repeated_host_header_is_refused(mana_mcp: McpTestServer) -> None:
    """Two `Host` headers could make the Host check and the request's name read different
    ones; such a request is refused before either looks."""
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    scope: Scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/.well-known/oauth-protected-resource",
        "raw_path": b"/.well-known/oauth-protected-resource",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"evil.example"), (b"host", b"localhost:3069")],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", PORT),
    }
    await mana_mcp.app.asgi(scope, receive, send)
    assert sent[0]["status"] == 400


async def test_the_jwks_is_readable_from_any_browser_origin(mana_mcp: McpTestServer) -> None:
    origin = {"origin": "https://claude.example"}
    async with mana_mcp.http() as http:
        resp = await http.get("/.well-known/jwks.json", headers=origin)
        assert resp.status_code == 200 and resp.json()["keys"]
        assert resp.headers["access-control-allow-origin"] == "*"
        assert "access-control-allow-credentials" not in resp.headers
        preflight = await http.options(
            "/.well-known/jwks.json",
            headers={**origin, "access-control-request-method": "GET"},
        )
        assert preflight.status_code == 204
        assert preflight.headers["access-control-allow-origin"] == "*"
        assert preflight.headers["access-control-allow-methods"] == "GET, OPTIONS"
