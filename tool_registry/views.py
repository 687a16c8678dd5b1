"""What resources, prompts and completions share: the context a view handler runs in, the
completer shape and the one error a view raises.

A view is a read-only look at the active space (a resource read, a rendered prompt, completion
values). It runs through `Pipeline.view`, which applies the checks a read tool gets (access
scope `mana:read`, membership, module allowed for the space type) and writes an audit row.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

from tool_registry.context import ToolContext
from tool_registry.errors import ManaError
from tool_registry.store.records import Record

ViewStatus = Literal["invalid-input", "denied", "error"]
# The most values one completion answers with (the MCP limit is 100 per response).
MAX_COMPLETIONS = 100


@dataclass(frozen=True)
class ViewContext:
    """A view handler's context: the read-only tool context bound to the caller and the active
    space, plus the modules that space may use (so a view that draws on several modules shows
    only the allowed ones, e.g. the space overview or the weekly review)."""

    tool: ToolContext
    modules: tuple[str, ...]

    def allows(self, module: str) -> bool:
        return module in self.modules


# Completion values for a parameter: (typed prefix, context) -> matching values, best first.
Completer = Callable[[str, ViewContext], Awaitable[list[str]]]


class ViewError(ManaError):
    """A view cannot answer: `status` says whether the request was bad (`invalid-input`, e.g.
    an unknown resource or a missing argument), refused (`denied`) or failed (`error`)."""

    def __init__(
        self,
        message: str,
        *,
        reason: str,
        status: ViewStatus,
        required_capabilities: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message, reason=reason)
        self.status: ViewStatus = status
        # `client-cannot-ask`: the client capabilities the view needed and the client lacked.
        self.required_capabilities = required_capabilities


async def candidates(ctx: ViewContext, collection: str, field: str, prefix: str) -> list[Record]:
    """Records of the active space whose `field` contains `prefix` (case-insensitively; those
    starting with it first), the most recently updated first without a prefix; at most
    `MAX_COMPLETIONS`, found by the database so a completion costs the same in a big space."""
    store = ctx.tool.store
    if not prefix:
        return await store.list(
            collection, order_by="updated_at", descending=True, limit=MAX_COMPLETIONS
        )
    return await store.search(collection, prefix, [field], limit=MAX_COMPLETIONS)


def unique(values: list[str]) -> list[str]:
    """`values` without repeats, in order."""
    return list(dict.fromkeys(values))
