"""Which tools a kind of caller may use at all: a hook of the invocation pipeline, like the gate.
`policy.agent_policy.InvokerToolRule` implements it (models running missions or persona ticks
never get the missions and proposals modules); the default offers every tool. The pipeline hides
refused tools from `visible_tools(space_type, invoker)` and denies a direct call with
`not-offered`, whatever the consumer showed its model."""

from __future__ import annotations

from typing import Any, Protocol

from tool_registry.spec import ToolSpec


class ToolOffer(Protocol):
    def refusal(self, spec: ToolSpec[Any, Any], invoker: str) -> str | None:
        """None when callers of kind `invoker` may see and call `spec`; otherwise why not."""
        ...


class OfferEverything:
    """No restriction (tests and embeddings that wire no policy)."""

    def refusal(self, spec: ToolSpec[Any, Any], invoker: str) -> str | None:
        return None
