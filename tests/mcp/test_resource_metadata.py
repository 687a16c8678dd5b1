"""The MCP endpoint as an OAuth protected resource: RFC 9728 metadata at both well-known paths,
the `WWW-Authenticate` challenge of every 401 pointing at it, tokens accepted for the local
audience or the resource URL (RFC 8707) and refused for another resource, and MANA_PUBLIC_URL
validation."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from mcp.client.auth.utils import (
    extract_resource_metadata_from_www_auth,
    extract_scope_from_www_auth,
)
from mcp.shared.auth import ProtectedResourceMetadata
from mcp.shared.auth_utils import check_resource_allowed

from mana_auth import TokenIssuer
from mana_auth.tokens import LOCAL_ISSUER
from mana_cli.config import Settings
from mana_cli.main import main
from mana_http import AuthSetup, HttpConfig
from mana_http.testing import BASE_URL, McpTestServer
from tests.mcp.support import ServerProcess, seed_world
from tool_registry.errors import ValidationFailed
from tool_registry.testing import ToolKit

WELL_KNOWN = ("/.well-known/oauth-protected-resource", "/.well-known/oauth-protected-resource/mcp")
SCOPES = ["mana:read", "mana:write"]
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-11-25",
        "capabilities": {},
        "clientInfo": {"name": "resource-test", "version": "1"},
    },
}
MCP_HEADERS = {"accept": "application/json, text/event-stream", "content-type": "application/json"}


def _expected(base: str, issuer: str | None = None) -> dict[str, Any]:
    return {
        "resource": f"{base}/mcp",
        "authorization_servers": [issuer or base],
        "scopes_supported": SCOPES,
        "bearer_methods_supported": ["header"],
        "resource_name": "Mana",
    }


def _challenge(header: str) -> dict[str, str]:
    """The auth-params of a `Bearer` challenge (values without quotes or commas here)."""
    scheme, _, params = header.partition(" ")
    assert scheme == "Bearer"
    out: dict[str, str] = {}
    for part in params.split(", "):
        name, _, value = part.partition("=")
        out[name] = value.strip('"')
    return out


async def test_metadata_at_both_paths_names_the_loopback_resource(mana_mcp: McpTestServer) -> None:
    async with mana_mcp.http() as http:  # no token: the documents are public
        for path in WELL_KNOWN:
            resp = await http.get(path)
            assert resp.status_code == 200, resp.text
            assert resp.json() == _expected(BASE_URL)
            assert "max-age=300" in resp.headers["cache-control"]


async def test_public_url_sets_resource_and_authorization_server(
    mana_kit: ToolKit, tmp_path: Path
) -> None:
    config = HttpConfig(public_url="https://mana.example/")
    async with (
        McpTestServer(mana_kit.pipeline, tmp_path, config=config) as server,
        server.http() as http,
    ):
        for path in WELL_KNOWN:
            assert (await http.get(path)).json() == _expected("https://mana.example")
        resp = await http.post("/mcp", json=INITIALIZE, headers=MCP_HEADERS)
        assert resp.status_code == 401
        params = _challenge(resp.headers["www-authenticate"])
        assert params["resource_metadata"] == (
            "https://mana.example/.well-known/oauth-protected-resource/mcp"
        )


async def test_any_browser_origin_may_read_the_metadata(mana_mcp: McpTestServer) -> None:
    origin = {"origin": "https://claude.example"}
    async with mana_mcp.http() as http:
        resp = await http.get(WELL_KNOWN[1], headers=origin)
        assert resp.status_code == 200 and resp.json() == _expected(BASE_URL)
        assert resp.headers["access-control-allow-origin"] == "*"
        preflight = await http.options(
            WELL_KNOWN[0], headers={**origin, "access-control-request-method": "GET"}
        )
        assert preflight.status_code == 204
        assert preflight.headers["access-control-allow-origin"] == "*"
        # the allowlist still guards everything else
        assert (await http.get("/health", headers=origin)).status_code == 403


@pytest.mark.parametrize(
    ("token", "error"),
    [(None, None), ("not-a-jwt", "invalid_token")],
    ids=["missing", "malformed"],
)
async def test_401_challenge_leads_to_the_metadata(
    mana_mcp: McpTestServer, token: str | None, error: str | None
) -> None:
    auth = {} if token is None else {"authorization": f"Bearer {token}"}
    async with mana_mcp.http() as http:
        resp = await http.post("/mcp", json=INITIALIZE, headers={**MCP_HEADERS, **auth})
        assert resp.status_code == 401
        params = _challenge(resp.headers["www-authenticate"])
        assert params["scope"] == "mana:read mana:write"
        assert params.get("error") == error
        url = httpx.URL(params["resource_metadata"])
        assert str(url) == f"{BASE_URL}/.well-known/oauth-protected-resource/mcp"
        doc = await http.get(url.path)
        assert doc.status_code == 200 and doc.json() == _expected(BASE_URL)


def _token_for(server: McpTestServer, user_id: str, audience: str) -> str:
    keys = server.auth.keys
    assert keys is not None
    issuer = TokenIssuer(keys, audience=audience, issuer=LOCAL_ISSUER)
    return issuer.issue(user_id, email=None, ttl=timedelta(minutes=5)).token


async def test_token_for_this_resource_is_accepted_and_another_refused(
    mana_mcp: McpTestServer, mana_kit: ToolKit
) -> None:
    user = await mana_kit.user()
    resource = f"{BASE_URL}/mcp"
    assert mana_mcp.app.resource.resource == resource

    for audience in (resource, "mana"):  # the resource URL, and the local audience still
        bearer = {"Authorization": f"Bearer {_token_for(mana_mcp, user.id, audience)}"}
        async with mana_mcp.http(headers=bearer) as http, mana_mcp.client(user, http=http) as c:
            assert (await c.list_tools()).tools, audience

    other = _token_for(mana_mcp, user.id, "https://other.example/mcp")
    async with mana_mcp.http() as http:
        resp = await http.post(
            "/mcp", json=INITIALIZE, headers={**MCP_HEADERS, "authorization": f"Bearer {other}"}
        )
    assert resp.status_code == 401
    assert resp.json()["error"]["data"]["reason"] == "wrong-audience"
    assert _challenge(resp.headers["www-authenticate"])["error"] == "invalid_token"


@pytest.mark.parametrize(
    "value",
    [
        "mana.example",
        "ftp://mana.example",
        "http://mana.example",
        "https://mana.example/?x=1",
        "https://mana.example/#top",
        "https://user:pw@mana.example",
    ],
)
def test_bad_public_url_is_one_line_naming_the_variable(
    value: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(ValidationFailed, match=r"^MANA_PUBLIC_URL: "):
        Settings.load(environ={"MANA_PUBLIC_URL": value})
    monkeypatch.setenv("MANA_PUBLIC_URL", value)
    code = main(["--data-dir", str(tmp_path), "serve", "--http"])
    err = capsys.readouterr().err
    assert code == 1 and "MANA_PUBLIC_URL" in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_good_public_urls_are_normalised() -> None:
    for value, expected in [
        ("https://mana.example/", "https://mana.example"),
        ("https://mana.example/base/", "https://mana.example/base"),
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
        ("http://localhost:8080/", "http://localhost:8080"),
    ]:
        assert Settings.load(environ={"MANA_PUBLIC_URL": value}).public_url == expected
    assert Settings.load(environ={}).public_url is None


@pytest.fixture
def external(tmp_path: Path) -> Iterator[ServerProcess]:
    """`mana serve --http` verifying tokens of an external auth server (its JWKS is never
    fetched here) behind a public URL."""
    world = seed_world(tmp_path)
    proc = ServerProcess(
        world.installation,
        env={
            "MANA_JWKS_URL": "https://auth.example/.well-known/jwks.json",
            "MANA_JWT_ISSUER": "https://tokens.example",
            "MANA_OAUTH_ISSUER": "https://auth.example",
            "MANA_PUBLIC_URL": "https://mana.example",
        },
    )
    try:
        proc.wait_ready()
        yield proc
    finally:
        proc.stop()


def test_external_issuer_is_named_by_the_metadata(external: ServerProcess) -> None:
    for path in WELL_KNOWN:
        resp = httpx.get(external.url + path, timeout=10)
        assert resp.json() == _expected("https://mana.example", "https://auth.example")
    resp = httpx.post(external.mcp_url, json=INITIALIZE, headers=MCP_HEADERS, timeout=10)
    assert resp.status_code == 401
    assert _challenge(resp.headers["www-authenticate"])["resource_metadata"] == (
        "https://mana.example/.well-known/oauth-protected-resource/mcp"
    )


def test_jwt_issuer_names_the_authorization_server_without_oauth_issuer() -> None:
    settings = Settings.load(
        environ={
            "MANA_JWKS_URL": "https://auth.example/.well-known/jwks.json",
            "MANA_JWT_ISSUER": "https://tokens.example",
        }
    )
    assert settings.oauth_issuer is None
    auth = AuthSetup.remote_jwks(
        settings.jwks_url or "",
        issuer=settings.jwt_issuer,
        oauth_issuer=settings.oauth_issuer,
    )
    assert auth.external_issuer == "https://tokens.example"


async def test_the_sdk_client_reads_the_challenge_and_the_document(mana_mcp: McpTestServer) -> None:
    """What the `mcp` client's OAuth discovery does with our answers: it finds the metadata URL
    and scope in the challenge, validates the document and accepts its resource for /mcp."""
    async with mana_mcp.http() as http:
        resp = await http.post("/mcp", json=INITIALIZE, headers=MCP_HEADERS)
        url = extract_resource_metadata_from_www_auth(resp)
        assert url == f"{BASE_URL}/.well-known/oauth-protected-resource/mcp"
        assert extract_scope_from_www_auth(resp) == "mana:read mana:write"
        doc = ProtectedResourceMetadata.model_validate((await http.get(url)).json())
    assert check_resource_allowed(f"{BASE_URL}/mcp", str(doc.resource))
    assert [str(server).rstrip("/") for server in doc.authorization_servers] == [BASE_URL]
