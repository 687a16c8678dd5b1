"""Real daemon processes (`python -m mana_cli daemon`) on one database (the test's
`database_target`: a SQLite file, or PostgreSQL through `--database-url`): two daemons share 200
due missions; a daemon killed with SIGKILL inside a tool is recovered without duplicate writes;
SIGTERM drains a running iteration before exiting; three daemons, one SIGKILLed and one
SIGSTOPped mid-iteration, still run every due window exactly once.

Waiting in these tests is for conditions (a file written by the tool, a process exit) with a
generous failure deadline, never for a duration.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mana_cli.config import Settings
from mana_cli.runtime import open_runtime
from missions.cadence import IntervalCadence
from missions.view import MISSIONS
from policy.agent_policy import AgentToolPolicy
from tests.missions.helpers import database_args, is_postgres, query

ROOT = Path(__file__).resolve().parents[2]
DEADLINE = 90.0  # failure guard only
HOURLY = IntervalCadence(kind="interval", every_minutes=60)
WRITES_AUTO = AgentToolPolicy(
    tools={"notes.create": "auto"},
    by_hint={"read": "auto", "write": "propose", "destructive": "deny"},
)


def env_for(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MANA_")}
    env.update(
        {
            "MANA_RATE_LIMIT": "100000",
            "MANA_LOG_LEVEL": "WARNING",
            "MANA_KILLTEST_DIR": str(tmp_path),
            "MANA_EXTRA_TOOLS": "tests.missions.plugin_tools:TOOLS",
            **extra,
        }
    )
    return env


def settings_for(target: str, env: dict[str, str]) -> Settings:
    key = "database_url" if is_postgres(target) else "db"
    return Settings.load({key: target}, environ=env)


def daemon_cmd(db: str, script: Path, *args: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "mana_cli",
        *database_args(db),
        "daemon",
        "--llm",
        f"scripted:{script}",
        *args,
    ]


def write_script(path: Path, turns: list[dict[str, Any]]) -> Path:
    path.write_text(json.dumps(turns), encoding="utf-8")
    return path


WINDOW = "2000-01-01T00:00:00.000000Z"


async def seed(
    db: str, env: dict[str, str], *, users: int, missions_per_user: int, policy: AgentToolPolicy
) -> list[str]:
    """Users, one agent each, hourly missions due in the window `WINDOW`; returns their ids."""
    ids = []
    async with open_runtime(settings_for(db, env), create=True) as rt:
        service = rt.backends.get(MISSIONS)
        for u in range(users):
            user = await rt.accounts.create_user(f"p{u}@procs.test")
            space = await rt.accounts.personal_space(user.id)
            agent = await service.create_agent(
                user_id=user.id,
                space_id=space.id,
                name="runner",
                tool_policy=policy,
                max_concurrent=missions_per_user,
            )
            for i in range(missions_per_user):
                m = await service.create_mission(
                    user_id=user.id,
                    space_id=space.id,
                    agent=agent.id,
                    title=f"m{i}",
                    objective="Do the thing",
                    cadence=HOURLY,
                )
                ids.append(m.id)
        # Due now: the daemons' clocks are the real one.
        await rt.db.write(
            lambda c: c.execute(
                "UPDATE missions SET next_run_at = ?, window_at = ?", (WINDOW, WINDOW)
            )
        )
    return ids


def wait_for(path: Path, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + DEADLINE
    while not path.exists():
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"daemon exited early ({proc.returncode}): {out}\n{err}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"{path.name} never appeared")
        time.sleep(0.02)


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_two_daemon_processes_run_each_due_mission_exactly_once(
    database_target: str, tmp_path: Path, procs: list[subprocess.Popen[str]]
) -> None:
    db = database_target
    env = env_for(tmp_path)
    ids = asyncio.run(seed(db, env, users=20, missions_per_user=10, policy=WRITES_AUTO))
    script = write_script(
        tmp_path / "s.json",
        [
            {"text": "Look.", "tool_calls": [{"name": "notes.search", "arguments": {}}]},
            {"text": "Done.", "tool_calls": []},
        ],
    )
    for _ in range(2):
        procs.append(
            subprocess.Popen(
                daemon_cmd(db, script, "--once", "--json", "--concurrency", "4"),
                cwd=ROOT,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    summaries = []
    for proc in procs:
        out, err = proc.communicate(timeout=DEADLINE)
        assert proc.returncode == 0, err
        summaries.append(json.loads(out))

    assert sum(s["claimed"] for s in summaries) == 200
    rows = query(
        db,
        "SELECT mission_id, COUNT(*) AS n, MIN(status) AS lo, MAX(status) AS hi "
        "FROM iterations GROUP BY mission_id",
    )
    assert sorted(r["mission_id"] for r in rows) == sorted(ids)
    assert {(r["n"], r["lo"], r["hi"]) for r in rows} == {(1, "completed", "completed")}
    assert not query(db, "SELECT id FROM missions WHERE lease_owner IS NOT NULL")


KILL_SCRIPT: list[dict[str, Any]] = [
    {
        "text": "First, the note.",
        "tool_calls": [{"name": "notes.create", "arguments": {"title": "Written once"}}],
    },
    {"text": "Now wait.", "tool_calls": [{"name": "killtest.wait", "arguments": {}}]},
    {"text": "All done.", "tool_calls": []},
]


def test_sigkill_mid_iteration_then_restart_reruns_without_duplicate_writes(
    database_target: str, tmp_path: Path, procs: list[subprocess.Popen[str]]
) -> None:
    db = database_target
    env = env_for(tmp_path)
    [mission_id] = asyncio.run(seed(db, env, users=1, missions_per_user=1, policy=WRITES_AUTO))
    script = write_script(tmp_path / "kill.json", KILL_SCRIPT)
    first = subprocess.Popen(
        daemon_cmd(db, script, "--no-http", "--tick", "1s"),
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    procs.append(first)
    wait_for(tmp_path / "entered", first)

    first.send_signal(signal.SIGKILL)
    first.communicate(timeout=DEADLINE)

    [running] = query(db, "SELECT * FROM iterations WHERE mission_id = ?", mission_id)
    assert (running["status"], running["phase"], running["round"]) == ("running", "tools", 2)
    notes = "SELECT COUNT(*) AS n FROM records WHERE collection = 'notes' AND data LIKE ?"
    assert query(db, notes, "%Written once%")[0]["n"] == 1

    (tmp_path / "release").write_text("go", encoding="utf-8")
    second = subprocess.run(
        daemon_cmd(db, script, "--once", "--json"),
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=DEADLINE,
        check=False,
    )
    assert second.returncode == 0, second.stderr
    summary = json.loads(second.stdout)
    assert summary["recovered"] == 1 and summary["statuses"] == {"completed": 1}

    interrupted, rerun = query(
        db, "SELECT * FROM iterations WHERE mission_id = ? ORDER BY started_at", mission_id
    )
    assert interrupted["status"] == "failed" and interrupted["error_name"] == "Interrupted"
    assert interrupted["phase"] == "tools" and interrupted["error_phase"] == "tools"
    assert rerun["status"] == "completed" and rerun["run_key"] == interrupted["run_key"]
    steps = json.loads(rerun["plan"])
    assert [(s["tool"], s["status"], s.get("replayed", False)) for s in steps] == [
        ("notes.create", "executed", True),
        ("killtest.wait", "executed", False),
    ]
    assert query(db, notes, "%Written once%")[0]["n"] == 1  # no duplicate write
    keys = query(db, "SELECT COUNT(*) AS n FROM idempotency_keys WHERE tool = 'notes.create'")
    assert keys[0]["n"] == 1
    assert not query(db, "SELECT id FROM missions WHERE lease_owner IS NOT NULL")


def test_sigterm_lets_the_running_iteration_finish_then_releases(
    database_target: str, tmp_path: Path, procs: list[subprocess.Popen[str]]
) -> None:
    db = database_target
    env = env_for(tmp_path)
    [mission_id] = asyncio.run(seed(db, env, users=1, missions_per_user=1, policy=WRITES_AUTO))
    script = write_script(tmp_path / "term.json", KILL_SCRIPT)
    proc = subprocess.Popen(
        daemon_cmd(db, script, "--port", "0", "--tick", "1s", "--drain-timeout", "60s"),
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    procs.append(proc)
    wait_for(tmp_path / "entered", proc)

    proc.send_signal(signal.SIGTERM)
    (tmp_path / "release").write_text("go", encoding="utf-8")
    out, err = proc.communicate(timeout=DEADLINE)

    assert proc.returncode == 0, err
    assert "health: http://127.0.0.1:" in out
    [it] = query(db, "SELECT * FROM iterations WHERE mission_id = ?", mission_id)
    assert it["status"] == "completed" and it["summary"] == "All done."
    [m] = query(db, "SELECT * FROM missions WHERE id = ?", mission_id)
    assert m["lease_owner"] is None and m["next_run_at"] > "2000-01-01T01"


CHAOS_SCRIPT: list[dict[str, Any]] = [
    {
        "text": "First, the note.",
        "tool_calls": [{"name": "notes.create", "arguments": {"title": "Written once"}}],
    },
    {"text": "Now the work.", "tool_calls": [{"name": "fencetest.pause", "arguments": {}}]},
    {
        "text": "This one needs a human.",
        "tool_calls": [{"name": "todo.create", "arguments": {"title": "Ask first"}}],
    },
    {"text": "All done.", "tool_calls": []},
]
# Each iteration ends `awaiting-review`: its last call (a write) is staged as a proposal, the
# one kind of write a stale runner could otherwise still make (move that proposal to itself).
FINISHED = "awaiting-review"
CHAOS_LEASE = "3s"


def wait_until(condition: Any, what: str, procs: list[subprocess.Popen[str]]) -> None:
    """Poll `condition()` until true; fail (with the daemons' output) past the deadline."""
    deadline = time.monotonic() + 3 * DEADLINE
    while not condition():
        if time.monotonic() > deadline:
            for proc in procs:
                if proc.poll() is None:
                    proc.kill()
            outputs = [proc.communicate()[1][-2000:] for proc in procs]
            pytest.fail(f"{what} never happened; daemon stderr tails: {outputs}")
        time.sleep(0.05)


def running_of(db: str, pid: int) -> list[dict[str, Any]]:
    """The iterations the daemon with this pid has `running` (owner ids are host:pid:...)."""
    return query(
        db,
        "SELECT * FROM iterations WHERE status = 'running' AND runner LIKE ?",
        f"%:{pid}:%",
    )


def holds_a_transaction(db: str) -> bool:
    """Whether a (stopped) process has held a write transaction open for a second: on
    PostgreSQL a session idle in a transaction, on SQLite the write lock."""
    if is_postgres(db):
        [row] = query(
            db,
            "SELECT COUNT(*) AS n FROM pg_stat_activity WHERE datname = current_database() "
            "AND state LIKE 'idle in transaction%' "
            "AND state_change < now() - interval '1 second'",
        )
        return bool(row["n"])
    conn = sqlite3.connect(db, timeout=2.0, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("ROLLBACK")
        return False
    except sqlite3.OperationalError:
        return True
    finally:
        conn.close()


def stop_between_transactions(proc: subprocess.Popen[str], db: str) -> None:
    """SIGSTOP `proc` at a moment it holds no transaction open. A client stopped inside one
    keeps its locks (any database client does) until the server ends its session; that is not
    what this test is about, so a stop that caught one is undone and tried again."""
    deadline = time.monotonic() + DEADLINE
    while True:
        proc.send_signal(signal.SIGSTOP)
        time.sleep(1.2)
        if not holds_a_transaction(db):
            return
        proc.send_signal(signal.SIGCONT)
        if time.monotonic() > deadline:
            pytest.fail("the daemon was inside a transaction at every stop")
        time.sleep(0.05)


def iterations_of(db: str, pid: int) -> list[dict[str, Any]]:
    """Every iteration the daemon with this pid started."""
    return query(db, "SELECT * FROM iterations WHERE runner LIKE ?", f"%:{pid}:%")


def test_three_daemons_one_killed_one_paused_run_every_window_exactly_once(
    database_target: str, tmp_path: Path, procs: list[subprocess.Popen[str]]
) -> None:
    db = database_target
    base = env_for(tmp_path, MANA_MISSION_BACKOFF="1s")
    ids = asyncio.run(seed(db, base, users=5, missions_per_user=6, policy=WRITES_AUTO))
    script = write_script(tmp_path / "chaos.json", CHAOS_SCRIPT)
    for name in ("killed", "paused"):
        (tmp_path / f"hold-{name}").write_text("hold", encoding="utf-8")
    args = ("--no-http", "--tick", "0.5s", "--concurrency", "3", "--lease", CHAOS_LEASE)
    for name in ("killed", "paused", "steady"):
        env = {**base, "MANA_FENCETEST_NAME": name}
        if name != "steady":
            env["MANA_FENCETEST_HOLD"] = f"hold-{name}"
        procs.append(
            subprocess.Popen(
                daemon_cmd(db, script, *args),
                cwd=ROOT,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    killed, paused, steady = procs

    # Both chosen daemons are held inside iterations (their note already written).
    for name, proc in (("killed", killed), ("paused", paused)):
        wait_until(
            lambda n=name, p=proc: (
                (tmp_path / f"entered-{n}").exists() and bool(running_of(db, p.pid))
            ),
            f"daemon {name} inside an iteration",
            procs,
        )
    killed.send_signal(signal.SIGKILL)
    killed.wait(timeout=DEADLINE)
    stop_between_transactions(paused, db)
    try:
        stopped = running_of(db, paused.pid)
        assert stopped, "the paused daemon holds running iterations"
        # Its leases expire; the steady daemon recovers its iterations and re-runs the windows.
        wait_until(lambda: not running_of(db, paused.pid), "takeover of the paused daemon", procs)
        held = {r["id"] for r in stopped}
        recovered = {r["id"]: r for r in iterations_of(db, paused.pid) if r["id"] in held}
        (tmp_path / "hold-paused").unlink()
    finally:
        paused.send_signal(signal.SIGCONT)

    finished = (
        "SELECT COUNT(DISTINCT mission_id) AS n FROM iterations WHERE status = ? AND window_at = ?"
    )
    wait_until(
        lambda: (
            query(db, finished, FINISHED, WINDOW)[0]["n"] == len(ids)
            and not query(db, "SELECT id FROM iterations WHERE status = 'running'")
        ),
        "every due window run to its end",
        procs,
    )
    errors = []
    for proc in (paused, steady):
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=DEADLINE)
        assert proc.returncode == 0, err
        errors.append(err)

    # Every due window ran to its end exactly once, and nothing is left running or leased.
    per_window = query(
        db,
        "SELECT mission_id, window_at, COUNT(*) AS n FROM iterations "
        "WHERE status = ? GROUP BY mission_id, window_at",
        FINISHED,
    )
    assert sorted(r["mission_id"] for r in per_window) == sorted(ids)
    assert {(r["window_at"], r["n"]) for r in per_window} == {(WINDOW, 1)}
    statuses = query(db, "SELECT DISTINCT status FROM iterations")
    assert {r["status"] for r in statuses} <= {FINISHED, "failed"}
    assert not query(db, "SELECT id FROM missions WHERE lease_owner IS NOT NULL")
    # The paused daemon's writes after SIGCONT were refused: its recovered iterations are
    # exactly as the takeover left them, and it said so.
    after = [r for r in iterations_of(db, paused.pid) if r["id"] in recovered]
    assert {r["id"]: r for r in after} == recovered
    assert {(r["status"], r["error_name"]) for r in after} == {("failed", "Interrupted")}
    assert "iteration was taken over before it finished" in errors[0]
    # No write repeats: one note and one idempotency key per mission, whoever re-ran it.
    notes = "SELECT COUNT(*) AS n FROM records WHERE collection = 'notes' AND data LIKE ?"
    assert query(db, notes, "%Written once%")[0]["n"] == len(ids)
    keys = query(db, "SELECT COUNT(*) AS n FROM idempotency_keys WHERE tool = 'notes.create'")
    assert keys[0]["n"] == len(ids)
    # One proposal per mission, staged by the run that finished its window and still its own.
    proposals = query(
        db,
        "SELECT p.mission_id, i.status, i.window_at FROM proposals p "
        "JOIN iterations i ON i.id = p.iteration_id",
    )
    assert sorted(p["mission_id"] for p in proposals) == sorted(ids)
    assert {(p["status"], p["window_at"]) for p in proposals} == {(FINISHED, WINDOW)}
