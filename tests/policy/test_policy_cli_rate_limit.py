"""`mana call` is rate limited like every other caller: each run is a process of its own, and
the limit still holds across runs (the log lives in the database), on both backends."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mana_cli.main import main
from tool_registry.store.postgres import is_postgres_url

REPO = Path(__file__).resolve().parents[2]
EMAIL = "caller@cli.test"
LIMIT = 2


def target_args(target: str) -> list[str]:
    return ["--database-url", target] if is_postgres_url(target) else ["--db", target]


def mana_call(target: str, tool: str) -> tuple[int, dict[str, object]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MANA_")}
    env.update({"MANA_RATE_LIMIT": str(LIMIT), "MANA_LOG_LEVEL": "ERROR"})
    proc = subprocess.run(
        [sys.executable, "-m", "mana_cli", *target_args(target), "call", tool, "--as", EMAIL],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    body: dict[str, object] = json.loads(proc.stdout)
    return proc.returncode, body


def test_mana_call_repeated_past_the_limit_is_refused(
    database_target: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for var in [v for v in os.environ if v.startswith("MANA_")]:
        monkeypatch.delenv(var)
    assert main([*target_args(database_target), "init"]) == 0
    assert main([*target_args(database_target), "users", "create", "--email", EMAIL]) == 0

    runs = [mana_call(database_target, "notes.search") for _ in range(LIMIT + 1)]
    assert [code for code, _ in runs] == [0] * LIMIT + [1]
    refused = runs[-1][1]
    assert refused["status"] == "denied"
    error = refused["error"]
    assert isinstance(error, dict) and error["reason"] == "rate-limit-exceeded"
    assert "notes.search was called 2 times" in str(refused["reminder"])
    # The limit is per tool: another tool of the same user still runs.
    assert mana_call(database_target, "habits.list")[0] == 0
