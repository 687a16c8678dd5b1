"""A missions/proposals tool handler sees one space only: what it gets is a `SpaceMissions`
bound to the caller's user and space (no method takes another space or user), and a mission of
another space is `not-found` through the pipeline, as an MCP client calls it."""

from __future__ import annotations

import inspect
from typing import Any

from missions.runner import run_mission
from missions.service import MissionsService
from missions.view import MISSIONS, SpaceMissions
from tests.missions.helpers import World, call, open_world, scripted, turn
from tests.missions.test_tools import mcp, ok
from tool_registry.context import ToolContext
from tool_registry.models import ToolInput, ToolOutput
from tool_registry.spec import ToolSpec

SCOPE_NAMES = {"user_id", "space_id", "space", "user", "owner_id", "spaces", "users"}


def test_the_view_has_only_the_tools_operations_and_takes_no_user_or_space() -> None:
    public = {n for n in dir(SpaceMissions) if not n.startswith("_")}
    assert public == {
        "user_id",
        "space",
        "list_agents",
        "list_missions",
        "create_mission",
        "set_state",
        "list_iterations",
        "list_proposals",
    }
    for name in public - {"user_id", "space"}:
        params = set(inspect.signature(getattr(SpaceMissions, name)).parameters)
        assert not params & SCOPE_NAMES, (name, params & SCOPE_NAMES)
    # read-only: the binding cannot be moved to another user or space
    for prop in ("user_id", "space"):
        attr = inspect.getattr_static(SpaceMissions, prop)
        assert isinstance(attr, property) and attr.fset is None


class Empty(ToolInput):
    pass


class Seen(ToolOutput):
    kind: str
    user_id: str
    space_id: str
    public_services: list[str]


async def _probe(inp: Empty, ctx: ToolContext) -> Seen:
    view = ctx.backend(MISSIONS)
    return Seen(
        kind=type(view).__name__,
        user_id=view.user_id,
        space_id=view.space.id,
        public_services=[
            n
            for n in dir(view)
            if not n.startswith("_") and isinstance(getattr(view, n), MissionsService)
        ],
    )


PROBE = ToolSpec(
    name="missions.probe",
    title="Missions probe",
    description="Reports what a handler gets for the missions backend.",
    module="missions",
    scope="user-space",
    policy_hint="read",
    requires=(MISSIONS.name,),
    input=Empty,
    output=Seen,
    handler=_probe,
)


async def test_a_handler_gets_a_view_bound_to_the_call(database_target: str) -> None:
    async with open_world(database_target, extra_tools=[PROBE]) as world:
        owner = await world.user()
        team = await world.pipeline.accounts.create_space(owner.id, type_="team", name="Team")
        personal = await world.personal(owner)
        for space in (team, personal):
            seen = await ok(world, owner, space, "missions.probe", {})
            assert seen == {
                "kind": "SpaceMissions",
                "userId": owner.id,
                "spaceId": space.id,
                "publicServices": [],
            }
        assert world.pipeline.backends.get(MISSIONS) is world.service  # the CLI's service


async def _not_found(world: World, user: Any, space: Any, tool: str, args: dict[str, Any]) -> None:
    out = await mcp(world, user, space, tool, args)
    assert out.error is not None and out.error.reason == "not-found", (tool, out.public())


async def test_another_spaces_mission_is_not_found(world: World) -> None:
    owner = await world.user()
    team = await world.pipeline.accounts.create_space(owner.id, type_="team", name="Team")
    brand = await world.pipeline.accounts.create_space(owner.id, type_="brand", name="Studio")
    await world.agent(owner, team)
    await world.agent(owner, brand)
    created = await ok(world, owner, team, "missions.create", {"title": "T", "objective": "o"})
    mission = await world.store.require_mission(team.id, created["id"])
    llm = scripted([turn("Drafting.", call("notes.create", title="Draft")), turn("Proposed.")])
    await run_mission(world.runner(llm), mission)
    assert len((await ok(world, owner, team, "proposals.list", {}))["proposals"]) == 1

    # the same user, another of their spaces: the team's mission does not exist there
    outsider = await world.user()
    for user, space in ((owner, brand), (outsider, await world.personal(outsider))):
        for tool in ("missions.pause", "missions.resume", "missions.complete"):
            await _not_found(world, user, space, tool, {"missionId": mission.id})
        await _not_found(world, user, space, "missions.iterations", {"missionId": mission.id})
        listed = await ok(world, user, space, "missions.list", {})
        assert listed["missions"] == []
        for args in ({"status": "all"}, {"status": "all", "missionId": mission.id}):
            assert (await ok(world, user, space, "proposals.list", args))["proposals"] == []

    # nothing changed in the team's space
    assert (await world.store.require_mission(team.id, mission.id)).state == "active"
