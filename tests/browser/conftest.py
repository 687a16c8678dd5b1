"""Browser fixtures: `chromium`, the system Chromium (MANA_TEST_CHROMIUM, else PATH) driven
headless by Playwright's Python package; without one the test skips (fails under CI=true)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import pytest
from playwright.async_api import Browser, async_playwright

from tests.browser.support import NoBrowser, browser_unavailable, find_chromium


@pytest.fixture
async def chromium() -> AsyncIterator[Browser]:
    """A headless Chromium for one test (`--no-sandbox` as root, where Chromium's sandbox
    refuses to start); each `new_context()` is a fresh profile (no cookies)."""
    try:
        executable = find_chromium(os.environ)
    except NoBrowser as exc:
        browser_unavailable(str(exc))
    args = ["--no-sandbox"] if os.geteuid() == 0 else []
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=executable, headless=True, args=args
        )
        try:
            yield browser
        finally:
            await browser.close()
