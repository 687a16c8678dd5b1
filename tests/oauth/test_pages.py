"""The sign-in and consent pages of /oauth/authorize: protective headers on every page,
everything echoed escaped, no script needed, CSRF tokens bound to the browser session, the
session id rotated at sign-in, the password login's throttle, and consent choices re-checked
on the server."""

from __future__ import annotations

import re
from pathlib import Path

import httpx2
import pytest

from mana_http import HttpConfig
from mana_http.testing import BASE_URL, McpTestServer
from mana_oauth.server import SESSION_COOKIE
from tests.oauth.support import PASSWORD, REDIRECT_URI, OAuthFlow, Pkce, page_form
from tool_registry.store.accounts import User
from tool_registry.testing import ToolKit

CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; form-action 'self' http://127.0.0.1:9; "
    "frame-ancestors 'none'; base-uri 'none'"
)
XSS = "<script>alert(1)</script>\"'&"


def assert_protected(resp: httpx2.Response, csp: str = CSP) -> None:
    assert resp.headers["content-type"].startswith("text/html")
    assert resp.headers["content-security-policy"] == csp
    assert resp.headers["x-frame-options"] == "DENY"
    assert resp.headers["cache-control"] == "no-store"
    assert resp.headers["referrer-policy"] == "same-origin"
    assert "<script" not in resp.text  # nothing to run: the pages work without JavaScript


async def _codes(mana_mcp: McpTestServer) -> int:
    return int(
        await mana_mcp.pipeline.db.read(
            lambda c: c.execute("SELECT COUNT(*) AS n FROM oauth_codes").fetchone()["n"]
        )
    )


@pytest.fixture
async def user(mana_kit: ToolKit) -> User:
    return await mana_kit.user(password=PASSWORD)


async def test_every_page_carries_the_protective_headers(
    mana_mcp: McpTestServer, user: User
) -> None:
    async with mana_mcp.http() as http:
        flow = OAuthFlow(http)
        client_id = (await flow.register())["client_id"]
        params = flow.params(client_id, Pkce.new())
        assert_protected(await flow.authorize(params))  # sign-in
        signed = await flow.sign_in(params, user.email, PASSWORD)
        assert signed.status_code == 303
        assert signed.headers["cache-control"] == "no-store"
        assert_protected(await flow.authorize(params))  # consent
        unknown = await flow.authorize({**params, "client_id": "nobody"})
        assert unknown.status_code == 400
        csp = CSP.replace(" http://127.0.0.1:9", "")  # an error page posts nowhere else
        assert_protected(unknown, csp)


async def test_client_name_and_state_are_echoed_escaped(
    mana_mcp: McpTestServer, user: User
) -> None:
    async with mana_mcp.http() as http:
        flow = OAuthFlow(http)
        client_id = (await flow.register(client_name=XSS))["client_id"]
        params = flow.params(client_id, Pkce.new(), state=XSS)
        for step in ("sign-in", "consent"):
            page = await flow.authorize(params)
            assert page.status_code == 200, step
            assert "<script>alert" not in page.text, step
            assert "&lt;script&gt;alert(1)&lt;/script&gt;&quot;&#x27;&amp;" in page.text, step
            # the escaped state still carries the exact value from form to form
            assert page_form(page.text).fields["state"] == XSS, step
            if step == "sign-in":
                assert (await flow.sign_in(params, user.email, PASSWORD)).status_code == 303
        resp = await flow.decide(params)
        assert resp.status_code == 302
        assert httpx2.URL(resp.headers["location"]).params["state"] == XSS


async def test_a_post_without_the_sessions_csrf_token_grants_nothing(
    mana_mcp: McpTestServer, user: User
) -> None:
    async with mana_mcp.http() as http, mana_mcp.http() as other_browser:
        flow = OAuthFlow(http)
        client_id = (await flow.register())["client_id"]
        params = flow.params(client_id, Pkce.new())
        assert (await flow.sign_in(params, user.email, PASSWORD)).status_code == 303
        form = await flow.consent_form(params)
        allow = {**form.fields, "decision": "allow"}

        other = OAuthFlow(other_browser)
        other_csrf = page_form((await other.authorize(params)).text).fields["csrf"]
        assert other_csrf != form.fields["csrf"]
        attempts = {
            "missing": {k: v for k, v in allow.items() if k != "csrf"},
            "wrong": {**allow, "csrf": "x" * len(form.fields["csrf"])},
            "another session's": {**allow, "csrf": other_csrf},
        }
        for name, fields in attempts.items():
            resp = await flow.post(fields)
            assert resp.status_code == 403, name
            assert "location" not in resp.headers, name
            assert_protected(resp, CSP.replace(" http://127.0.0.1:9", ""))
        # a cross-site page posting the form (the victim's cookie rides along) is refused by
        # the Origin check before anything else
        forged = await http.post(
            "/oauth/authorize", data=allow, headers={"origin": "https://evil.example"}
        )
        assert forged.status_code == 403
        assert await _codes(mana_mcp) == 0
        # the page's own post, from the server's origin, goes through
        ok = await http.post("/oauth/authorize", data=allow, headers={"origin": BASE_URL})
        assert ok.status_code == 302 and "code=" in ok.headers["location"]
        assert await _codes(mana_mcp) == 1


async def test_sign_in_rotates_the_browser_session(mana_mcp: McpTestServer, user: User) -> None:
    async with mana_mcp.http() as http:
        flow = OAuthFlow(http)
        client_id = (await flow.register())["client_id"]
        params = flow.params(client_id, Pkce.new())
        page = await flow.authorize(params)
        planted = http.cookies[SESSION_COOKIE]
        old_csrf = page_form(page.text).fields["csrf"]
        cookie = page.headers["set-cookie"]
        assert "httponly" in cookie.lower() and "samesite=lax" in cookie.lower()
        assert "path=/oauth" in cookie.lower()

        signed = await flow.sign_in(params, user.email, PASSWORD)
        assert signed.status_code == 303
        assert http.cookies[SESSION_COOKIE] != planted
        # the id (and CSRF token) known before sign-in are worthless after it
        http.cookies.clear()
        http.cookies.set(SESSION_COOKIE, planted, domain="127.0.0.1", path="/oauth")
        stale = await flow.post({"csrf": old_csrf, **params, "decision": "allow"})
        assert stale.status_code == 403
        fresh = await flow.authorize(params)
        assert 'name="password"' in fresh.text  # signed out: the sign-in form again


async def test_wrong_password_shows_the_form_again_and_the_throttle_answers_429(
    mana_mcp: McpTestServer, user: User
) -> None:
    async with mana_mcp.http() as http:
        flow = OAuthFlow(http)
        client_id = (await flow.register())["client_id"]
        params = flow.params(client_id, Pkce.new())
        wrong = await flow.sign_in(params, user.email, "wrong password")
        assert wrong.status_code == 401
        assert "email or password is wrong" in wrong.text
        assert page_form(wrong.text).fields["email"] == user.email
        assert_protected(wrong)
        limit = mana_mcp.app.login.throttle.per_client if mana_mcp.app.login else 0
        for _ in range(limit - 1):
            assert (await flow.sign_in(params, user.email, "wrong")).status_code == 401
        throttled = await flow.sign_in(params, user.email, PASSWORD)
        assert throttled.status_code == 429
        assert int(throttled.headers["retry-after"]) > 0
        assert 'name="password"' in throttled.text
        assert_protected(throttled)


async def test_consent_choices_are_checked_on_the_server(
    mana_mcp: McpTestServer, mana_kit: ToolKit, user: User
) -> None:
    stranger = await mana_kit.user()
    foreign = await mana_kit.space(stranger, "brand")
    async with mana_mcp.http() as http:
        flow = OAuthFlow(http)
        client_id = (await flow.register())["client_id"]
        read_only = flow.params(client_id, Pkce.new(), scope="mana:read")
        assert (await flow.sign_in(read_only, user.email, PASSWORD)).status_code == 303
        form = await flow.consent_form(read_only)
        assert form.choices["access"] == ["read"]  # write is not offered when not asked for
        for bad in ({"access": "write"}, {"space": foreign.id}, {"access": "admin"}):
            resp = await flow.post({**form.fields, **bad, "decision": "allow"})
            assert resp.status_code == 400, bad
            assert "location" not in resp.headers
        assert await _codes(mana_mcp) == 0

        denied = await flow.post({**form.fields, "decision": "deny"})
        assert denied.status_code == 302
        location = denied.headers["location"]
        assert location.startswith(REDIRECT_URI + "?")
        query = httpx2.URL(location).params
        assert query["error"] == "access_denied"
        assert query["state"] == "state-123" and query["iss"] == BASE_URL
        assert "code" not in query

        # no scope asked: both offered, read only checked
        open_form = await flow.consent_form(flow.params(client_id, Pkce.new(), scope=None))
        assert open_form.choices["access"] == ["read", "write"]
        assert open_form.fields["access"] == "read"


async def test_the_consent_page_names_the_client_and_where_it_redirects(
    mana_mcp: McpTestServer, user: User
) -> None:
    async with mana_mcp.http() as http:
        flow = OAuthFlow(http)
        uris = ["https://app.example/cb", REDIRECT_URI]
        client_id = (await flow.register(redirect_uris=uris, client_name="Cursor"))["client_id"]
        params = flow.params(client_id, Pkce.new(), redirect_uri="https://app.example/cb")
        assert (await flow.sign_in(params, user.email, PASSWORD)).status_code == 303
        page = await flow.authorize(params)
        text = re.sub(r"\s+", " ", page.text)
        assert "Connect Cursor to Mana" in text
        assert "<strong>app.example</strong>" in text
        assert user.email in text
        assert page.headers["content-security-policy"].count("https://app.example;") == 1


async def test_pages_below_a_public_url_with_a_path(mana_kit: ToolKit, tmp_path: Path) -> None:
    """Behind a proxy at https://mana.example/mana the browser posts and keeps its cookie
    below that path, and the cookie is Secure."""
    config = HttpConfig(public_url="https://mana.example/mana")
    async with (
        McpTestServer(mana_kit.pipeline, tmp_path, config=config) as server,
        server.http() as http,
    ):
        flow = OAuthFlow(http)
        client_id = (await flow.register())["client_id"]
        doc = (await http.get("/.well-known/oauth-authorization-server")).json()
        assert doc["authorization_endpoint"] == "https://mana.example/mana/oauth/authorize"
        page = await flow.authorize(flow.params(client_id, Pkce.new()))
        assert page.status_code == 200
        assert page_form(page.text).action == "/mana/oauth/authorize"
        cookie = page.headers["set-cookie"].lower()
        assert "path=/mana/oauth" in cookie and "secure" in cookie


async def test_a_native_app_redirect_with_its_own_scheme(
    mana_mcp: McpTestServer, user: User
) -> None:
    app_uri = "com.example.app:/oauth/callback"
    async with mana_mcp.http() as http:
        flow = OAuthFlow(http)
        client_id = (await flow.register(redirect_uris=[app_uri]))["client_id"]
        params = flow.params(client_id, Pkce.new(), redirect_uri=app_uri)
        assert (await flow.sign_in(params, user.email, PASSWORD)).status_code == 303
        page = await flow.authorize(params)
        assert "<strong>com.example.app:</strong>" in page.text
        csp = page.headers["content-security-policy"]
        assert "form-action 'self' com.example.app:;" in csp
        resp = await flow.decide(params)
        assert resp.status_code == 302
        assert resp.headers["location"].startswith(app_uri + "?code=")


async def test_the_sign_in_form_focuses_what_is_left_to_type(
    mana_mcp: McpTestServer, user: User
) -> None:
    async with mana_mcp.http() as http:
        flow = OAuthFlow(http)
        params = flow.params((await flow.register())["client_id"], Pkce.new())
        first = (await flow.authorize(params)).text
        assert re.search(r'name="email"[^>]*autofocus', first)
        again = (await flow.sign_in(params, user.email, "wrong")).text
        assert re.search(r'name="password"[^>]*autofocus', again)
        assert not re.search(r'name="email"[^>]*autofocus', again)
