"""A web page calls the MCP endpoint with `fetch` from Chromium, cross-origin, in both protocol
eras: 2025-11-25 (initialize, the exposed Mcp-Session-Id, tools/list in that session) and
2026-07-28 (stateless tools/list and tools/call carrying MCP-Protocol-Version, Mcp-Method,
Mcp-Name and X-Mana-Space, which the CORS preflight must allow). A page on an origin that is
not allowed gets nothing."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser
from playwright.async_api import Page as BrowserPage

from tests.browser.support import LocalSite, Page
from tests.mcp.support import BRAND_IMAGES, DEMO_EMAIL, ServerProcess, World, seeded_world

MODERN = "2026-07-28"
LEGACY = "2025-11-25"
BLANK = Page(b"<!doctype html><title>client</title><p>a browser-based MCP client</p>")

# One POST from the page (its origin) to the MCP endpoint; what came back, as far as CORS lets
# the page see it, or the error `fetch` raised.
POST = """async ({url, headers, body}) => {
  try {
    const response = await fetch(url, {method: "POST", headers, body: JSON.stringify(body)});
    return {
      status: response.status,
      session: response.headers.get("Mcp-Session-Id"),
      text: await response.text(),
    };
  } catch (error) {
    return {error: String(error)};
  }
}"""


@pytest.fixture(scope="module")
def world(
    tmp_path_factory: pytest.TempPathFactory, database_backend: str, request: pytest.FixtureRequest
) -> Iterator[World]:
    with seeded_world(request, database_backend, tmp_path_factory.mktemp("browser")) as world:
        yield world


@pytest.fixture(scope="module")
def sites() -> Iterator[tuple[LocalSite, LocalSite]]:
    """Two pages on 127.0.0.1: the first origin is allowed by the server, the second not."""
    allowed, other = LocalSite({"/": BLANK}), LocalSite({"/": BLANK})
    with allowed.running(), other.running():
        yield allowed, other


@pytest.fixture(scope="module")
def server(world: World, sites: tuple[LocalSite, LocalSite]) -> Iterator[ServerProcess]:
    allowed, _ = sites
    with ServerProcess(world.installation, env={"MANA_ALLOWED_ORIGINS": allowed.origin}) as proc:
        yield proc


def _message(text: str) -> dict[str, Any]:
    """The JSON-RPC answer in a JSON or SSE body (its last `data:` line)."""
    data = [line[5:].strip() for line in text.splitlines() if line.startswith("data:")]
    message: dict[str, Any] = json.loads(data[-1] if data else text)
    return message


def _rpc(method: str, params: dict[str, Any], request_id: int | None = 1) -> dict[str, Any]:
    body: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "params": params}
    if request_id is not None:
        body["id"] = request_id
    return body


def _modern(method: str, params: dict[str, Any]) -> dict[str, Any]:
    meta = {
        "io.modelcontextprotocol/protocolVersion": MODERN,
        "io.modelcontextprotocol/clientCapabilities": {},
    }
    return _rpc(method, {**params, "_meta": meta})


class PageClient:
    """The page's side: POSTs to `/mcp` with the page's origin and a bearer token."""

    def __init__(self, page: BrowserPage, server: ServerProcess, token: str) -> None:
        self.page = page
        self.url = server.mcp_url
        self.base = {
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/json",
            "Accept": "application/json, text/event-stream",
        }

    async def post(self, body: dict[str, Any], **headers: str) -> dict[str, Any]:
        answer: dict[str, Any] = await self.page.evaluate(
            POST, {"url": self.url, "headers": {**self.base, **headers}, "body": body}
        )
        return answer


async def _open(browser: Browser, origin: str, server: ServerProcess, token: str) -> PageClient:
    context = await browser.new_context()
    page = await context.new_page()
    await page.goto(origin + "/")
    assert await page.evaluate("location.origin") == origin
    return PageClient(page, server, token)


def _origin_refusals(server: ServerProcess) -> float:
    metrics = httpx.get(f"{server.url}/metrics", timeout=10).text
    found = re.search(
        r'^mana_auth_failures_total\{reason="origin-not-allowed"\} (\S+)$', metrics, re.M
    )
    return float(found.group(1)) if found else 0.0


async def test_page_on_an_allowed_origin_calls_mcp_in_both_eras(
    chromium: Browser, server: ServerProcess, world: World, sites: tuple[LocalSite, LocalSite]
) -> None:
    allowed, _ = sites
    client = await _open(
        chromium, allowed.origin, server, world.token(world.demo_id, email=DEMO_EMAIL)
    )

    # 2025-11-25: a session, its id readable by the page (exposed), then tools/list in it
    init = await client.post(
        _rpc(
            "initialize",
            {
                "protocolVersion": LEGACY,
                "capabilities": {},
                "clientInfo": {"name": "browser-page", "version": "1"},
            },
        )
    )
    assert init.get("status") == 200, init
    assert _message(init["text"])["result"]["protocolVersion"] == LEGACY
    session = init["session"]
    assert session, "Mcp-Session-Id is not exposed to the page"
    in_session = {"Mcp-Session-Id": session, "MCP-Protocol-Version": LEGACY}
    ready = await client.post(_rpc("notifications/initialized", {}, None), **in_session)
    assert ready.get("status") == 202, ready
    listed = await client.post(_rpc("tools/list", {}, 2), **in_session)
    assert listed.get("status") == 200, listed
    legacy_names = {t["name"] for t in _message(listed["text"])["result"]["tools"]}
    assert "me.listReferenceImages" in legacy_names

    # 2026-07-28: stateless requests whose routing headers need the preflight's approval
    modern_list = await client.post(
        _modern("tools/list", {}), **{"MCP-Protocol-Version": MODERN, "Mcp-Method": "tools/list"}
    )
    assert modern_list.get("status") == 200, modern_list
    assert modern_list["session"] is None
    modern_names = {t["name"] for t in _message(modern_list["text"])["result"]["tools"]}
    assert modern_names == legacy_names

    called = await client.post(
        _modern("tools/call", {"name": "me.listReferenceImages", "arguments": {}}),
        **{
            "MCP-Protocol-Version": MODERN,
            "Mcp-Method": "tools/call",
            "Mcp-Name": "me.listReferenceImages",
            "X-Mana-Space": world.brand_id,
        },
    )
    assert called.get("status") == 200, called
    result = _message(called["text"])["result"]
    assert not result.get("isError"), result
    assert {image["id"] for image in result["structuredContent"]["images"]} == BRAND_IMAGES


async def test_page_on_another_origin_gets_nothing(
    chromium: Browser, server: ServerProcess, world: World, sites: tuple[LocalSite, LocalSite]
) -> None:
    _, other = sites
    client = await _open(chromium, other.origin, server, world.token(world.demo_id))
    before = _origin_refusals(server)
    for headers in ({}, {"MCP-Protocol-Version": MODERN, "Mcp-Method": "tools/list"}):
        answer = await client.post(_modern("tools/list", {}), **headers)
        # the browser reports a network error, never the body or status
        assert set(answer) == {"error"} and "Failed to fetch" in answer["error"], answer
    # refused by the server's Origin check (the preflight, or the request itself), both times
    assert _origin_refusals(server) >= before + 2
