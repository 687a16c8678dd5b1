"""The sign-in pages under attack in a real browser (Chromium with JavaScript off): a signed-in user lured to another page that posts the consent form (cross-site
request forgery) grants nothing, whether that page's origin is allowed (refused by the CSRF
token) or not (refused by the Origin check); another site cannot frame the pages; a client name
carrying markup is shown as text. The real consent still works afterwards."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import html
import secrets
from collections.abc import Iterator
from urllib.parse import urlencode

import httpx
import pytest
from playwright.async_api import Browser, BrowserContext
from playwright.async_api import Page as BrowserPage

from mana_cli.demo import DEMO_PASSWORD
from tests.browser.support import LocalSite, Page
from tests.mcp.support import DEMO_EMAIL, ServerProcess, World, seeded_world

MARKUP_NAME = "<img src=x onerror=\"document.title='pwned'\">Evil & Co"


@pytest.fixture(scope="module")
def world(
    tmp_path_factory: pytest.TempPathFactory, database_backend: str, request: pytest.FixtureRequest
) -> Iterator[World]:
    with seeded_world(request, database_backend, tmp_path_factory.mktemp("oauth-pages")) as world:
        yield world


@pytest.fixture(scope="module")
def sites() -> Iterator[tuple[LocalSite, LocalSite, LocalSite]]:
    """The client's redirect listener, an attacker page on an allowed origin, and one on an
    origin the server does not allow."""
    client, allowed, other = LocalSite(), LocalSite(), LocalSite()
    with client.running(), allowed.running(), other.running():
        yield client, allowed, other


@pytest.fixture(scope="module")
def server(world: World, sites: tuple[LocalSite, LocalSite, LocalSite]) -> Iterator[ServerProcess]:
    _, allowed, _ = sites
    with ServerProcess(world.installation, env={"MANA_ALLOWED_ORIGINS": allowed.origin}) as proc:
        yield proc


def _authorize_url(
    server: ServerProcess, client_id: str, redirect_uri: str, state: str | None = None
) -> str:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=")
    query = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": redirect_uri,
        "state": state or secrets.token_urlsafe(16),
        "code_challenge": challenge.decode(),
        "code_challenge_method": "S256",
        "scope": "mana:read mana:write",
        "resource": server.mcp_url,
    }
    return f"{server.url}/oauth/authorize?{urlencode(query)}"


def _forged_form(action: str, fields: dict[str, str]) -> Page:
    """Another site's page with a form that posts the consent to Mana."""
    inputs = "".join(
        f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
        for k, v in fields.items()
    )
    body = (
        f'<!doctype html><form method="post" action="{html.escape(action)}">{inputs}'
        '<button id="win">Claim your prize</button></form>'
    )
    return Page(body.encode())


async def _signed_in_consent(context: BrowserContext, url: str) -> BrowserPage:
    page = await context.new_page()
    await page.goto(url)
    await page.fill('input[name="email"]', DEMO_EMAIL)
    await page.fill('input[name="password"]', DEMO_PASSWORD)
    await page.click('button[name="action"][value="login"]')
    await page.locator('input[name="space"]').first.wait_for()
    return page


async def _register(server: ServerProcess, redirect_uri: str, name: str) -> str:
    async with httpx.AsyncClient(timeout=10) as http:
        registered = await http.post(
            f"{server.url}/oauth/register",
            json={"redirect_uris": [redirect_uri], "client_name": name},
        )
    assert registered.status_code == 201, registered.text
    client_id: str = registered.json()["client_id"]
    return client_id


async def _connections(world: World) -> int:
    rows = await world.installation.query("SELECT COUNT(*) FROM oauth_connections")
    count: int = rows[0][0]
    return count


async def test_forged_consent_grants_nothing_and_the_real_one_works(
    chromium: Browser,
    server: ServerProcess,
    world: World,
    sites: tuple[LocalSite, LocalSite, LocalSite],
) -> None:
    client_site, allowed, other = sites
    callback = f"/cb/{world.installation.backend}"  # the sites serve both backends' runs
    redirect_uri = client_site.url(callback)
    client_site.pages[callback] = Page(b"<!doctype html><p>connected")
    url = _authorize_url(server, await _register(server, redirect_uri, MARKUP_NAME), redirect_uri)
    before = await _connections(world)

    # the user's browser, JavaScript off: the Mana pages need none (nor do the attacks here)
    mana = await chromium.new_context(java_script_enabled=False)
    consent = await _signed_in_consent(mana, url)
    # the client's name is text, never markup
    assert MARKUP_NAME in await consent.inner_text("h1")
    assert await consent.locator("img").count() == 0
    assert await consent.title() != "pwned"
    fields = {
        name: value
        for element in await consent.locator('form input[type="hidden"]').all()
        if (name := await element.get_attribute("name")) is not None
        and (value := await element.get_attribute("value")) is not None
    }
    real_csrf = fields["csrf"]
    choice = {"space": world.brand_id, "access": "write", "decision": "allow"}

    # attacker pages, opened in the same signed-in browser
    action = f"{server.url}/oauth/authorize"
    forged = {
        # an allowed origin without the session's CSRF token: refused by the pages' CSRF check
        # (an HTML page)
        "/guess": (allowed, {**fields, **choice, "csrf": "guessed"}, "text/html"),
        # another origin even with the real token (leaked): refused by the Origin check in
        # front of every route (a JSON error)
        "/leaked": (other, {**fields, **choice, "csrf": real_csrf}, "application/json"),
    }
    for path, (site, form, refusal) in forged.items():
        site.pages[path] = _forged_form(action, form)
        page = await mana.new_page()
        await page.goto(site.url(path))
        async with page.expect_navigation() as navigation:
            await page.click("#win")
        response = await navigation.value
        assert response is not None and response.status == 403, path
        assert response.headers["content-type"].startswith(refusal), path
        assert not page.url.startswith(redirect_uri)
    assert not [p for p, _ in client_site.requests if p == callback]
    assert await _connections(world) == before

    # another site cannot show the sign-in page in a frame (beside it, a page that allows
    # framing shows: the frames do load)
    framed = (url, allowed.url("/guess"))
    other.pages["/frame"] = Page(
        b"<!doctype html>"
        + "".join(f'<iframe src="{html.escape(src)}"></iframe>' for src in framed).encode()
    )
    framing = await mana.new_page()
    await framing.goto(other.url("/frame"))
    children = framing.main_frame.child_frames
    assert len(children) == 2
    (control,) = [f for f in children if f.url == framed[1]]
    (mana_frame,) = [f for f in children if f is not control]
    await control.locator("#win").wait_for()
    assert await mana_frame.locator("input[name=password], input[name=space]").count() == 0

    # the user's own decision on Mana's page still goes through
    await consent.check(f'input[name="space"][value="{world.brand_id}"]')
    await consent.click('button[name="decision"][value="allow"]')
    await consent.wait_for_url(lambda landed: landed.startswith(redirect_uri + "?"))
    query = await asyncio.to_thread(client_site.wait_for, callback, 10)
    assert query["code"] and "error" not in query
    assert await _connections(world) == before  # a connection is made when the code is exchanged
    await mana.close()


async def test_deny_sends_the_user_back_with_access_denied(
    chromium: Browser,
    server: ServerProcess,
    world: World,
    sites: tuple[LocalSite, LocalSite, LocalSite],
) -> None:
    client_site, _, _ = sites
    callback = f"/denied/{world.installation.backend}"
    redirect_uri = client_site.url(callback)
    client_site.pages[callback] = Page(b"<!doctype html><p>not connected")
    state = secrets.token_urlsafe(16)
    client_id = await _register(server, redirect_uri, "Denied client")
    before = await _connections(world)
    context = await chromium.new_context(java_script_enabled=False)
    try:
        consent = await _signed_in_consent(
            context, _authorize_url(server, client_id, redirect_uri, state)
        )
        await consent.click('button[name="decision"][value="deny"]')
        await consent.wait_for_url(lambda landed: landed.startswith(redirect_uri + "?"))
    finally:
        await context.close()
    query = await asyncio.to_thread(client_site.wait_for, callback, 10)
    assert query["error"] == ["access_denied"] and query["state"] == [state]
    assert "code" not in query
    assert query["iss"] == [server.url]
    assert await _connections(world) == before
