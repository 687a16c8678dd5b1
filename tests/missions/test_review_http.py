"""`proposals.review` over a real `mana serve --http` process with the real Python `mcp` client,
in both protocol eras: a mission's two proposals are shown one form each (the exact call and its
fingerprint), the user approves one and rejects the other, the approved call runs once (as
invoker `user`) and the rejected one never; a client without elicitation is told to use the
CLI."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from contextlib import redirect_stdout
from io import StringIO
from pathlib import Path

import mcp_types as types
import pytest

from mana_cli.demo import DEMO_EMAIL
from mana_cli.main import main
from mcp_adapter.results import META_ERROR
from tests.mcp.elicit_client import Answers, demo_client
from tests.mcp.support import MODES, Mode, ServerProcess, World, seeded_world

ROOT = Path(__file__).resolve().parents[2]
DEMO_SCRIPT = ROOT / "examples" / "mission-demo.json"  # proposes one notes.create per run


@pytest.fixture(scope="module")
def world(
    tmp_path_factory: pytest.TempPathFactory, database_backend: str, request: pytest.FixtureRequest
) -> Iterator[World]:
    with seeded_world(request, database_backend, tmp_path_factory.mktemp("review")) as world:
        yield world


def mana(world: World, *argv: str) -> str:
    """`mana ARGV` in this process on the world's database (from a thread in async tests: the
    CLI runs its own event loop); its output."""
    out = StringIO()
    with redirect_stdout(out):
        code = main([*world.installation.flags(), *argv])
    assert code == 0, out.getvalue()
    return out.getvalue()


@pytest.fixture(scope="module")
def mission(world: World) -> str:
    owner = ("--as", DEMO_EMAIL, "--space", world.brand_id)
    mana(world, "agents", "create", *owner, "--name", "scout", "--auto", "todo.create")
    created = mana(world, "missions", "create", *owner, "--agent", "scout", "--title", "Review",
                   "--objective", "Review my week", "--cadence", "manual", "--json")  # fmt: skip
    return str(json.loads(created)["id"])


def propose(world: World, mission: str, runs: int) -> list[str]:
    """Run the mission `runs` times (each run proposes one note); the pending proposal ids."""
    owner = ("--as", DEMO_EMAIL, "--space", world.brand_id)
    for _ in range(runs):
        mana(world, "missions", "run-now", mission, *owner, "--llm", f"scripted:{DEMO_SCRIPT}")
    pending = json.loads(mana(world, "proposals", "list", *owner, "--json"))
    return [p["id"] for p in pending]


@pytest.fixture(scope="module")
def server(world: World, mission: str) -> Iterator[ServerProcess]:
    with ServerProcess(world.installation) as proc:
        yield proc


async def runs_as_user(world: World) -> int:
    rows = await world.installation.query(
        "SELECT COUNT(*) FROM audit_log WHERE tool = 'notes.create' AND invoker = 'user' "
        "AND outcome = 'ok'"
    )
    return int(rows[0][0])


@pytest.mark.parametrize("mode", MODES)
async def test_the_user_approves_one_proposal_and_rejects_the_other(
    server: ServerProcess, world: World, mission: str, mode: Mode
) -> None:
    ids = await asyncio.to_thread(propose, world, mission, 2)
    runs_before = await runs_as_user(world)
    answers = Answers(
        types.ElicitResult(action="accept", content={"decision": "approve"}),
        types.ElicitResult(action="accept", content={"decision": "reject", "note": "twice"}),
    )
    async with demo_client(
        server, world, mode, world.brand_id, elicitation_callback=answers
    ) as client:
        result = await client.call_tool("proposals.review", {})
    assert not result.is_error, result.content
    review = result.structured_content
    assert review is not None
    [approved] = review["approved"]
    [rejected] = review["rejected"]
    first, second = approved["id"], rejected["id"]
    assert {first, second} == set(ids)
    assert (approved["status"], approved["reason"], rejected["status"]) == (
        "executed",
        None,
        "rejected",
    )
    # One form per proposal, in the order decided, each naming the exact call.
    assert len(answers.asked) == 2
    assert first in answers.messages[0] and second in answers.messages[1]
    assert all("call notes.create with arguments" in q for q in answers.messages)
    statuses = await world.installation.query(
        "SELECT id, status FROM proposals WHERE id IN (?, ?)", first, second
    )
    assert dict(statuses) == {first: "executed", second: "rejected"}
    # The approved call ran once, as the approving user.
    assert await runs_as_user(world) == runs_before + 1


@pytest.mark.parametrize("mode", MODES)
async def test_a_client_without_elicitation_is_sent_to_the_cli(
    server: ServerProcess, world: World, mission: str, mode: Mode
) -> None:
    [pending] = await asyncio.to_thread(propose, world, mission, 1)
    async with demo_client(server, world, mode, world.brand_id) as client:
        result = await client.call_tool("proposals.review", {})
    assert result.is_error and result.meta is not None
    assert result.meta[META_ERROR]["reason"] == "client-cannot-ask"
    assert "mana proposals approve ID" in str(result.content)
    owner = ("--as", DEMO_EMAIL, "--space", world.brand_id)
    await asyncio.to_thread(mana, world, "proposals", "reject", pending, *owner)
