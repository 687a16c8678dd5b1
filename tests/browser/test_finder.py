"""Which browser the browser tests drive: MANA_TEST_CHROMIUM (must be an executable file),
else the first Chromium/Chrome on PATH; none → skip, or fail under CI=true."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from tests.browser.support import BROWSER_NAMES, NoBrowser, browser_unavailable, find_chromium


def _executable(path: Path) -> Path:
    path.write_text("#!/bin/sh\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_the_environment_names_the_browser(tmp_path: Path) -> None:
    browser = _executable(tmp_path / "my-chromium")
    found = find_chromium({"MANA_TEST_CHROMIUM": str(browser)}, lambda name: "/usr/bin/" + name)
    assert found == str(browser)


def test_a_wrong_environment_value_is_an_error_not_a_fallback(tmp_path: Path) -> None:
    not_executable = tmp_path / "chromium"
    not_executable.write_text("")
    for given in (str(not_executable), str(tmp_path / "missing")):
        with pytest.raises(NoBrowser, match="MANA_TEST_CHROMIUM"):
            find_chromium({"MANA_TEST_CHROMIUM": given}, lambda name: "/usr/bin/" + name)


def test_path_is_searched_in_order() -> None:
    on_path = {"chromium-browser": "/snap/bin/chromium-browser", "google-chrome": "/opt/chrome"}
    assert find_chromium({}, on_path.get) == "/snap/bin/chromium-browser"
    with pytest.raises(NoBrowser, match=", ".join(BROWSER_NAMES)):
        find_chromium({}, lambda name: None)


def test_no_browser_skips_but_fails_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "false")
    with pytest.raises(pytest.skip.Exception, match="Chromium unavailable: gone"):
        browser_unavailable("gone")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true requires Chromium"):
        browser_unavailable("gone")
