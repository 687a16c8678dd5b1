"""Helpers for the browser tests: finding the system Chromium (MANA_TEST_CHROMIUM, else PATH),
and small HTTP sites on 127.0.0.1 (a page's origin, a client metadata document, an OAuth
redirect listener) that record what they were asked and stop with their block."""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Literal, NoReturn
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.async_api import Browser

from mana_cli.demo import DEMO_PASSWORD
from tests.mcp.support import DEMO_EMAIL, ServerProcess, World

BROWSER_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


class NoBrowser(Exception):
    """No usable Chromium: the reason says where it was looked for."""


def find_chromium(
    environ: Mapping[str, str], which: Callable[[str], str | None] = shutil.which
) -> str:
    """The browser the tests drive: MANA_TEST_CHROMIUM when set (it must be an executable
    file: a wrong value is an error, not a fallback), else the first of `BROWSER_NAMES` on
    PATH."""
    given = environ.get("MANA_TEST_CHROMIUM", "")
    if given:
        path = Path(given)
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise NoBrowser(f"MANA_TEST_CHROMIUM={given} is not an executable file")
        return given
    for name in BROWSER_NAMES:
        found = which(name)
        if found:
            return found
    raise NoBrowser(f"no MANA_TEST_CHROMIUM and none of {', '.join(BROWSER_NAMES)} on PATH")


def browser_unavailable(reason: str) -> NoReturn:
    """Skip, except under `CI=true`, where the browser tests are mandatory (`.ci/run` installs
    Chromium when it is missing)."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true requires Chromium for this test: {reason}", pytrace=False)
    pytest.skip(f"Chromium unavailable: {reason}")


@dataclass(frozen=True)
class Page:
    """One response of a `LocalSite`."""

    body: bytes
    content_type: str = "text/html; charset=utf-8"
    status: int = 200


@dataclass
class LocalSite:
    """An HTTP server on 127.0.0.1 (an ephemeral port, its own thread) answering GETs of
    `pages` (path → `Page`), 404 otherwise; every request's path and query is recorded, and
    `wait_for(path)` blocks until that path was asked for."""

    pages: dict[str, Page] = field(default_factory=dict)
    requests: list[tuple[str, dict[str, list[str]]]] = field(default_factory=list)
    _arrived: threading.Condition = field(default_factory=threading.Condition)
    _server: ThreadingHTTPServer | None = None

    @property
    def origin(self) -> str:
        assert self._server is not None, "the site is not running"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def url(self, path: str) -> str:
        return self.origin + path

    def wait_for(self, path: str, timeout: float) -> dict[str, list[str]]:
        """The query of the first request of `path`, waiting up to `timeout` seconds for it."""
        with self._arrived:
            found = self._arrived.wait_for(lambda: self._first(path) is not None, timeout)
            query = self._first(path)
        if not found or query is None:
            raise TimeoutError(f"nobody asked {self.origin}{path} within {timeout} s")
        return query

    def _first(self, path: str) -> dict[str, list[str]] | None:
        return next((q for p, q in self.requests if p == path), None)

    def _record(self, target: str) -> Page | None:
        parts = urlsplit(target)
        with self._arrived:
            self.requests.append((parts.path, parse_qs(parts.query)))
            self._arrived.notify_all()
        return self.pages.get(parts.path)

    @contextmanager
    def running(self) -> Iterator[LocalSite]:
        site = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                page = site._record(self.path)
                if page is None:
                    page = Page(b"not found", "text/plain", 404)
                self.send_response(page.status)
                self.send_header("Content-Type", page.content_type)
                self.send_header("Content-Length", str(len(page.body)))
                self.end_headers()
                self.wfile.write(page.body)

            def log_message(self, format: str, *args: object) -> None:
                """Quiet: the tests assert on `requests` instead."""

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        thread = threading.Thread(target=server.serve_forever, name="local-site", daemon=True)
        thread.start()
        self._server = server
        try:
            yield self
        finally:
            server.shutdown()
            server.server_close()
            thread.join(timeout=10)
            self._server = None


# -- the person at the browser on the consent pages ---------------------------------------

Access = Literal["read", "write"]
# modules a brand space may not use (intimate or personal-only): never listed there
NOT_IN_BRAND = {"habits", "journal", "mood", "todo"}


@dataclass
class BrowserUser:
    """The person at the browser: opens the authorization URL in Chromium, signs in, chooses
    `space` and `access` on the consent page, allows, and follows the redirect to the client."""

    browser: Browser
    server: ServerProcess
    world: World
    space: str
    access: Access
    callback: str
    authorizations: list[str] = field(default_factory=list)
    consent_text: str = ""

    async def authorize(self, url: str) -> None:
        """The client's `redirect_handler`."""
        self.authorizations.append(url)
        assert url.startswith(f"{self.server.url}/oauth/authorize?"), url
        # a fresh profile (not signed in yet), JavaScript off: the pages need none
        context = await self.browser.new_context(java_script_enabled=False)
        try:
            page = await context.new_page()
            response = await page.goto(url)
            assert response is not None
            assert response.status == 200, await page.inner_text("body")
            assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
            await page.fill('input[name="email"]', DEMO_EMAIL)
            await page.fill('input[name="password"]', DEMO_PASSWORD)
            await page.click('button[name="action"][value="login"]')

            personal = page.locator(f'input[name="space"][value="{self.world.personal_id}"]')
            await personal.wait_for()
            self.consent_text = await page.inner_text("body")
            # defaults: the personal space; write, since the client asked for mana:write
            assert await personal.is_checked()
            assert await page.is_checked('input[name="access"][value="write"]')
            await page.check(f'input[name="space"][value="{self.space}"]')
            await page.check(f'input[name="access"][value="{self.access}"]')
            await page.click('button[name="decision"][value="allow"]')
            await page.wait_for_url(lambda landed: landed.startswith(self.callback + "?"))
        finally:
            await context.close()


__all__ = [
    "BROWSER_NAMES",
    "NOT_IN_BRAND",
    "Access",
    "BrowserUser",
    "LocalSite",
    "NoBrowser",
    "Page",
    "browser_unavailable",
    "find_chromium",
]
