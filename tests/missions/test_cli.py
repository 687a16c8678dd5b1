"""`mana agents|missions|proposals|daemon` as a user runs them (in-process, real SQLite)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from mana_cli.main import main
from tests.missions.helpers import database_args, execute

ROOT = Path(__file__).resolve().parents[2]
DEMO_SCRIPT = ROOT / "examples" / "mission-demo.json"
AS = ("--as", "demo@mana.test")

Run = Callable[..., tuple[int, str, str]]


@pytest.fixture
def mana(database_target: str, capsys: pytest.CaptureFixture[str]) -> Run:
    db = database_target

    def run(*argv: str) -> tuple[int, str, str]:
        code = main([*database_args(db), *argv])
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    assert run("init")[0] == 0
    assert run("seed", "demo")[0] == 0
    run.db = db  # type: ignore[attr-defined]
    return run


def test_agents_commands(mana: Run) -> None:
    code, out, err = mana(
        "agents", "create", *AS, "--name", "scout", "--role", "Tidies up",
        "--max-tokens-per-day", "50000", "--auto", "todo.create", "--deny", "notes",
    )  # fmt: skip
    assert code == 0, err
    assert "created agent scout" in out and "todo.create auto" in out and "notes deny" in out
    code, out, _ = mana("agents", "list", *AS)
    assert code == 0 and "scout" in out and "0/50000" in out
    code, out, _ = mana("agents", "show", "scout", *AS)
    assert code == 0 and "runs without asking" in out
    shown = json.loads(mana("agents", "show", "scout", *AS, "--json")[1])
    assert "todo.create" in shown["tools"]["auto"] and "notes.create" in shown["tools"]["deny"]
    assert not any(
        t.startswith(("missions.", "proposals.")) for m in shown["tools"].values() for t in m
    )
    assert mana("agents", "pause", "scout", *AS)[1].strip() == "agent scout is now paused"
    assert mana("agents", "resume", "scout", *AS)[1].strip() == "agent scout is now active"
    assert mana("agents", "archive", "scout", *AS)[0] == 0
    code, _, err = mana("agents", "resume", "scout", *AS)
    assert code == 1 and "archived" in err

    code, _, err = mana("agents", "create", *AS, "--name", "x", "--auto", "todo.fly")
    assert code == 1 and "unknown tool 'todo.fly'" in err
    code, _, err = mana("agents", "create", *AS, "--name", "x", "--policy-json", "[1]")
    assert code == 1 and "JSON object" in err
    code, _, err = mana("agents", "create", *AS, "--name", "x", "--max-tokens-per-day", "lots")
    assert code == 1 and "number or none" in err


def test_missions_run_now_and_proposals(mana: Run) -> None:
    assert mana("agents", "create", *AS, "--name", "scout", "--auto", "todo.create")[0] == 0
    code, out, err = mana(
        "missions", "create", *AS, "--agent", "scout", "--title", "Weekly review",
        "--objective", "Review my week", "--cadence", "weekly:mon:09:00", "--tz", "Europe/Berlin",
        "--json",
    )  # fmt: skip
    assert code == 0, err
    mission = json.loads(out)
    assert mission["cadenceText"] == "weekly mon 09:00 Europe/Berlin" and mission["nextRunAt"]
    listed = mana("missions", "list", *AS)[1]
    assert mission["id"] in listed and "Weekly review" in listed

    code, out, err = mana(
        "missions", "run-now", mission["id"], *AS, "--llm", f"scripted:{DEMO_SCRIPT}"
    )
    assert code == 0, err
    assert "awaiting-review" in out and "todo.create: executed" in out
    assert "notes.create: proposed" in out and "mana proposals approve" in out

    [proposal] = json.loads(mana("proposals", "list", *AS, "--json")[1])
    assert proposal["tool"] == "notes.create" and proposal["status"] == "pending"
    code, out, err = mana("proposals", "approve", proposal["id"], *AS)
    assert code == 0, err
    assert "approved and executed" in out
    code, out, err = mana("proposals", "approve", proposal["id"], *AS)
    assert code == 0 and "already executed" in out, err  # the decision, not a second run

    assert (
        mana("missions", "run-now", mission["id"], *AS, "--llm", f"scripted:{DEMO_SCRIPT}")[0] == 0
    )
    [second] = json.loads(mana("proposals", "list", *AS, "--json")[1])
    code, out, _ = mana("proposals", "reject", second["id"], *AS, "--note", "not this week")
    assert code == 0 and "rejected" in out
    assert json.loads(mana("proposals", "list", *AS, "--status", "all", "--json")[1])[0][
        "status"
    ] in (
        "rejected",
        "executed",
    )

    shown = json.loads(mana("missions", "show", mission["id"], *AS, "--json")[1])
    assert [i["status"] for i in shown["iterations"]] == ["completed", "completed"]
    assert shown["mission"]["lastStatus"] == "completed"
    text = mana("missions", "show", mission["id"], *AS)[1]
    assert "recent iterations (2)" in text

    assert "paused mission" in mana("missions", "pause", mission["id"], *AS)[1]
    assert "next run" in mana("missions", "resume", mission["id"], *AS)[1]
    code, out, _ = mana("missions", "cancel", mission["id"], *AS)
    assert code == 1 and "no running iteration" in out

    assert mana("agents", "pause", "scout", *AS)[0] == 0
    code, _, err = mana(
        "missions", "run-now", mission["id"], *AS, "--llm", f"scripted:{DEMO_SCRIPT}"
    )
    assert code == 1 and "agent-paused" in err


def test_daemon_once_runs_what_is_due(mana: Run) -> None:
    assert mana("agents", "create", *AS, "--name", "scout")[0] == 0
    code, out, _ = mana(
        "missions", "create", *AS, "--title", "Hourly", "--objective", "Check",
        "--cadence", "interval:60", "--json",
    )  # fmt: skip
    mission = json.loads(out)
    code, out, err = mana("daemon", "--once", "--llm", f"scripted:{DEMO_SCRIPT}")
    assert code == 0, err
    assert out.startswith("ran 0 iteration(s)")

    execute(
        mana.db,  # type: ignore[attr-defined]
        "UPDATE missions SET next_run_at = '2000-01-01T00:00:00.000000Z', "
        "window_at = '2000-01-01T00:00:00.000000Z' WHERE id = ?",
        mission["id"],
    )
    code, out, err = mana("daemon", "--once", "--json", "--llm", f"scripted:{DEMO_SCRIPT}")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["claimed"] == 1 and summary["statuses"] == {"awaiting-review": 1}
    shown = json.loads(mana("missions", "show", mission["id"], *AS, "--json")[1])
    assert shown["mission"]["nextRunAt"] > "2001"
    assert shown["iterations"][0]["trigger"] == "schedule"


def test_members_and_strangers(mana: Run) -> None:
    assert mana("users", "create", "--email", "bob@x.test", "--password", "long-enough")[0] == 0
    code, _, err = mana("agents", "list", "--as", "bob@x.test", "--space", "demo-studio")
    assert code == 1 and "not a member" in err
    assert (
        mana("spaces", "add-member", *AS, "--space", "demo-studio", "--email", "bob@x.test")[0] == 0
    )
    code, _, err = mana(
        "agents", "create", "--as", "bob@x.test", "--space", "demo-studio", "--name", "b"
    )
    assert code == 1 and "owner or an admin" in err
    code, _, err = mana("daemon", "--once", "--llm", "nonsense")
    assert code == 1 and "unknown --llm" in err


def test_missions_complete_archive_resume_and_list(mana: Run) -> None:
    assert mana("agents", "create", *AS, "--name", "scout")[0] == 0
    ids = {}
    for title in ("Finished", "Ongoing"):
        code, out, err = mana(
            "missions", "create", *AS, "--title", title, "--objective", "Check",
            "--cadence", "interval:60", "--json",
        )  # fmt: skip
        assert code == 0, err
        ids[title] = json.loads(out)["id"]
    finished = ids["Finished"]

    code, out, err = mana("missions", "complete", finished, *AS)
    assert (code, out, err) == (0, f"completed mission {finished} “Finished”\n", "")
    shown = json.loads(mana("missions", "show", finished, *AS, "--json")[1])["mission"]
    assert shown["state"] == "done" and shown["nextRunAt"] is None

    # Nothing done or archived is claimed, even when its row looks due.
    execute(
        mana.db,  # type: ignore[attr-defined]
        "UPDATE missions SET next_run_at = '2000-01-01T00:00:00.000000Z', "
        "window_at = '2000-01-01T00:00:00.000000Z'",
    )
    code, out, err = mana("daemon", "--once", "--json", "--llm", f"scripted:{DEMO_SCRIPT}")
    assert code == 0, err
    assert json.loads(out)["claimed"] == 1
    done = json.loads(mana("missions", "show", finished, *AS, "--json")[1])
    assert done["iterations"] == [] and done["mission"]["state"] == "done"

    code, out, err = mana("missions", "resume", finished, *AS)
    assert code == 0, err
    assert out.startswith(f"resumed mission {finished}; next run 20") and "(manual)" not in out
    assert (
        json.loads(mana("missions", "show", finished, *AS, "--json")[1])["mission"]["state"]
        == "active"
    )

    code, out, err = mana("missions", "archive", finished, *AS)
    assert (code, out, err) == (0, f"archived mission {finished} “Finished”\n", "")
    code, out, err = mana("missions", "resume", finished, *AS)
    assert code == 1 and out == ""
    assert err == (
        "mana: error: mission 'Finished' is archived; archiving is final, so it cannot be "
        "resumed (create a new mission instead)\n"
    )
    code, _, err = mana("missions", "complete", finished, *AS)
    assert code == 1 and "cannot be completed" in err and err.count("\n") == 1

    listed = mana("missions", "list", *AS)[1]
    assert ids["Ongoing"] in listed and finished not in listed
    assert finished in mana("missions", "list", *AS, "--all")[1]
    only = json.loads(mana("missions", "list", *AS, "--state", "archived", "--json")[1])
    assert [m["id"] for m in only] == [finished]

    for action in ("complete", "archive"):
        code, out, err = mana("missions", action, "msn_nope", *AS)
        assert (code, out) == (1, "")
        assert err == "mana: error: no mission 'msn_nope' in this space\n"


def test_only_the_owner_or_a_manager_completes_or_archives(mana: Run) -> None:
    studio = ("--space", "demo-studio")
    bob = ("--as", "bob@x.test", *studio)
    assert mana("users", "create", "--email", "bob@x.test", "--password", "long-enough")[0] == 0
    assert mana("spaces", "add-member", *AS, *studio, "--email", "bob@x.test")[0] == 0
    assert mana("agents", "create", *AS, *studio, "--name", "helper")[0] == 0
    created = mana(
        "missions", "create", *AS, *studio, "--agent", "helper", "--title", "Demo's",
        "--objective", "Check", "--json",
    )  # fmt: skip
    theirs = json.loads(created[1])["id"]
    created = mana(
        "missions", "create", *bob, "--agent", "helper", "--title", "Bob's",
        "--objective", "Check", "--json",
    )  # fmt: skip
    his = json.loads(created[1])["id"]

    for action in ("complete", "archive"):
        code, out, err = mana("missions", action, theirs, *bob)
        assert (code, out) == (1, "")
        assert err == (
            "mana: error: only the mission's owner or the space's owner or an admin may change it\n"
        )
    state = json.loads(mana("missions", "show", theirs, *AS, *studio, "--json")[1])
    assert state["mission"]["state"] == "active"

    assert mana("missions", "complete", his, *bob)[0] == 0  # his own mission
    assert mana("missions", "archive", his, *AS, *studio)[0] == 0  # the space's owner
    listed = json.loads(mana("missions", "list", *AS, *studio, "--all", "--json")[1])
    assert {m["id"]: m["state"] for m in listed} == {theirs: "active", his: "archived"}
