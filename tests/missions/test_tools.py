"""The MCP-facing `missions.*` and `proposals.list` tools through the invocation pipeline."""

from __future__ import annotations

from typing import Any

from missions.runner import run_mission
from tests.missions.helpers import World, call, scripted, turn
from tool_registry.context import CallContext
from tool_registry.pipeline import Outcome
from tool_registry.store import Space, User


async def mcp(world: World, user: User, space: Space, tool: str, args: dict[str, Any]) -> Outcome:
    return await world.pipeline.invoke(
        tool, args, CallContext(user_id=user.id, space=space.id, invoker="mcp")
    )


async def ok(world: World, user: User, space: Space, tool: str, args: dict[str, Any]) -> Any:
    outcome = await mcp(world, user, space, tool, args)
    assert outcome.ok, outcome.public()
    return outcome.result


async def test_set_up_and_review_a_mission_by_talking(world: World) -> None:
    owner = await world.user()
    brand = await world.pipeline.accounts.create_space(owner.id, type_="brand", name="Studio")
    await world.agent(owner, brand, name="Writer", role="Drafts posts")

    created = await ok(
        world,
        owner,
        brand,
        "missions.create",
        {
            "title": "Weekly post",
            "objective": "Draft a post about the week",
            "concept": "Friendly tone",
            "cadence": {"kind": "daily", "hour": 9, "minute": 0, "timezone": "Europe/Berlin"},
        },
    )
    assert created["agentName"] == "Writer" and created["state"] == "active"
    assert created["cadenceText"] == "daily 09:00 Europe/Berlin"
    assert created["nextRunAt"] == "2026-11-21T08:00:00.000000Z"
    listed = await ok(world, owner, brand, "missions.list", {})
    assert [m["id"] for m in listed["missions"]] == [created["id"]]
    assert [a["name"] for a in listed["agents"]] == ["Writer"]

    mission = await world.store.require_mission(brand.id, created["id"])
    llm = scripted([turn("Drafting.", call("notes.create", title="Draft")), turn("Proposed.")])
    await run_mission(world.runner(llm), mission)

    runs = await ok(world, owner, brand, "missions.iterations", {"missionId": mission.id})
    [run] = runs["iterations"]
    assert run["status"] == "awaiting-review" and run["summary"] == "Proposed."
    assert run["steps"] == [
        {
            "round": 1,
            "tool": "notes.create",
            "status": "proposed",
            "proposalId": run["steps"][0]["proposalId"],
            "proposalStatus": "pending",
        }
    ]
    proposals = await ok(world, owner, brand, "proposals.list", {})
    [proposal] = proposals["proposals"]
    assert proposal["tool"] == "notes.create" and proposal["arguments"] == {"title": "Draft"}
    assert "mana proposals approve" in proposals["howToDecide"]
    assert (await ok(world, owner, brand, "proposals.list", {"status": "executed"}))[
        "proposals"
    ] == []

    paused = await ok(world, owner, brand, "missions.pause", {"missionId": mission.id})
    assert paused["state"] == "paused"


async def test_agent_choice_and_cadence_validation(world: World) -> None:
    owner = await world.user()
    space = await world.personal(owner)
    no_agent = await mcp(world, owner, space, "missions.create", {"title": "t", "objective": "o"})
    assert no_agent.error is not None and no_agent.error.reason == "agent-required"
    await world.agent(owner, space, name="one")
    only = await ok(world, owner, space, "missions.create", {"title": "t", "objective": "o"})
    assert only["agentName"] == "one" and only["cadence"] == {"kind": "manual"}
    assert only["nextRunAt"] is None
    await world.agent(owner, space, name="two")
    ambiguous = await mcp(world, owner, space, "missions.create", {"title": "t", "objective": "o"})
    assert ambiguous.error is not None and "one, two" in ambiguous.error.message
    bad = await mcp(
        world,
        owner,
        space,
        "missions.create",
        {"title": "t", "objective": "o", "agent": "one", "cadence": {"kind": "daily", "hour": 25}},
    )
    assert bad.status == "invalid-input" and bad.error is not None
    assert any("hour" in f.field for f in bad.error.fields)
    unknown = await mcp(
        world, owner, space, "missions.create", {"title": "t", "objective": "o", "agent": "zed"}
    )
    assert unknown.error is not None and unknown.error.reason == "not-found"


async def test_spaces_are_isolated_and_only_owners_or_managers_pause(world: World) -> None:
    owner = await world.user()
    member = await world.user()
    team = await world.pipeline.accounts.create_space(owner.id, type_="team", name="Team")
    await world.pipeline.accounts.add_member(team.id, member.id, "member")
    await world.agent(owner, team)
    mine = await ok(world, member, team, "missions.create", {"title": "Mine", "objective": "o"})
    theirs = await ok(world, owner, team, "missions.create", {"title": "Theirs", "objective": "o"})

    denied = await mcp(world, member, team, "missions.pause", {"missionId": theirs["id"]})
    assert denied.error is not None and denied.error.reason == "permission-denied"
    assert (await ok(world, member, team, "missions.pause", {"missionId": mine["id"]}))[
        "state"
    ] == "paused"
    assert (await ok(world, owner, team, "missions.pause", {"missionId": mine["id"]}))[
        "state"
    ] == "paused"  # the space's owner may pause any mission

    personal = await world.personal(owner)
    elsewhere = await mcp(world, owner, personal, "missions.pause", {"missionId": theirs["id"]})
    assert elsewhere.error is not None and elsewhere.error.reason == "not-found"
    assert (await ok(world, owner, personal, "missions.list", {}))["missions"] == []
    runs = await mcp(world, owner, personal, "missions.iterations", {"missionId": theirs["id"]})
    assert runs.error is not None and runs.error.reason == "not-found"

    outsider = await world.user()
    refused = await mcp(world, outsider, team, "missions.list", {})
    assert refused.status == "denied" and refused.error is not None
    assert refused.error.reason == "not-a-member"

    family = await world.pipeline.accounts.create_space(owner.id, type_="family", name="Home")
    blocked = await mcp(world, owner, family, "missions.list", {})
    assert blocked.error is not None and blocked.error.reason == "module-not-allowed"


async def test_complete_resume_and_archived_missions_by_talking(world: World) -> None:
    owner = await world.user()
    member = await world.user()
    team = await world.pipeline.accounts.create_space(owner.id, type_="team", name="Team")
    await world.pipeline.accounts.add_member(team.id, member.id, "member")
    await world.agent(owner, team)
    daily = {"kind": "daily", "hour": 9, "minute": 0, "timezone": "UTC"}
    created = await ok(
        world, owner, team, "missions.create", {"title": "T", "objective": "o", "cadence": daily}
    )
    assert created["nextRunAt"] is not None

    denied = await mcp(world, member, team, "missions.complete", {"missionId": created["id"]})
    assert denied.error is not None and denied.error.reason == "permission-denied"
    done = await ok(world, owner, team, "missions.complete", {"missionId": created["id"]})
    assert done["state"] == "done" and done["nextRunAt"] is None
    assert (await ok(world, owner, team, "missions.complete", {"missionId": created["id"]}))[
        "state"
    ] == "done"  # completing twice is a no-op
    resumed = await ok(world, owner, team, "missions.resume", {"missionId": created["id"]})
    assert resumed["state"] == "active" and resumed["nextRunAt"] == created["nextRunAt"]

    other = await ok(world, owner, team, "missions.create", {"title": "Old", "objective": "o"})
    await world.service.set_state(
        state="archived", user_id=owner.id, space_id=team.id, mission_id=other["id"]
    )
    listed = await ok(world, owner, team, "missions.list", {})
    assert [m["id"] for m in listed["missions"]] == [created["id"]]  # archived ones are left out
    archived = await ok(world, owner, team, "missions.list", {"state": "archived"})
    assert [m["id"] for m in archived["missions"]] == [other["id"]]
    refused = await mcp(world, owner, team, "missions.resume", {"missionId": other["id"]})
    assert refused.error is not None and "archiving is final" in refused.error.message
    gone = await mcp(world, owner, team, "missions.complete", {"missionId": "msn_nope"})
    assert gone.error is not None and gone.error.reason == "not-found"


async def test_create_is_atomic_with_the_pipelines_idempotency(world: World) -> None:
    owner = await world.user()
    space = await world.personal(owner)
    await world.agent(owner, space)
    args = {"title": "Once", "objective": "o"}
    context = CallContext(user_id=owner.id, space=space.id, invoker="mcp", idempotency_key="k1")
    first = await world.pipeline.invoke("missions.create", args, context)
    again = await world.pipeline.invoke("missions.create", args, context)
    assert first.ok and again.ok and again.replayed
    assert first.result is not None and again.result is not None
    assert again.result["id"] == first.result["id"]
    assert len(await world.store.list_missions(space.id)) == 1
