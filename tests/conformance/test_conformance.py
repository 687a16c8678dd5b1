"""The official MCP conformance suite (server mode, active 2025-11-25 scenarios) against
`mana serve --http`, through `scripts/conformance.py`, compared with `expected-failures.yml`.

Needs the suite and Node 22 in the cache (`scripts/conformance.py --install-only`, which
`.ci/run` does); without them the tests skip, except under `CI=true`, where they fail.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "conformance.py"
BASELINE = Path(__file__).with_name("expected-failures.yml")


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("mana_conformance_script", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def require_suite() -> None:
    """Skip without the installed suite, or fail under CI=true (where `.ci/run` installs it)."""
    script = _script()
    cache = script.cache_dir()
    if script.installed(cache):
        return
    reason = f"the conformance suite is not in {cache} (scripts/conformance.py --install-only)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true requires it: {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def suite_installed() -> None:
    require_suite()


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )


def listed_failures() -> list[str]:
    """The scenario names of the baseline (one `  - name # reason` line each)."""
    names = []
    for line in BASELINE.read_text(encoding="utf-8").splitlines():
        entry = line.split("#", 1)[0].strip()
        if entry.startswith("- "):
            names.append(entry[2:].strip())
    return names


@pytest.mark.usefixtures("suite_installed")
def test_active_2025_11_25_scenarios_fail_exactly_as_listed() -> None:
    done = run()
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-3000:]
    assert "Baseline check passed" in done.stdout


@pytest.mark.usefixtures("suite_installed")
def test_a_listed_scenario_that_passes_fails_the_run(tmp_path: Path) -> None:
    baseline = tmp_path / "baseline.yml"
    baseline.write_text("server:\n  - ping\n", encoding="utf-8")
    done = run("--scenario", "ping", "--expected-failures", str(baseline))
    assert done.returncode != 0
    assert "Baseline is stale" in done.stdout


@pytest.mark.usefixtures("suite_installed")
def test_a_failure_missing_from_the_list_fails_the_run(tmp_path: Path) -> None:
    """Without the fixtures the image scenario fails: with it unlisted, the run fails."""
    baseline = tmp_path / "baseline.yml"
    baseline.write_text("server: []\n", encoding="utf-8")
    scenario = "tools-call-image"
    args = ["--scenario", scenario, "--without-fixtures"]
    done = run(*args, "--expected-failures", str(baseline))
    assert done.returncode != 0
    assert "Unexpected failures" in done.stdout
    assert scenario in done.stdout


def test_every_active_scenario_passes_with_an_empty_list() -> None:
    assert listed_failures() == []
    assert "server: []" in BASELINE.read_text(encoding="utf-8")


@pytest.mark.usefixtures("suite_installed")
def test_the_baseline_names_only_scenarios_of_the_suite() -> None:
    """A typo would be an entry that never matches: every name is one of the suite's active
    2025-11-25 server scenarios, listed once."""
    script = _script()
    cache = script.cache_dir()
    argv = [str(script.node_binary(cache)), str(script.suite_entry(cache)), "list", "--server"]
    listing = subprocess.run(
        [*argv, "--spec-version", "2025-11-25"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    scenarios = {
        line.strip()[2:].split(" ", 1)[0]
        for line in listing.splitlines()
        if line.strip().startswith("- ")
    }
    listed = listed_failures()
    assert len(listed) == len(set(listed))
    assert scenarios and set(listed) <= scenarios, set(listed) - scenarios


def test_without_the_suite_ci_fails_and_elsewhere_skips(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MANA_CONFORMANCE_DIR", str(tmp_path / "empty"))
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true requires it"):
        require_suite()
    monkeypatch.setenv("CI", "false")
    with pytest.raises(pytest.skip.Exception, match="not in"):
        require_suite()


def test_the_each_summary_tells_passed_failed_and_crashed_apart(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--each` runs one scenario per suite process: a run that saved its checks passed or
    failed by its exit status; one whose checks are missing or empty (the runner died while
    writing them) crashed."""
    for name, body in (("a", "[{}]"), ("b", "[{}]"), ("c", "")):
        saved = tmp_path / f"server-{name}-2026-12-03T00-00-00-000Z"
        saved.mkdir()
        (saved / "checks.json").write_text(body, encoding="utf-8")
    _script().print_summary(["a", "b", "c", "d"], [0, 1, 1, 1], tmp_path)
    lines = capsys.readouterr().out.splitlines()
    assert [line.split() for line in lines[2:6]] == [
        ["passed", "a"],
        ["failed", "b"],
        ["crashed", "c"],
        ["crashed", "d"],
    ]
    assert lines[-1] == "# 2 crashed, 1 failed, 1 passed"
