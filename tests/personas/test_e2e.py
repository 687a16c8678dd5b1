"""End to end: the real MCP server (`mana serve --http`) as a subprocess on 127.0.0.1, personas
seeded through the CLI, one tick for three personas (one in a shared space) with scripted models,
then checks through the MCP server and the database, and a second run the same day.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from agent_loop.tools import from_mcp
from mana_cli.config import Settings
from mana_cli.main import build_parser
from mana_cli.runtime import EXTRA_MIGRATIONS
from personas.llm import scripted_factory
from personas.passwords import persona_secret
from personas.runner import HttpConnector, PersonaRunner, RunnerConfig
from personas.store import PersonaStore
from tests.personas.conftest import MONDAY
from tool_registry.clock import FixedClock
from tool_registry.pipeline import input_hash
from tool_registry.space_types import SpaceTypeCatalog
from tool_registry.store import Accounts, open_database

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
MANA = Path(sys.executable).with_name("mana")
TRIO = ["maya.chen@mana.test", "jonas.weber@mana.test", "lena.weber@mana.test"]
SERVER_START_TIMEOUT = 30.0

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def environ(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MANA_", "PERSONA_"))}
    env.update(MANA_DATA_DIR=str(data_dir), MANA_ENV="test", MANA_LOG_LEVEL="WARNING")
    return env


@contextlib.asynccontextmanager
async def mana_server(data_dir: Path, port: int) -> AsyncIterator[str]:
    """`mana serve --http` on 127.0.0.1:port; always stopped (SIGTERM, then kill) on exit."""
    log = (data_dir / "server.log").open("wb")
    argv = [str(MANA), "--data-dir", str(data_dir), "serve", "--http"]
    proc = await asyncio.create_subprocess_exec(
        *argv,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        env=environ(data_dir),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(timeout=1.0) as http:
            deadline = time.monotonic() + SERVER_START_TIMEOUT
            while not await healthy(http, base):
                if proc.returncode is not None:
                    text = (data_dir / "server.log").read_text(errors="replace")
                    raise AssertionError(f"server exited with {proc.returncode}: {text[-2000:]}")
                if time.monotonic() > deadline:
                    raise AssertionError("server did not answer /health in time")
                await asyncio.sleep(0.2)
        yield f"{base}/mcp"
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), timeout=10)
            except TimeoutError:
                proc.kill()
                await asyncio.wait_for(proc.wait(), timeout=5)
        log.close()


async def healthy(http: httpx.AsyncClient, base: str) -> bool:
    try:
        return (await http.get(f"{base}/health")).status_code == 200
    except httpx.HTTPError:
        return False


async def cli(settings: Settings, *argv: str) -> int:
    """Run a `mana` sub-command in this process (same code path as the console script)."""
    args = build_parser(argv).parse_args(list(argv))
    code: int = await args.handler(args, settings)
    return code


@contextlib.asynccontextmanager
async def as_persona(connector: HttpConnector, email: str, space: str) -> AsyncIterator[Any]:
    secret = persona_secret({}, env="test")
    token = await connector.login(email, secret.password(email))
    async with connector.session(token, space) as client:
        yield client


async def call(client: Any, tool: str, args: dict[str, Any]) -> Any:
    outcome = from_mcp(await client.call_tool(tool, args))
    assert outcome.ok, outcome.content
    return outcome.data


def scripted_calls(name: str) -> list[dict[str, Any]]:
    turns = json.loads((EXAMPLES / name).read_text(encoding="utf-8"))
    return [c for turn in turns for c in turn["tool_calls"]]


EXPECTED_RATINGS = {
    "maya.chen@mana.test": {"habits": 3, "todo": 5, "mood": 4},
    "jonas.weber@mana.test": {"todo": 4, "notes": 3},
    "lena.weber@mana.test": {"calendar": 4, "notes": 5, "contacts": 4},
}


async def test_personas_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data_dir = tmp_path / "data"
    settings = Settings.load({"data_dir": str(data_dir)}, environ=environ(data_dir))
    assert await cli(settings, "init") == 0
    assert await cli(settings, "personas", "seed") == 0
    assert "made 15 change(s)" in capsys.readouterr().out

    port = free_port()
    async with mana_server(data_dir, port) as url:
        db = await open_database(settings.db_path, EXTRA_MIGRATIONS)
        try:
            clock = FixedClock(MONDAY)
            store = PersonaStore(db, clock)
            accounts = Accounts(db, clock)
            connector = HttpConnector(url)
            runner = PersonaRunner(
                accounts=accounts,
                store=store,
                space_types=SpaceTypeCatalog.load(),
                secret=persona_secret({}, env="test"),
                connector=connector,
                llm=scripted_factory(EXAMPLES),
                config=RunnerConfig(concurrency=2),
                clock=clock,
            )
            results = {r.email: r for r in await runner.run_once(TRIO)}
            assert {e: r.status for e, r in results.items()} == dict.fromkeys(TRIO, "ok"), [
                r.summary() for r in results.values()
            ]
            assert results["lena.weber@mana.test"].space == "weber-family"
            assert results["maya.chen@mana.test"].space == "maya-chen-personal"
            assert results["jonas.weber@mana.test"].space == "jonas-weber-personal"

            # action rows match the scripted calls; feedback rows match the ratings
            for email, script in (
                ("maya.chen@mana.test", "persona-maya-chen.json"),
                ("jonas.weber@mana.test", "persona-jonas-weber.json"),
                ("lena.weber@mana.test", "persona-lena-weber.json"),
            ):
                persona = await store.persona(email)
                assert persona is not None and persona.last_active_at is not None
                actions = await store.tick_actions("2026-11-23", persona.user_id)
                calls = scripted_calls(script)
                assert [(a.tool, a.input_hash) for a in actions] == [
                    (c["name"], input_hash(c["arguments"])) for c in calls
                ]
                feedback = await store.feedback(persona.user_id, "2026-11-23")
                assert {f.module: f.rating for f in feedback} == EXPECTED_RATINGS[email]
            maya = await store.persona("maya.chen@mana.test")
            assert maya is not None
            maya_actions = await store.tick_actions("2026-11-23", maya.user_id)
            assert [a.result for a in maya_actions].count("error") == 1  # the bad habitId
            # the server's audit trail attributes persona traffic to the persona runner
            invokers = await db.read(
                lambda conn: conn.execute(
                    "SELECT DISTINCT invoker FROM audit_log WHERE user_id = ?", (maya.user_id,)
                ).fetchall()
            )
            assert [r[0] for r in invokers] == ["persona-runner"]

            # the data landed in the right spaces, as seen through the MCP server
            async with as_persona(connector, "jonas.weber@mana.test", "weber-family") as c:
                events = await call(c, "calendar.list", {"from": "2026-11-23T00:00:00+01:00"})
                titles = sorted(e["title"] for e in events["events"])
                assert titles == [
                    "Handball tournament (Jonas) - I drive",
                    "Jonas: dentist (Dr. Aydin)",
                ]
                notes = await call(c, "notes.search", {"query": "shopping"})
                assert [n["title"] for n in notes["notes"]] == ["Shopping for the weekend"]
                referat = await call(c, "notes.search", {"query": "referat"})
                assert referat["notes"] == []  # Jonas's own note is in his personal space
            async with as_persona(connector, "jonas.weber@mana.test", "") as c:
                todos = await call(c, "todo.list", {"status": "open"})
                assert len(todos["todos"]) == 2
                referat = await call(c, "notes.search", {"query": "referat"})
                assert [n["title"] for n in referat["notes"]] == ["bio referat ideen"]
            async with as_persona(connector, "lena.weber@mana.test", "") as c:
                mine = await call(c, "notes.search", {"query": "shopping"})
                assert mine["notes"] == []  # the family list is not in Lena's personal space
            async with as_persona(connector, "maya.chen@mana.test", "") as c:
                habits = await call(c, "habits.list", {})
                assert [h["name"] for h in habits["habits"]] == ["10 min reading before phone"]

            # a second run the same day does nothing for daily personas
            rows_before = await db.read(
                lambda conn: conn.execute("SELECT count(*) FROM persona_actions").fetchone()[0]
            )
            clock.advance(hours=6)
            again = await runner.run_once(TRIO)
            assert {r.status for r in again} == {"not-due"}
            rows_after = await db.read(
                lambda conn: conn.execute("SELECT count(*) FROM persona_actions").fetchone()[0]
            )
            assert (
                rows_after
                == rows_before
                == sum(
                    len(scripted_calls(f"persona-{n}.json"))
                    for n in ("maya-chen", "jonas-weber", "lena-weber")
                )
            )
        finally:
            await db.close()

        # the CLI: `personas run --once` with a mapping file (inline script), then again
        mapping = tmp_path / "scripts.json"
        mapping.write_text(
            json.dumps(
                {
                    "rosa.delgado@mana.test": [
                        {
                            "text": "New lead!",
                            "tool_calls": [
                                {
                                    "name": "notes.create",
                                    "arguments": {
                                        "title": "Lead: Café Lumen rebrand",
                                        "body": "Budget 4k, kickoff Jan",
                                    },
                                },
                                {"name": "contacts.search", "arguments": {"query": "Lumen"}},
                                {
                                    "name": "missions.create",
                                    "arguments": {"objective": "chase invoices"},
                                },
                            ],
                        },
                        {"text": "Noted the lead!", "tool_calls": []},
                        {
                            "text": '{"ratings": [{"module": "notes", "rating": 5, "notes": "Love it!"}, {"module": "contacts", "rating": 3}]}',
                            "tool_calls": [],
                        },
                    ]
                }
            ),
            encoding="utf-8",
        )
        capsys.readouterr()
        argv = ["personas", "run", "--once", "--mcp-url", url, "--llm", f"scripted:{mapping}"]
        assert await cli(settings, *argv, "--persona", "rosa.delgado@mana.test") == 0
        out = capsys.readouterr().out
        assert "rosa.delgado@mana.test: ok tick" in out and "3 calls, 1 failed" in out
        assert "ratings: contacts 3, notes 5" in out
        assert await cli(settings, *argv, "--persona", "rosa.delgado@mana.test") == 0
        assert "rosa.delgado@mana.test: not-due (already active today" in capsys.readouterr().out

    async with httpx.AsyncClient(timeout=1.0) as http:  # the server was stopped
        assert not await healthy(http, f"http://127.0.0.1:{port}")
    assert await cli(settings, "personas", "show", "rosa.delgado@mana.test") == 0
    shown = capsys.readouterr().out
    assert "missions.create" in shown and "error" in shown
    assert await cli(settings, "personas", "report", "--days", "7000") == 0
    assert "notes" in capsys.readouterr().out
