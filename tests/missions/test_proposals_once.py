"""A proposal's call runs exactly once: ten `mana proposals approve` processes by the space's
owner and an admin on one database (SQLite or PostgreSQL) lead to one write, one audited execution and ten equal
answers; an approval that crashed after claiming is finished by a later approval under the same
idempotency key (the write is replayed, not repeated)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from mana_cli.main import main
from missions.proposals import Claim, Decision, ProposalService, execution_key
from missions.store import MissionStore
from tests.missions.helpers import World, call, database_args, query, scripted, turn
from tests.missions.test_processes import env_for
from tool_registry.pipeline import Outcome

ROOT = Path(__file__).resolve().parents[2]
DEMO_SCRIPT = ROOT / "examples" / "mission-demo.json"
OWNER = "demo@mana.test"
ADMIN = "admin@once.test"
SPACE = "demo-studio"
DEADLINE = 120.0  # failure guard only


def _mana(db: str, *argv: str, capsys: pytest.CaptureFixture[str]) -> str:
    code = main([*database_args(db), *argv])
    out, err = capsys.readouterr()
    assert code == 0, err
    return out


def _count(db: str, sql: str, *params: Any) -> int:
    [row] = query(db, sql, *params)
    return int(next(iter(row.values())))


def test_ten_concurrent_approvals_in_separate_processes_execute_once(
    database_target: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = database_target
    owner = ("--as", OWNER, "--space", SPACE)
    _mana(db, "init", capsys=capsys)
    _mana(db, "seed", "demo", capsys=capsys)
    _mana(db, "users", "create", "--email", ADMIN, "--password", "long-enough-pw", capsys=capsys)
    _mana(db, "spaces", "add-member", *owner, "--email", ADMIN, "--role", "admin", capsys=capsys)
    _mana(db, "agents", "create", *owner, "--name", "scout", "--auto", "todo.create", capsys=capsys)
    mission = json.loads(
        _mana(
            db,
            "missions",
            "create",
            *owner,
            "--agent",
            "scout",
            "--title",
            "Review",
            "--objective",
            "Review my week",
            "--cadence",
            "interval:60",
            "--json",
            capsys=capsys,
        )
    )
    _mana(
        db,
        "missions",
        "run-now",
        mission["id"],
        *owner,
        "--llm",
        f"scripted:{DEMO_SCRIPT}",
        capsys=capsys,
    )
    [proposal] = json.loads(_mana(db, "proposals", "list", *owner, "--json", capsys=capsys))
    assert proposal["tool"] == "notes.create" and proposal["status"] == "pending"
    notes = "SELECT COUNT(*) FROM records WHERE collection = 'notes'"
    audited = "SELECT COUNT(*) FROM audit_log WHERE tool = 'notes.create'"
    notes_before, audited_before = _count(db, notes), _count(db, audited)

    env = env_for(tmp_path)
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "mana_cli",
                *database_args(db),
                "proposals",
                "approve",
                proposal["id"],
                "--as",
                OWNER if n % 2 == 0 else ADMIN,
                "--space",
                SPACE,
                "--json",
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(10)
    ]
    answers = []
    try:
        for proc in procs:
            out, err = proc.communicate(timeout=DEADLINE)
            assert proc.returncode == 0, err
            answers.append(json.loads(out))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    assert _count(db, notes) == notes_before + 1
    assert _count(db, audited) == audited_before + 1
    assert all(a == answers[0] for a in answers)
    decided = answers[0]
    assert decided["executed"] and decided["proposal"]["status"] == "executed"
    assert decided["outcome"]["status"] == "ok" and "replayed" not in decided["outcome"]
    keys = "SELECT COUNT(*) FROM idempotency_keys WHERE key = ?"
    assert _count(db, keys, execution_key(proposal["id"])) == 1


# -- crash recovery ------------------------------------------------------------------------------


class Crash(Exception):
    """Stands for the approving process dying at this point."""


class CrashingApproval(ProposalService):
    """Dies right after claiming (`before-run`) or right after the call committed its write
    (`after-write`), before the run is recorded on the proposal."""

    def __init__(self, world: World, point: str) -> None:
        super().__init__(world.store, world.pipeline.accounts, world.pipeline)
        self.point = point

    async def _run(self, proposal: Any, claim: Claim) -> Decision:
        if self.point == "before-run":
            raise Crash(self.point)
        return await super()._run(proposal, claim)

    async def _record(self, proposal: Any, outcome: Outcome) -> Any:
        raise Crash(self.point)


async def _team_proposal(world: World) -> tuple[Any, Any, Any, str]:
    owner = await world.user()
    admin = await world.user()
    team = await world.pipeline.accounts.create_space(owner.id, type_="team", name="Team")
    await world.pipeline.accounts.add_member(team.id, admin.id, "admin")
    agent = await world.agent(owner, team)
    mission = await world.mission(owner, team, agent)
    llm = scripted([turn("Note.", call("notes.create", title="Once")), turn("ok")])
    await world.runner(llm).run_now(team.id, mission.id)
    [proposal] = await world.store.list_proposals(team.id)
    return owner, admin, team, proposal.id


@pytest.mark.parametrize("point", ["before-run", "after-write"])
async def test_a_crashed_approval_is_finished_by_a_later_one_with_the_same_key(
    world: World, point: str
) -> None:
    owner, admin, team, proposal_id = await _team_proposal(world)

    with pytest.raises(Crash):
        await CrashingApproval(world, point).approve(owner.id, proposal_id)
    [claimed] = await world.store.list_proposals(team.id, status="approved")
    assert claimed.decided_by == owner.id
    written = len(await world.records("notes", team))
    assert written == (1 if point == "after-write" else 0)

    world.clock.advance(minutes=3)  # the crashed claim is older than the claim lease
    later = await ProposalService(world.store, world.pipeline.accounts, world.pipeline).approve(
        admin.id, proposal_id
    )

    assert later.executed and later.proposal.status == "executed"
    assert later.outcome is not None and later.outcome.replayed == (point == "after-write")
    [note_id] = [
        r["id"]
        for r in await world.db.read(
            lambda c: c.execute(
                "SELECT id FROM records WHERE collection = 'notes' AND space_id = ?", (team.id,)
            ).fetchall()
        )
    ]
    assert later.proposal.result is not None
    assert later.proposal.result["result"]["id"] == note_id
    # Run as the claim's executor under the key stored on the proposal, whoever approves.
    assert later.proposal.decided_by == owner.id
    keys = await world.count(
        "SELECT COUNT(*) FROM idempotency_keys WHERE key = ?", execution_key(proposal_id)
    )
    assert keys == 1

    again = await ProposalService(world.store, world.pipeline.accounts, world.pipeline).approve(
        owner.id, proposal_id
    )
    assert again.outcome is None and again.to_json() == later.to_json()
    assert len(await world.records("notes", team)) == 1


async def test_a_live_claim_is_not_taken_over(world: World) -> None:
    owner, admin, team, proposal_id = await _team_proposal(world)
    with pytest.raises(Crash):
        await CrashingApproval(world, "before-run").approve(owner.id, proposal_id)
    store: MissionStore = world.store
    proposal = await store.find_proposal(team.id, proposal_id)
    assert proposal is not None
    service = ProposalService(store, world.pipeline.accounts, world.pipeline)
    # Within the lease, another approval does not get the claim (it would wait for the run).
    assert await service._claim(proposal, admin.id, waiting_since=float("inf")) is None
    world.clock.advance(minutes=3)
    taken = await service._claim(proposal, admin.id, waiting_since=float("inf"))
    assert taken is not None and taken.executor_id == owner.id
    assert await service._claim(proposal, admin.id, waiting_since=float("inf")) is None
