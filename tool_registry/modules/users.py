"""Account administration. Admin scope: registered so the catalog documents it, never exposed
over MCP or to agents, and refused by the gate (`admin-scope-not-invokable`). Operators use
`mana users set-tier`, which calls the account store directly."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from tool_registry.context import ToolContext
from tool_registry.errors import ToolError
from tool_registry.models import ToolInput, ToolOutput
from tool_registry.spec import ToolSpec

MODULE = "users"


class SetTierInput(ToolInput):
    email: str = Field(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$", max_length=254)
    tier: Literal["free", "plus", "pro"]


class TierSet(ToolOutput):
    user_id: str
    tier: str


async def set_tier(inp: SetTierInput, ctx: ToolContext) -> TierSet:
    raise ToolError(
        "users.setTier is an admin operation; run `mana users set-tier` instead",
        reason="admin-scope-not-invokable",
    )


SET_TIER = ToolSpec(
    name="users.setTier",
    title="Set a user's tier",
    description="Change a user's subscription tier (free, plus, pro). Operators only.",
    module=MODULE,
    scope="admin",
    policy_hint="write",
    idempotent=True,
    input=SetTierInput,
    output=TierSet,
    handler=set_tier,
)

TOOLS = (SET_TIER,)
