"""Spaces: which spaces the caller belongs to, and the active space's policy (read-only)."""

from __future__ import annotations

from tool_registry.context import ToolContext
from tool_registry.models import ToolInput, ToolOutput
from tool_registry.spec import ToolSpec

MODULE = "spaces"


class NoInput(ToolInput):
    pass


class SpaceEntry(ToolOutput):
    id: str
    slug: str
    name: str
    type: str
    role: str


class SpaceList(ToolOutput):
    spaces: list[SpaceEntry]
    active_space_id: str


async def list_spaces(inp: NoInput, ctx: ToolContext) -> SpaceList:
    entries = [
        SpaceEntry(
            id=a.space.id,
            slug=a.space.slug,
            name=a.space.name,
            type=a.space.type,
            role=a.role or "member",
        )
        for a in await ctx.store.my_spaces()
    ]
    return SpaceList(spaces=entries, active_space_id=ctx.space.id)


LIST = ToolSpec(
    name="spaces.list",
    title="List my spaces",
    description=(
        "List every space the user belongs to (personal, family, team, brand, ...) with its type "
        "and the user's role, plus the id of the space this conversation is acting in. Data "
        "tools only ever see the active space."
    ),
    module=MODULE,
    scope="user-space",
    policy_hint="read",
    input=NoInput,
    output=SpaceList,
    handler=list_spaces,
)


class AllowedTool(ToolOutput):
    tool: str
    added_by: str | None = None
    added_at: str


class SpacePolicy(ToolOutput):
    space_id: str
    space_type: str
    destructive_allowlist: list[AllowedTool]


async def get_policy(inp: NoInput, ctx: ToolContext) -> SpacePolicy:
    rows = await ctx.store.destructive_allowlist()
    return SpacePolicy(
        space_id=ctx.space.id,
        space_type=ctx.space.type,
        destructive_allowlist=[
            AllowedTool(tool=r["tool"], added_by=r["added_by"], added_at=r["added_at"])
            for r in rows
        ],
    )


GET_POLICY = ToolSpec(
    name="spaces.getPolicy",
    title="Show space policy",
    description=(
        "Show which destructive tools (deletes) the owner of the active space has allowed. A "
        "destructive tool not on this list will be denied; prefer archiving or updating. Only "
        "a human owner or admin can change the list, outside this conversation."
    ),
    module=MODULE,
    scope="user-space",
    policy_hint="read",
    input=NoInput,
    output=SpacePolicy,
    handler=get_policy,
)

TOOLS = (LIST, GET_POLICY)
