"""Spaces: which spaces the caller belongs to, and the active space's policy (read-only)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from pydantic import Field

from tool_registry.context import ToolContext
from tool_registry.models import ToolInput, ToolOutput
from tool_registry.resources import ResourceBody, ResourceEntry, ResourceSpec
from tool_registry.spec import ToolSpec
from tool_registry.store.allowlist import DestructiveMode
from tool_registry.views import ViewContext

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
    destructive_mode: DestructiveMode = Field(
        description=(
            "For destructive tools not on the allowlist: deny (denied), confirm (the user is "
            "asked in their client first; agents are denied) or allow (they run)."
        )
    )


async def get_policy(inp: NoInput, ctx: ToolContext) -> SpacePolicy:
    rows = await ctx.store.destructive_allowlist()
    return SpacePolicy(
        space_id=ctx.space.id,
        space_type=ctx.space.type,
        destructive_allowlist=[
            AllowedTool(tool=r["tool"], added_by=r["added_by"], added_at=r["added_at"])
            for r in rows
        ],
        destructive_mode=await ctx.store.destructive_mode(),
    )


GET_POLICY = ToolSpec(
    name="spaces.getPolicy",
    title="Show space policy",
    description=(
        "Show which destructive tools (deletes) the owner of the active space has allowed, and "
        "what happens to the others (destructiveMode: deny, confirm: the user is asked first, "
        "or allow); prefer archiving or updating. Only a human owner or admin can change this, "
        "outside this conversation."
    ),
    module=MODULE,
    scope="user-space",
    policy_hint="read",
    input=NoInput,
    output=SpacePolicy,
    handler=get_policy,
)

TOOLS = (LIST, GET_POLICY)


# -- resources: mana://space -------------------------------------------------------------------

SPACE_URI = "mana://space"
# The records each module keeps, counted by the space overview (modules without data are absent).
COUNTED: dict[str, str] = {
    "habits": "habits",
    "todo": "todos",
    "notes": "notes",
    "journal": "journal_entries",
    "mood": "mood_entries",
    "calendar": "calendar_events",
    "contacts": "contacts",
    "me": "reference_images",
}


async def read_space(params: Mapping[str, str], ctx: ViewContext) -> list[ResourceBody]:
    """The active space as JSON: identity, the caller's role, the modules it may use, how many
    live records each of them holds, its destructive allowlist and destructive mode."""
    store, space = ctx.tool.store, ctx.tool.space
    counts = {m: await store.count(COUNTED[m]) for m in ctx.modules if m in COUNTED}
    allowlist = [r["tool"] for r in await store.destructive_allowlist()]
    overview = {
        "id": space.id,
        "slug": space.slug,
        "name": space.name,
        "type": space.type,
        "role": ctx.tool.role,
        "modules": list(ctx.modules),
        "counts": counts,
        "destructiveAllowlist": allowlist,
        "destructiveMode": await store.destructive_mode(),
    }
    return [ResourceBody(uri=SPACE_URI, mime_type="application/json", text=json.dumps(overview))]


async def list_space_resource(ctx: ViewContext) -> list[ResourceEntry]:
    return [
        ResourceEntry(
            uri=SPACE_URI,
            name="space",
            title=f"Space overview: {ctx.tool.space.name}",
            mime_type="application/json",
        )
    ]


def changed_space(tool: str, result: Mapping[str, Any]) -> list[str]:
    """Any successful write in the space may change its record counts: the overview changed."""
    return [SPACE_URI]


SPACE_RESOURCE = ResourceSpec(
    name="spaces.overview",
    title="Space overview",
    description=(
        "The active space: its name and type, your role, the modules it uses, how many records "
        "each holds, which destructive tools its owners allowed and what happens to the others."
    ),
    module=MODULE,
    uri_template=SPACE_URI,
    mime_type="application/json",
    read=read_space,
    enumerate=list_space_resource,
    changed_by=changed_space,
)

RESOURCES = (SPACE_RESOURCE,)
