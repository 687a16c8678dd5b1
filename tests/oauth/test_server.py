"""The built-in authorization server end to end over HTTP (in-process app, both backends):
RFC 8414 metadata, registration, sign-in and consent, the code exchange with PKCE, the access
token's claims and its use at /mcp, refresh rotation, revocation, and no authorization server
at all with an external issuer."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

import jwt
import pytest
from authlib.oauth2.rfc8414 import AuthorizationServerMetadata

from mana_auth import TokenIssuer
from mana_auth.tokens import LOCAL_ISSUER
from mana_cli.config import Settings
from mana_http import AuthSetup, HttpConfig
from mana_http.testing import BASE_URL, McpTestServer
from tests.oauth.support import PASSWORD, REDIRECT_URI, OAuthFlow, Pkce, query_of
from tool_registry.errors import ValidationFailed
from tool_registry.store.postgres import DatabaseUnavailable
from tool_registry.testing import ToolKit

AS_METADATA = ("/.well-known/oauth-authorization-server", "/.well-known/openid-configuration")
RESOURCE = f"{BASE_URL}/mcp"


async def test_metadata_at_both_paths_is_valid_rfc8414(mana_kit: ToolKit, tmp_path: Path) -> None:
    config = HttpConfig(public_url="https://mana.example")
    async with (
        McpTestServer(mana_kit.pipeline, tmp_path, config=config) as server,
        server.http() as http,
    ):
        for path in AS_METADATA:
            resp = await http.get(path)
            assert resp.status_code == 200, resp.text
            doc = resp.json()
            AuthorizationServerMetadata(doc).validate()  # raises on a bad document
            assert doc["issuer"] == "https://mana.example"
            assert doc["authorization_endpoint"] == "https://mana.example/oauth/authorize"
            assert doc["token_endpoint"] == "https://mana.example/oauth/token"
            assert doc["revocation_endpoint"] == "https://mana.example/oauth/revoke"
            assert doc["registration_endpoint"] == "https://mana.example/oauth/register"
            assert doc["jwks_uri"] == "https://mana.example/.well-known/jwks.json"
            assert doc["code_challenge_methods_supported"] == ["S256"]
            assert doc["client_id_metadata_document_supported"] is True
            assert doc["authorization_response_iss_parameter_supported"] is True
            assert "none" in doc["token_endpoint_auth_methods_supported"]
            assert doc["grant_types_supported"] == ["authorization_code", "refresh_token"]
            assert doc["scopes_supported"] == ["mana:read", "mana:write"]
            # what OpenID Connect Discovery requires of the document at its path
            assert doc["subject_types_supported"] == ["public"]
            assert doc["id_token_signing_alg_values_supported"] == ["EdDSA"]
        # the resource metadata names this server as its authorization server
        prm = (await http.get("/.well-known/oauth-protected-resource/mcp")).json()
        assert prm["authorization_servers"] == ["https://mana.example"]


async def test_any_browser_origin_may_call_the_client_endpoints(mana_mcp: McpTestServer) -> None:
    origin = {"origin": "https://claude.example"}
    async with mana_mcp.http() as http:
        doc = await http.get(AS_METADATA[0], headers=origin)
        assert doc.status_code == 200
        assert doc.headers["access-control-allow-origin"] == "*"
        for path in ("/oauth/token", "/oauth/revoke", "/oauth/register"):
            preflight = await http.options(
                path,
                headers={
                    **origin,
                    "access-control-request-method": "POST",
                    "access-control-request-headers": "content-type",
                },
            )
            assert preflight.status_code == 204, path
            assert preflight.headers["access-control-allow-origin"] == "*"
            assert "POST" in preflight.headers["access-control-allow-methods"]
        # the sign-in pages are not: they carry the browser's cookie
        page = await http.get("/oauth/authorize", headers=origin)
        assert page.status_code == 403


async def test_sign_in_consent_and_code_exchange_give_a_token_for_the_chosen_space(
    mana_mcp: McpTestServer, mana_kit: ToolKit
) -> None:
    user = await mana_kit.user(password=PASSWORD)
    brand = await mana_kit.space(user, "brand", "Acme Brand")
    async with mana_mcp.http() as http:
        flow = OAuthFlow(http)
        client = await flow.register(client_name="Claude")
        client_id = client["client_id"]
        pkce = Pkce.new()
        params = flow.params(client_id, pkce, resource=RESOURCE)

        page = await flow.authorize(params)
        assert page.status_code == 200
        assert 'name="email"' in page.text and "Claude" in page.text
        signed = await flow.sign_in(params, user.email, PASSWORD)
        assert signed.status_code == 303
        assert signed.headers["location"].startswith("/oauth/authorize?")

        form = await flow.consent_form(params)
        personal = await mana_kit.personal(user)
        assert form.choices["space"] == [personal.id, brand.id]
        assert form.fields["space"] == personal.id  # the personal space by default
        assert form.choices["access"] == ["read", "write"]
        assert form.fields["access"] == "write"  # the client asked for mana:write

        resp = await flow.decide(params, space=brand.id, access="write")
        assert resp.status_code == 302
        query = query_of(resp.headers["location"])
        assert resp.headers["location"].startswith(REDIRECT_URI + "?")
        assert query["state"] == "state-123"
        assert query["iss"] == BASE_URL

        token = await flow.exchange(client_id, query["code"], pkce.verifier, resource=RESOURCE)
        assert token.status_code == 200, token.text
        assert token.headers["cache-control"] == "no-store"
        body = token.json()
        assert body["token_type"] == "Bearer"
        assert body["expires_in"] == 3600
        assert body["scope"] == "mana:read mana:write"
        assert body["refresh_token"]

    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert claims["aud"] == RESOURCE
    assert claims["sub"] == user.id
    assert claims["scope"] == "mana:read mana:write"
    assert claims["space"] == brand.id
    assert claims["client_id"] == client_id
    assert claims["gid"].startswith("conn_")

    bearer = {"Authorization": f"Bearer {body['access_token']}"}
    async with (
        mana_mcp.http(headers=bearer, space=brand) as http,
        mana_mcp.client(user, http=http) as mcp,
    ):
        assert (await mcp.list_tools()).tools
        result = await mcp.call_tool("me.listReferenceImages", {})
        assert not result.is_error, result


async def test_refresh_rotates_and_revocation_ends_the_connection(
    mana_mcp: McpTestServer, mana_kit: ToolKit
) -> None:
    user = await mana_kit.user(password=PASSWORD)
    async with mana_mcp.http() as http:
        flow = OAuthFlow(http)
        client_id = (await flow.register())["client_id"]
        first = await flow.connect(user.email, PASSWORD, client_id=client_id)

        rotated = await flow.refresh(client_id, first.refresh_token)
        assert rotated.status_code == 200, rotated.text
        second = rotated.json()
        assert second["refresh_token"] != first.refresh_token
        assert second["scope"] == "mana:read mana:write"
        old_gid = jwt.decode(first.access_token, options={"verify_signature": False})["gid"]
        new_gid = jwt.decode(second["access_token"], options={"verify_signature": False})["gid"]
        assert old_gid == new_gid  # the same connection

        # a narrower scope may be asked, never a wider one
        narrow = await flow.refresh(client_id, second["refresh_token"], scope="mana:read")
        assert narrow.status_code == 200, narrow.text
        assert narrow.json()["scope"] == "mana:read"
        third = narrow.json()["refresh_token"]
        wider = await flow.refresh(client_id, third, scope="mana:read mana:admin")
        assert wider.status_code == 400 and wider.json()["error"] == "invalid_scope"

        revoked = await flow.revoke(client_id, third)
        assert revoked.status_code == 200
        after = await flow.refresh(client_id, third)
        assert after.status_code == 400 and after.json()["error"] == "invalid_grant"
        store = mana_mcp.app.oauth
        assert store is not None
        connection = await store.store.connection(old_gid)
        assert connection is not None and connection.revoked_at is not None


async def test_revoking_an_access_token_ends_its_connection(
    mana_mcp: McpTestServer, mana_kit: ToolKit
) -> None:
    user = await mana_kit.user(password=PASSWORD)
    async with mana_mcp.http() as http:
        flow = OAuthFlow(http)
        client_id = (await flow.register())["client_id"]
        other_id = (await flow.register())["client_id"]
        tokens = await flow.connect(user.email, PASSWORD, client_id=client_id)
        gid = jwt.decode(tokens.access_token, options={"verify_signature": False})["gid"]
        oauth = mana_mcp.app.oauth
        assert oauth is not None

        # another client's revocation is answered 200 and changes nothing (RFC 7009 §2.1)
        for token in (tokens.access_token, tokens.refresh_token):
            assert (await flow.revoke(other_id, token)).status_code == 200
        connection = await oauth.store.connection(gid)
        assert connection is not None and connection.revoked_at is None
        # an unknown token: 200 as well
        assert (await flow.revoke(client_id, "no-such-token")).status_code == 200

        assert (await flow.revoke(client_id, tokens.access_token)).status_code == 200
        connection = await oauth.store.connection(gid)
        assert connection is not None and connection.revoked_at is not None
        refreshed = await flow.refresh(client_id, tokens.refresh_token)
        assert refreshed.json()["error"] == "invalid_grant"


async def test_external_issuer_turns_the_authorization_server_off(
    mana_kit: ToolKit, tmp_path: Path
) -> None:
    server = McpTestServer(mana_kit.pipeline, tmp_path)
    auth = AuthSetup.remote_jwks(
        "https://auth.example/.well-known/jwks.json", oauth_issuer="https://auth.example"
    )
    server.auth = auth
    from mana_http.app import build_http_app

    server.app = build_http_app(mana_kit.pipeline, auth)
    assert server.app.oauth is None
    async with server, server.http() as http:
        for path in (*AS_METADATA, "/oauth/authorize"):
            assert (await http.get(path)).status_code == 404, path
        for path in ("/oauth/authorize", "/oauth/token", "/oauth/revoke", "/oauth/register"):
            assert (await http.post(path, data={"client_id": "x"})).status_code == 404, path
        prm = (await http.get("/.well-known/oauth-protected-resource")).json()
        assert prm["authorization_servers"] == ["https://auth.example"]


@pytest.mark.parametrize("path", ["/oauth/token", "/oauth/revoke"])
async def test_client_endpoints_answer_oauth_errors_as_json(
    mana_mcp: McpTestServer, path: str
) -> None:
    async with mana_mcp.http() as http:
        unknown = await http.post(path, data={"client_id": "nobody", "grant_type": "x"})
        assert unknown.status_code == 401
        assert unknown.json()["error"] == "invalid_client"
        assert unknown.headers["cache-control"] == "no-store"
        big = await http.post(path, data={"client_id": "x" * (17 * 1024)})
        assert big.status_code == 400 and big.json()["error"] == "invalid_request"
        not_form = await http.post(path, json={"client_id": "nobody"})
        assert not_form.status_code == 400 and not_form.json()["error"] == "invalid_request"


def test_loopback_clients_setting_is_validated() -> None:
    settings = Settings.load(
        environ={"MANA_OAUTH_LOOPBACK_CLIENTS": "http://127.0.0.1:8123, http://localhost:9000/"}
    )
    assert settings.oauth_loopback_clients == {"http://127.0.0.1:8123", "http://localhost:9000"}
    assert Settings.load(environ={}).oauth_loopback_clients == frozenset()
    with pytest.raises(ValidationFailed, match="MANA_OAUTH_LOOPBACK_CLIENTS"):
        Settings.load(environ={"MANA_OAUTH_LOOPBACK_CLIENTS": "https://clients.example"})


async def test_loopback_clients_reach_the_client_registry(
    mana_kit: ToolKit, tmp_path: Path
) -> None:
    config = HttpConfig(oauth_loopback_clients=frozenset({"http://127.0.0.1:8123"}))
    async with McpTestServer(mana_kit.pipeline, tmp_path, config=config) as server:
        oauth = server.app.oauth
        assert oauth is not None
        assert oauth.clients.policy.loopback_allowed("http", "127.0.0.1", 8123)
        assert not oauth.clients.policy.loopback_allowed("http", "127.0.0.1", 8124)


async def test_an_expired_access_token_can_still_be_revoked(
    mana_mcp: McpTestServer, mana_kit: ToolKit
) -> None:
    user = await mana_kit.user(password=PASSWORD)
    async with mana_mcp.http() as http:
        flow = OAuthFlow(http)
        client_id = (await flow.register())["client_id"]
        tokens = await flow.connect(user.email, PASSWORD, client_id=client_id)
        claims = jwt.decode(tokens.access_token, options={"verify_signature": False})
        keys = mana_mcp.auth.keys
        assert keys is not None
        two_hours_ago = TokenIssuer(
            keys, issuer=LOCAL_ISSUER, clock=lambda: time.time() - 7200
        ).issue(
            user.id,
            email=user.email,
            ttl=timedelta(hours=1),
            audience=RESOURCE,
            claims={k: claims[k] for k in ("scope", "space", "client_id", "gid")},
        )
        assert (await flow.revoke(client_id, two_hours_ago.token)).status_code == 200
        oauth = mana_mcp.app.oauth
        assert oauth is not None
        connection = await oauth.store.connection(claims["gid"])
        assert connection is not None and connection.revoked_at is not None
        # a token not signed by our key (here HMAC under our key id) is none of ours: 200, and
        # its connection is not looked up
        kid = jwt.get_unverified_header(tokens.access_token)["kid"]
        forged = jwt.encode(claims, "k" * 32, algorithm="HS256", headers={"kid": kid})
        assert (await flow.revoke(client_id, forged)).status_code == 200


async def test_token_and_revocation_request_errors(mana_mcp: McpTestServer) -> None:
    async with mana_mcp.http() as http:
        flow = OAuthFlow(http)
        client_id = (await flow.register())["client_id"]
        cases = [
            ("/oauth/token", {}, "invalid_request"),  # no grant_type
            ("/oauth/token", {"grant_type": "password"}, "unsupported_grant_type"),
            ("/oauth/token", {"grant_type": "authorization_code"}, "invalid_request"),  # no code
            ("/oauth/token", {"grant_type": "refresh_token"}, "invalid_request"),
            ("/oauth/revoke", {}, "invalid_request"),  # no token
        ]
        for path, data, error in cases:
            resp = await http.post(path, data={"client_id": client_id, **data})
            assert resp.status_code == 400, (path, data)
            assert resp.json()["error"] == error, (path, data)
            assert resp.headers["cache-control"] == "no-store"
        repeated = await http.post(
            "/oauth/token",
            content=f"client_id={client_id}&grant_type=refresh_token&grant_type=password",
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
        assert repeated.status_code == 400 and repeated.json()["error"] == "invalid_request"


async def test_registration_answers_201_or_an_rfc7591_error(mana_mcp: McpTestServer) -> None:
    async with mana_mcp.http() as http:
        ok = await http.post(
            "/oauth/register",
            json={"client_name": "Inspector", "redirect_uris": [REDIRECT_URI]},
        )
        assert ok.status_code == 201, ok.text
        assert ok.headers["cache-control"] == "no-store"
        body = ok.json()
        assert body["client_id"] and body["redirect_uris"] == [REDIRECT_URI]
        assert "client_secret" not in body  # a public client by default
        bad_uri = await http.post(
            "/oauth/register", json={"redirect_uris": ["javascript:alert(1)"]}
        )
        assert bad_uri.status_code == 400
        assert bad_uri.json()["error"] in ("invalid_redirect_uri", "invalid_client_metadata")
        for content, ctype in (
            (b"not json", "application/json"),
            (b"[1, 2]", "application/json"),
            (b"redirect_uris=x", "application/x-www-form-urlencoded"),
            (b'{"client_name": "' + b"x" * (17 * 1024) + b'"}', "application/json"),
        ):
            resp = await http.post(
                "/oauth/register", content=content, headers={"content-type": ctype}
            )
            assert resp.status_code == 400, content[:20]
            assert resp.json()["error"] == "invalid_client_metadata"


async def test_the_sign_in_page_and_auth_token_share_one_login_throttle(
    mana_mcp: McpTestServer, mana_kit: ToolKit
) -> None:
    user = await mana_kit.user(password=PASSWORD)
    login = mana_mcp.app.login
    assert login is not None
    async with mana_mcp.http() as http:
        flow = OAuthFlow(http)
        client_id = (await flow.register())["client_id"]
        params = flow.params(client_id, Pkce.new())
        for _ in range(login.throttle.per_client):
            assert (await flow.sign_in(params, user.email, "wrong")).status_code == 401
        token = await http.post("/auth/token", json={"email": user.email, "password": PASSWORD})
        assert token.status_code == 429


async def test_refused_sign_ins_are_counted_in_the_metrics(
    mana_mcp: McpTestServer, mana_kit: ToolKit
) -> None:
    user = await mana_kit.user(password=PASSWORD)
    async with mana_mcp.http() as http:
        flow = OAuthFlow(http)
        client_id = (await flow.register())["client_id"]
        params = flow.params(client_id, Pkce.new())
        assert (await flow.sign_in(params, user.email, "wrong")).status_code == 401
        metrics = (await http.get("/metrics")).text
    assert 'mana_auth_failures_total{reason="bad-credentials"} 1.0' in metrics


async def test_database_outage_is_503_and_grants_nothing(
    mana_mcp: McpTestServer, mana_kit: ToolKit, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = await mana_kit.user(password=PASSWORD)
    oauth = mana_mcp.app.oauth
    assert oauth is not None
    async with mana_mcp.http() as http:
        flow = OAuthFlow(http)
        client_id = (await flow.register())["client_id"]
        pkce = Pkce.new()
        params = flow.params(client_id, pkce)
        code = await flow.code(params, user.email, PASSWORD)

        async def unavailable(*args: object, **kwargs: object) -> None:
            raise DatabaseUnavailable("the database server is not reachable")

        monkeypatch.setattr(oauth.store, "redeem_code", unavailable)
        monkeypatch.setattr(oauth.store, "browser_session", unavailable)
        token = await flow.exchange(client_id, code, pkce.verifier)
        assert token.status_code == 503
        assert token.json()["error"] == "temporarily_unavailable"
        assert token.headers["retry-after"] == "1"
        assert token.headers["cache-control"] == "no-store"
        page = await flow.authorize(params)
        assert page.status_code == 503 and page.headers["retry-after"] == "1"
        assert page.headers["x-frame-options"] == "DENY"
        monkeypatch.undo()
        # the code was never redeemed: it still works once the database is back
        assert (await flow.exchange(client_id, code, pkce.verifier)).status_code == 200


async def test_the_resource_may_be_named_with_a_trailing_slash(
    mana_mcp: McpTestServer, mana_kit: ToolKit
) -> None:
    user = await mana_kit.user(password=PASSWORD)
    async with mana_mcp.http() as http:
        flow = OAuthFlow(http)
        client_id = (await flow.register())["client_id"]
        pkce = Pkce.new()
        params = flow.params(client_id, pkce, resource=RESOURCE + "/")
        code = await flow.code(params, user.email, PASSWORD)
        token = await flow.exchange(client_id, code, pkce.verifier, resource=RESOURCE + "/")
        assert token.status_code == 200, token.text
    claims = jwt.decode(token.json()["access_token"], options={"verify_signature": False})
    assert claims["aud"] == RESOURCE  # always the one resource URL


async def test_a_refresh_never_widens_the_granted_scope(
    mana_mcp: McpTestServer, mana_kit: ToolKit
) -> None:
    user = await mana_kit.user(password=PASSWORD)
    async with mana_mcp.http() as http:
        flow = OAuthFlow(http)
        client_id = (await flow.register())["client_id"]
        read_only = await flow.connect(user.email, PASSWORD, client_id=client_id, access="read")
        assert read_only.scope == "mana:read"
        asked = await flow.refresh(client_id, read_only.refresh_token, scope="mana:read mana:write")
        assert asked.status_code == 200, asked.text
        assert asked.json()["scope"] == "mana:read"
        claims = jwt.decode(asked.json()["access_token"], options={"verify_signature": False})
        assert claims["scope"] == "mana:read"
