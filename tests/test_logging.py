"""Logs an operator can rely on: `MANA_LOG_LEVEL` is honoured, servers log start-up, ticks and
iterations at INFO by default, and every stderr line is JSON when stderr is not a terminal
(the standard library's loggers, uvicorn's and asyncio's included)."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from mana_cli.demo import DEMO_EMAIL
from mana_cli.main import main
from tests.mcp.support import (
    JSON_ACCEPT,
    REPO,
    Installation,
    World,
    free_port,
    mana_argv,
    modern_tools_list,
    seed_world,
)
from tool_registry.logging import configure_logging

ROOT = Path(__file__).resolve().parents[1]
DEMO_SCRIPT = ROOT / "examples" / "mission-demo.json"


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """`main()` configures logging for the process; put the suite's set-up back afterwards."""
    hooks = (sys.excepthook,)
    yield
    configure_logging("WARNING", json=True)
    sys.excepthook = hooks[0]


def json_lines(text: str) -> list[dict[str, Any]]:
    """Every non-empty line parsed as a JSON object (fails on the first line that is not)."""
    events = []
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            pytest.fail(f"stderr line is not JSON: {line!r}\n--- stderr ---\n{text}")
        assert isinstance(event, dict), line
        events.append(event)
    return events


def _server_env(world: World, **extra: str) -> dict[str, str]:
    env = world.installation.env(extra)
    if "MANA_LOG_LEVEL" not in extra:
        env.pop("MANA_LOG_LEVEL", None)  # the default, not the suite's WARNING
    return env


def _wait_ready(proc: subprocess.Popen[bytes], url: str) -> None:
    for _ in range(600):
        if proc.poll() is not None:
            raise AssertionError(f"server exited early with {proc.returncode}")
        try:
            if httpx.get(f"{url}/health", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError("server did not become ready")


def _run_server(world: World, env: dict[str, str], exercise: bool) -> tuple[int, str]:
    """Start `mana serve --http` with stderr to a pipe, optionally exercise it, SIGTERM it."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        mana_argv(world.data_dir, "serve", "--http", "--port", str(port)),
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        _wait_ready(proc, url)
        if exercise:
            _exercise(world, port, url)
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=10)
    return proc.returncode, err.decode()


def _exercise(world: World, port: int, url: str) -> None:
    token = world.token(world.demo_id, email=DEMO_EMAIL)
    modern = {"mcp-protocol-version": "2026-07-28", "mcp-method": "tools/list"}
    with httpx.Client(timeout=30.0) as http:
        ok = http.post(
            f"{url}/mcp",
            json=modern_tools_list(),
            headers={**JSON_ACCEPT, **modern, "authorization": f"Bearer {token}"},
        )
        assert ok.status_code == 200, ok.text
        assert http.post(f"{url}/mcp", json={}, headers=JSON_ACCEPT).status_code == 401
        bad_json = http.post(
            f"{url}/mcp",
            content=b"{not json",
            headers={**JSON_ACCEPT, **modern, "authorization": f"Bearer {token}"},
        )
        assert bad_json.status_code >= 400
        assert http.get(f"{url}/metrics").status_code == 200
    # Not HTTP at all: uvicorn's own logger reports it.
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"\x16\x03\x01 this is not http\r\n\r\n")
        sock.settimeout(5)
        try:
            while sock.recv(4096):
                pass
        except OSError:
            pass


def test_every_stderr_line_of_serve_http_is_json(tmp_path: Path, database_target: str) -> None:
    world = seed_world(Installation(tmp_path, database_target))
    code, err = _run_server(world, _server_env(world), exercise=True)
    assert code == 0, err
    events = json_lines(err)
    names = [e.get("event") for e in events]
    assert "serving MCP over HTTP" in names  # start-up at INFO by default
    uvicorn = [e for e in events if e.get("logger", "").startswith("uvicorn")]
    assert uvicorn, err  # the bad request went through structlog's formatter too
    assert all({"level", "timestamp"} <= e.keys() for e in events)


def test_log_level_from_the_environment_quietens_serve(
    tmp_path: Path, database_target: str
) -> None:
    world = seed_world(Installation(tmp_path, database_target))
    code, err = _run_server(world, _server_env(world, MANA_LOG_LEVEL="warning"), exercise=False)
    assert code == 0, err
    assert not [e for e in json_lines(err) if e["level"] == "info"], err


UNRULY_SCRIPT = """
import asyncio, gc, logging, warnings
from tool_registry.logging import configure_logging

configure_logging("INFO")  # stderr is a pipe: JSON
logging.getLogger("httpx").warning("a library's own logger")
warnings.warn("careful")


async def fail() -> None:
    raise ValueError("lost\\nacross lines")


async def main() -> None:
    asyncio.get_running_loop().create_task(fail())
    await asyncio.sleep(0.05)
    gc.collect()  # "Task exception was never retrieved", from asyncio's logger


asyncio.run(main())
raise RuntimeError("boom")
"""


def test_stdlib_logging_warnings_and_uncaught_exceptions_render_as_json() -> None:
    done = subprocess.run(
        [sys.executable, "-c", UNRULY_SCRIPT],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    events = json_lines(done.stderr)
    by_logger = {e.get("logger"): e for e in events}
    assert by_logger["httpx"]["level"] == "warning"
    assert "careful" in by_logger["py.warnings"]["event"]
    assert "Task exception was never retrieved" in by_logger["asyncio"]["event"]
    assert "ValueError" in by_logger["asyncio"]["exception"]
    assert "RuntimeError: boom" in by_logger["mana.uncaught"]["exception"]


def test_daemon_logs_ticks_and_iterations_at_info_by_default(
    tmp_path: Path,
    database_target: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("MANA_LOG_LEVEL", raising=False)
    installation = Installation(tmp_path / "data", database_target)

    def mana(*argv: str) -> tuple[int, str, str]:
        code = main([*installation.flags(), *argv])
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    as_demo = ("--as", DEMO_EMAIL)
    assert mana("init")[0] == 0
    assert mana("seed", "demo")[0] == 0
    assert mana("agents", "create", *as_demo, "--name", "scout")[0] == 0
    code, out, err = mana(
        "missions", "create", *as_demo, "--agent", "scout", "--title", "Hourly",
        "--objective", "Check", "--cadence", "interval:60", "--json",
    )  # fmt: skip
    assert code == 0, err
    assert not err  # one-shot commands stay quiet (warning by default)
    mission = json.loads(out)["id"]
    asyncio.run(
        installation.execute(
            "UPDATE missions SET next_run_at = '2000-01-01T00:00:00.000000Z', "
            "window_at = '2000-01-01T00:00:00.000000Z' WHERE id = ?",
            mission,
        )
    )
    code, _, err = mana("daemon", "--once", "--llm", f"scripted:{DEMO_SCRIPT}")
    assert code == 0, err
    events = json_lines(err)
    ticks = [e for e in events if e["event"] == "daemon tick"]
    assert ticks and ticks[0]["level"] == "info" and ticks[0]["claimed"] == 1
    (done,) = [e for e in events if e["event"] == "iteration finished"]
    assert done["mission"] == mission and done["agent"] == "scout"
    assert done["outcome"] == "awaiting-review"
    assert done["duration_s"] >= 0 and done["total_tokens"] > 0

    code, _, err = mana(
        "--log-level", "warning", "daemon", "--once", "--llm", f"scripted:{DEMO_SCRIPT}"
    )  # fmt: skip
    assert code == 0 and not err  # the flag beats the default
