"""`mana call` is rate limited like every other caller: each run is a process of its own, and
the limit still holds across runs and with a server on the same database (the log lives in the
database), on both backends."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mana_cli.config import Settings
from mana_cli.main import main
from mana_cli.runtime import open_runtime
from mana_http.testing import McpTestServer
from tool_registry.store.postgres import is_postgres_url
from tool_registry.testing import ToolKit

REPO = Path(__file__).resolve().parents[2]
EMAIL = "caller@cli.test"
LIMIT = 2


def target_args(target: str) -> list[str]:
    return ["--database-url", target] if is_postgres_url(target) else ["--db", target]


def mana_call(target: str, tool: str, email: str = EMAIL) -> tuple[int, dict[str, object]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MANA_")}
    env.update({"MANA_RATE_LIMIT": str(LIMIT), "MANA_LOG_LEVEL": "ERROR"})
    proc = subprocess.run(
        [sys.executable, "-m", "mana_cli", *target_args(target), "call", tool, "--as", email],
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


async def test_a_server_and_mana_call_share_one_limit(
    tmp_path: Path, database_target: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for var in [v for v in os.environ if v.startswith("MANA_")]:
        monkeypatch.delenv(var)
    flag = "database_url" if is_postgres_url(database_target) else "db"
    settings = Settings.load(
        {"data_dir": str(tmp_path / "data"), flag: database_target},
        environ={"MANA_RATE_LIMIT": str(LIMIT)},
    )
    async with open_runtime(settings, create=True) as rt:  # the server's runtime
        ann = await ToolKit(rt.pipeline).user("ann@cli.test")
        async with (
            McpTestServer(rt.pipeline, tmp_path / "keys") as server,
            server.client(ann) as client,
        ):
            first = await client.call_tool("habits.list", {})
            code, _ = await asyncio.to_thread(
                mana_call, database_target, "habits.list", "ann@cli.test"
            )
            third = await client.call_tool("habits.list", {})
    assert not first.is_error and code == 0
    assert third.is_error and third.meta is not None
    assert third.meta["mana/error"]["reason"] == "rate-limit-exceeded"
