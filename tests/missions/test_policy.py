"""The agent's tool policy inside missions, proposals, and the no-self-replication rules."""

from __future__ import annotations

from datetime import timedelta

import pytest

from agent_loop.llm import ToolCall
from agent_loop.scripted import ScriptedClient
from missions.proposals import ProposalService, fingerprint
from missions.runner import MissionTools
from policy.agent_policy import AGENT_EXCLUDED_MODULES, AgentToolPolicy
from tests.missions.helpers import World, call, scripted, turn
from tool_registry.context import CallContext
from tool_registry.errors import ConflictError, PermissionDeniedError

READS_AUTO = {"read": "auto", "write": "propose", "destructive": "deny"}


def policy(**tools: str) -> AgentToolPolicy:
    return AgentToolPolicy(
        tools={k.replace("__", "."): v for k, v in tools.items()},  # type: ignore[misc]
        by_hint=READS_AUTO,  # type: ignore[arg-type]
    )


async def test_auto_calls_run_through_the_pipeline_as_mission_runner(world: World) -> None:
    owner = await world.user()
    space = await world.personal(owner)
    agent = await world.agent(owner, space, policy=policy(todo__create="auto"))
    mission = await world.mission(owner, space, agent)
    llm = scripted([turn("Adding it.", call("todo.create", title="Water plants")), turn("Done.")])

    it = await world.runner(llm).run_now(space.id, mission.id)

    assert it.status == "completed" and it.summary == "Done."
    assert [t["title"] for t in await world.records("todos", space)] == ["Water plants"]
    assert [(s.tool, s.status) for s in it.plan] == [("todo.create", "executed")]
    rows = await world.pipeline.audit.recent(tool="todo.create")
    assert [r["invoker"] for r in rows] == ["mission-runner"]
    keys = await world.count(
        "SELECT COUNT(*) FROM idempotency_keys WHERE key LIKE ?", f"{mission.id}@run-now:%"
    )
    assert keys == 1


async def test_propose_stages_a_proposal_and_writes_nothing_until_approved(world: World) -> None:
    owner = await world.user()
    space = await world.personal(owner)
    agent = await world.agent(owner, space)  # sensible default: writes propose
    mission = await world.mission(owner, space, agent)
    clients: list[ScriptedClient] = []
    llm = scripted(
        [
            turn("I'd like to note this.", call("notes.create", title="Idea", body="Grow basil")),
            turn("Proposed a note."),
        ],
        clients,
    )

    it = await world.runner(llm).run_now(space.id, mission.id)

    assert it.status == "awaiting-review"
    assert await world.records("notes", space) == []
    [step] = it.plan
    assert step.status == "proposed" and step.proposal_id and step.proposal_status == "pending"
    # The model was told the call awaits approval (its tool result, not an error).
    result = clients[0].requests[1].messages[-1].tool_results[0]
    assert "needs a human's approval" in result.content and not result.is_error
    [proposal] = await world.store.list_proposals(space.id)
    assert proposal.tool == "notes.create"
    assert proposal.arguments == {"title": "Idea", "body": "Grow basil"}
    assert proposal.rationale == "I'd like to note this."
    assert proposal.fingerprint == fingerprint(
        "notes.create", {"body": "Grow basil", "title": "Idea"}
    )
    assert proposal.expires_at > proposal.created_at

    decision = await ProposalService(world.store, world.pipeline.accounts, world.pipeline).approve(
        owner.id, proposal.id
    )

    assert decision.executed and decision.proposal.status == "executed"
    assert [n["title"] for n in await world.records("notes", space)] == ["Idea"]
    rows = await world.pipeline.audit.recent(tool="notes.create")
    assert [r["invoker"] for r in rows] == ["user"]
    after = await world.store.iteration_by_id(it.id)
    assert after.status == "completed"
    assert after.plan[0].status == "executed" and after.plan[0].proposal_status == "executed"


async def test_deny_is_invisible_to_the_model_and_refused_if_called(world: World) -> None:
    owner = await world.user()
    space = await world.personal(owner)
    agent = await world.agent(owner, space, policy=policy(todo__list="deny", notes__create="auto"))
    mission = await world.mission(owner, space, agent)
    clients: list[ScriptedClient] = []
    llm = scripted([turn("Try it.", call("todo.list")), turn("Could not.")], clients)

    it = await world.runner(llm).run_now(space.id, mission.id)

    offered = {t.name for t in clients[0].requests[0].tools}
    assert "todo.list" not in offered and "notes.create" in offered
    assert "notes.delete" not in offered  # destructive: deny by default
    assert it.plan[0].status == "denied" and it.plan[0].reason == "not-offered"
    assert await world.count("SELECT COUNT(*) FROM audit_log WHERE tool = 'todo.list'") == 0


async def test_approving_a_destructive_proposal_still_needs_the_allowlist(world: World) -> None:
    owner = await world.user()
    space = await world.personal(owner)
    note = await world.pipeline.invoke(
        "notes.create", {"title": "Old"}, CallContext(user_id=owner.id)
    )
    assert note.ok and note.result
    agent = await world.agent(owner, space, policy=policy(notes__delete="propose"))
    mission = await world.mission(owner, space, agent)
    llm = scripted([turn("Clean up.", call("notes.delete", id=note.result["id"])), turn("ok")])
    it = await world.runner(llm).run_now(space.id, mission.id)
    [proposal] = await world.store.list_proposals(space.id)
    decide = ProposalService(world.store, world.pipeline.accounts, world.pipeline)

    denied = await decide.approve(owner.id, proposal.id)

    assert not denied.executed and denied.outcome is not None
    assert denied.outcome.status == "denied"
    assert denied.outcome.error is not None
    assert denied.outcome.error.reason == "destructive-not-allowed"
    assert denied.proposal.status == "pending"  # nothing ran: it can be approved later
    assert len(await world.records("notes", space)) == 1

    await world.allowlist.allow(owner.id, space.id, ["notes.delete"], acknowledge=True)
    allowed = await decide.approve(owner.id, proposal.id)

    assert allowed.executed and allowed.proposal.status == "executed"
    assert await world.records("notes", space) == []
    assert (await world.store.iteration_by_id(it.id)).status == "completed"


async def test_approval_runs_exactly_the_fingerprinted_call(world: World) -> None:
    owner = await world.user()
    space = await world.personal(owner)
    agent = await world.agent(owner, space)
    mission = await world.mission(owner, space, agent)
    llm = scripted([turn("Note.", call("notes.create", title="Safe")), turn("ok")])
    await world.runner(llm).run_now(space.id, mission.id)
    [proposal] = await world.store.list_proposals(space.id)
    # Someone edits the stored arguments behind the proposal's back.
    await world.db.write(
        lambda c: c.execute(
            "UPDATE proposals SET arguments = ? WHERE id = ?",
            ('{"title":"Edited"}', proposal.id),
        )
    )
    decide = ProposalService(world.store, world.pipeline.accounts, world.pipeline)
    with pytest.raises(ConflictError, match="fingerprint"):
        await decide.approve(owner.id, proposal.id)
    assert await world.records("notes", space) == []


async def test_reject_and_expiry(world: World) -> None:
    owner = await world.user()
    space = await world.personal(owner)
    agent = await world.agent(owner, space)
    mission = await world.mission(owner, space, agent)
    llm = scripted(
        [turn("Two.", call("notes.create", title="A"), call("notes.create", title="B")), turn("ok")]
    )
    it = await world.runner(llm).run_now(space.id, mission.id)
    first, second = sorted(
        await world.store.list_proposals(space.id), key=lambda p: p.arguments["title"]
    )
    decide = ProposalService(world.store, world.pipeline.accounts, world.pipeline)

    rejected = await decide.reject(owner.id, first.id, note="no")
    assert rejected.proposal.status == "rejected" and rejected.proposal.result == {"note": "no"}
    assert (await world.store.iteration_by_id(it.id)).status == "awaiting-review"

    world.clock.advance(days=7, seconds=1)  # the default expiry is 7 days, not minutes
    with pytest.raises(ConflictError, match="expired"):
        await decide.approve(owner.id, second.id)
    [expired] = await world.store.list_proposals(space.id, status="expired")
    assert expired.id == second.id
    settled = await world.store.iteration_by_id(it.id)
    assert settled.status == "completed"
    assert {s.proposal_status for s in settled.plan} == {"rejected", "expired"}
    assert await world.records("notes", space) == []


async def test_only_the_owner_or_a_manager_decides(world: World) -> None:
    owner = await world.user()
    member = await world.user()
    team = await world.pipeline.accounts.create_space(owner.id, type_="team", name="Team")
    await world.pipeline.accounts.add_member(team.id, member.id, "member")
    agent = await world.agent(owner, team)
    mission = await world.mission(owner, team, agent)
    llm = scripted([turn("Note.", call("notes.create", title="Team note")), turn("ok")])
    await world.runner(llm).run_now(team.id, mission.id)
    [proposal] = await world.store.list_proposals(team.id)
    decide = ProposalService(world.store, world.pipeline.accounts, world.pipeline)
    with pytest.raises(PermissionDeniedError):
        await decide.approve(member.id, proposal.id)
    outsider = await world.user()
    with pytest.raises(Exception, match="no proposal"):
        await decide.approve(outsider.id, proposal.id)
    assert (await decide.approve(owner.id, proposal.id)).executed


async def test_missions_modules_are_never_offered_nor_dispatched_inside_missions(
    world: World,
) -> None:
    owner = await world.user()
    space = await world.personal(owner)
    # Even a policy that says `auto` for them cannot open the missions modules to an agent.
    agent = await world.agent(
        owner,
        space,
        policy=AgentToolPolicy(modules={"missions": "auto", "proposals": "auto"}, default="auto"),
    )
    mission = await world.mission(owner, space, agent)
    clients: list[ScriptedClient] = []
    llm = scripted(
        [
            turn(
                "Let me copy myself.",
                call("missions.create", title="Clone", objective="Replicate"),
                call("proposals.list"),
                call("missions.list"),
            ),
            turn("I could not."),
        ],
        clients,
    )

    it = await world.runner(llm).run_now(space.id, mission.id)

    offered = {t.name.split(".")[0] for t in clients[0].requests[0].tools}
    assert offered.isdisjoint(AGENT_EXCLUDED_MODULES) and "todo" in offered
    assert [s.status for s in it.plan] == ["denied", "denied", "denied"]
    assert {s.reason for s in it.plan} == {"not-offered"}
    assert len(await world.store.list_missions(space.id)) == 1
    assert await world.count("SELECT COUNT(*) FROM audit_log WHERE tool LIKE 'missions.%'") == 0

    # The dispatcher refuses them directly too (and the proposal path as well).
    tools = MissionTools(
        world.pipeline,
        CallContext(user_id=owner.id, invoker="mission-runner"),
        policy=agent.tool_policy,
        run_key="k",
        on_propose=None,
    )
    refused = await tools.call(ToolCall("c1", "missions.pause", {"missionId": mission.id}))
    assert refused.status == "denied" and refused.reason == "not-offered"


async def test_mission_tools_are_for_people_and_deciding_is_up_to_a_person(world: World) -> None:
    registry = world.pipeline.registry
    names = {s.name for s in registry.all() if s.module in ("missions", "proposals")}
    assert names == {
        "missions.list",
        "missions.create",
        "missions.pause",
        "missions.resume",
        "missions.complete",
        "missions.iterations",
        "proposals.list",
        "proposals.review",
    }  # no approve/reject a model could call on its own (proposals.review asks the user about
    # each one in their client), and no archive: final acts stay with a person
    hints = {s.name: s.policy_hint for s in registry.all() if s.name in names}
    assert hints["missions.create"] == hints["missions.pause"] == "write"
    assert hints["missions.resume"] == hints["missions.complete"] == "write"
    assert hints["missions.iterations"] == hints["proposals.list"] == "read"
    assert hints["proposals.review"] == "write"
    for space_type in ("personal", "brand", "team"):
        visible = {s.name for s in world.pipeline.visible_tools(space_type)}
        assert names <= visible, space_type
    for space_type in ("family", "club", "practice"):
        visible = {s.name for s in world.pipeline.visible_tools(space_type)}
        assert not names & visible, space_type


async def test_rerun_of_the_same_window_reuses_the_pending_proposal(world: World) -> None:
    owner = await world.user()
    space = await world.personal(owner)
    agent = await world.agent(owner, space)
    mission = await world.mission(owner, space, agent)
    await world.make_due(mission.id)
    llm = scripted([turn("Note.", call("notes.create", title="Once")), turn("ok")])
    runner = world.runner(llm)
    first_claim = (await runner.scheduler.claim_due(1)).claimed[0]
    await runner.run_claim(first_claim)
    # Re-run the same window (as after a crash: same run key, so the same call key).
    await world.make_due(mission.id, at=world.clock.now() - timedelta(minutes=1))
    await world.db.write(
        lambda c: c.execute(
            "UPDATE missions SET window_at = ? WHERE id = ?", (first_claim.window_at, mission.id)
        )
    )
    second_claim = (await runner.scheduler.claim_due(1)).claimed[0]
    assert second_claim.run_key == first_claim.run_key and second_claim.attempt == 2
    await runner.run_claim(second_claim)
    proposals = await world.store.list_proposals(space.id)
    assert len(proposals) == 1 and proposals[0].iteration_id == second_claim.iteration_id
