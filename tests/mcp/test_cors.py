"""CORS for public endpoints (`OriginGuard(public_endpoints=...)`): any browser origin may call
them with the declared methods and request headers (`*`, never credentials), while every other
route keeps the Origin allowlist and every route keeps the loopback Host check."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from mana_http.metrics import Metrics
from mana_http.origin import OriginGuard, PublicEndpoint
from mana_http.testing import BASE_URL, McpTestServer

TOKEN = PublicEndpoint(methods=("POST",), headers=("Content-Type", "Authorization"))
FOREIGN = "https://claude.example"
ALLOWED = "http://localhost:6274"


async def _echo(request: Request) -> Response:
    """What reached the app: the method and the body's length."""
    return JSONResponse({"method": request.method, "body": len(await request.body())})


def _guarded(*, loopback_only_hosts: bool = True) -> tuple[OriginGuard, Metrics]:
    app = Starlette(
        routes=[
            Route("/oauth/token", _echo, methods=["POST"]),
            Route("/.well-known/doc", _echo, methods=["GET"]),
            Route("/private", _echo, methods=["GET", "POST"]),
        ]
    )
    metrics = Metrics()
    guard = OriginGuard(
        app,
        allowed_origins=(ALLOWED,),
        loopback_only_hosts=loopback_only_hosts,
        metrics=metrics,
        public_paths=frozenset({"/.well-known/doc"}),
        public_endpoints={"/oauth/token": TOKEN},
    )
    return guard, metrics


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    guard, _ = _guarded()
    transport = httpx.ASGITransport(app=guard)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:3069") as client:
        yield client


def _listed(value: str) -> list[str]:
    return [item.strip() for item in value.split(",")]


async def test_preflight_of_a_public_endpoint_allows_its_methods_and_headers(
    http: httpx.AsyncClient,
) -> None:
    pre = await http.options(
        "/oauth/token",
        headers={
            "origin": FOREIGN,
            "access-control-request-method": "POST",
            "access-control-request-headers": "authorization, content-type",
        },
    )
    assert pre.status_code == 204
    assert pre.headers["access-control-allow-origin"] == "*"
    assert _listed(pre.headers["access-control-allow-methods"]) == ["POST", "OPTIONS"]
    assert _listed(pre.headers["access-control-allow-headers"]) == ["Content-Type", "Authorization"]
    assert "access-control-allow-credentials" not in pre.headers


async def test_public_endpoint_answers_any_origin_without_credentials(
    http: httpx.AsyncClient,
) -> None:
    resp = await http.post(
        "/oauth/token",
        data={"grant_type": "authorization_code"},
        headers={"origin": FOREIGN},
    )
    assert resp.status_code == 200
    assert resp.json() == {"method": "POST", "body": len("grant_type=authorization_code")}
    assert resp.headers["access-control-allow-origin"] == "*"
    assert "access-control-allow-credentials" not in resp.headers
    # a request without Origin (a non-browser client) passes untouched
    plain = await http.post("/oauth/token", data={"a": "b"})
    assert plain.status_code == 200 and "access-control-allow-origin" not in plain.headers


async def test_public_paths_stay_read_only_documents(http: httpx.AsyncClient) -> None:
    pre = await http.options(
        "/.well-known/doc",
        headers={"origin": FOREIGN, "access-control-request-method": "GET"},
    )
    assert pre.status_code == 204
    assert pre.headers["access-control-allow-origin"] == "*"
    assert _listed(pre.headers["access-control-allow-methods"]) == ["GET", "OPTIONS"]
    assert _listed(pre.headers["access-control-allow-headers"]) == ["MCP-Protocol-Version"]
    doc = await http.get("/.well-known/doc", headers={"origin": FOREIGN})
    assert doc.status_code == 200 and doc.headers["access-control-allow-origin"] == "*"


async def test_other_routes_keep_the_origin_allowlist() -> None:
    guard, metrics = _guarded()
    transport = httpx.ASGITransport(app=guard)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:3069") as http:
        refused = await http.post("/private", headers={"origin": FOREIGN})
        assert refused.status_code == 403
        assert "access-control-allow-origin" not in refused.headers
        pre = await http.options(
            "/private", headers={"origin": FOREIGN, "access-control-request-method": "POST"}
        )
        assert pre.status_code == 403
        allowed = await http.post("/private", headers={"origin": ALLOWED})
        assert allowed.status_code == 200
        assert allowed.headers["access-control-allow-origin"] == ALLOWED
    assert b'mana_auth_failures_total{reason="origin-not-allowed"} 2.0' in metrics.render()


async def test_public_endpoints_keep_the_loopback_host_check() -> None:
    guard, _ = _guarded(loopback_only_hosts=True)
    transport = httpx.ASGITransport(app=guard)
    async with httpx.AsyncClient(transport=transport, base_url="http://evil.example") as http:
        resp = await http.post("/oauth/token", headers={"origin": FOREIGN})
        assert resp.status_code == 421


# -- the HTTP app: the authorization server's endpoints for browser-based clients ---------------


async def test_browser_clients_reach_the_authorization_servers_client_endpoints(
    mana_mcp: McpTestServer,
) -> None:
    """A browser-based client (e.g. the MCP Inspector's web UI) on any origin reads the
    metadata, registers, and talks to the token and revocation endpoints; it never gets
    credentials (cookies) through CORS."""
    origin = {"origin": FOREIGN}
    async with mana_mcp.http() as http:
        for path in (
            "/.well-known/oauth-authorization-server",
            "/.well-known/openid-configuration",
        ):
            doc = await http.get(path, headers=origin)
            assert doc.status_code == 200 and doc.json()["issuer"] == BASE_URL
            assert doc.headers["access-control-allow-origin"] == "*"
        for path in ("/oauth/register", "/oauth/token", "/oauth/revoke"):
            pre = await http.options(
                path,
                headers={
                    **origin,
                    "access-control-request-method": "POST",
                    "access-control-request-headers": "authorization, content-type",
                },
            )
            assert pre.status_code == 204, path
            assert pre.headers["access-control-allow-origin"] == "*"
            assert "POST" in _listed(pre.headers["access-control-allow-methods"])
            allowed = {h.lower() for h in _listed(pre.headers["access-control-allow-headers"])}
            assert {"authorization", "content-type"} <= allowed
            assert "access-control-allow-credentials" not in pre.headers
        registered = await http.post(
            "/oauth/register",
            json={"redirect_uris": ["http://127.0.0.1:9/cb"], "client_name": "web client"},
            headers=origin,
        )
        assert registered.status_code == 201, registered.text
        assert registered.headers["access-control-allow-origin"] == "*"
        refused = await http.post(
            "/oauth/token",
            data={
                "grant_type": "authorization_code",
                "code": "not-a-code",
                "client_id": registered.json()["client_id"],
                "redirect_uri": "http://127.0.0.1:9/cb",
                "code_verifier": "v" * 43,
            },
            headers=origin,
        )
        # the page can read the OAuth error (CORS), and that is all it gets
        assert refused.status_code == 400 and refused.json()["error"] == "invalid_grant"
        assert refused.headers["access-control-allow-origin"] == "*"


async def test_sign_in_pages_are_not_open_to_other_origins(mana_mcp: McpTestServer) -> None:
    """The sign-in and consent forms take posts from this server's own origin (and the
    allowlist) only: another site cannot post them, nor read them through CORS."""
    async with mana_mcp.http() as http:
        posted = await http.post(
            "/oauth/authorize",
            data={"action": "login", "email": "a@b.test", "password": "x", "csrf": "x"},
            headers={"origin": FOREIGN},
        )
        assert posted.status_code == 403
        assert "access-control-allow-origin" not in posted.headers
        pre = await http.options(
            "/oauth/authorize",
            headers={"origin": FOREIGN, "access-control-request-method": "POST"},
        )
        assert pre.status_code == 403
        # the server's own origin gets past the Origin check; its CSRF check is the pages' own
        own = await http.post(
            "/oauth/authorize",
            data={"action": "login", "email": "a@b.test", "password": "x", "csrf": "x"},
            headers={"origin": BASE_URL},
        )
        # (answered by the authorization server's own page, not the Origin check's JSON)
        assert own.headers["content-type"].startswith("text/html"), own.text
