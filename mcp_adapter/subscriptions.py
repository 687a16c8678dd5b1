"""`resources/subscribe` and `resources/unsubscribe` (handshake era; 2026-07-28 has neither, and
the SDK answers them there with "Method not found"), and the pipeline observer that turns a
successful write into `notifications/resources/updated` for the sessions subscribed to the
resources it changed.

Subscribing reads the resource once through `ViewHandlers.read_resource`, so exactly the
caller's read rules apply (unknown URI or record: the same resource-not-found error as a read;
a module the space type does not allow: refused) and the check is audited like a read. A
subscription belongs to the session and the space of the request that made it: a change in
another space never reaches it.

Which resources a write changed is declared on each `ResourceSpec` (`changed_by`) and evaluated
by `ResourceChanges.observe` after every successful, non-replayed call of a non-read tool.
"""

from __future__ import annotations

import asyncio
from typing import Any

import mcp_types as types
import structlog
from mcp.server import ServerRequestContext

from mcp_adapter.callers import Caller, CallerError, CallerSource, is_handshake_era
from mcp_adapter.results import protocol_error
from mcp_adapter.session_state import MAX_URI_LENGTH, SessionState, SessionStateError
from mcp_adapter.views import ViewHandlers
from tool_registry.pipeline import Outcome
from tool_registry.registry import AnySpec, Registry

log = structlog.get_logger("mana.mcp")


class SubscriptionHandlers:
    """The `resources/subscribe` and `resources/unsubscribe` handlers of one adapter."""

    def __init__(self, callers: CallerSource, views: ViewHandlers, state: SessionState) -> None:
        self.callers = callers
        self.views = views
        self.state = state

    async def _caller(self, ctx: ServerRequestContext[Any, Any], uri: str) -> tuple[Caller, str]:
        if not is_handshake_era(ctx):  # the SDK refuses these first; never served regardless
            raise protocol_error(f"{ctx.method} is not part of this protocol version")
        if not uri or len(uri) > MAX_URI_LENGTH:
            raise protocol_error(
                f"a resource URI must be 1-{MAX_URI_LENGTH} characters long", types.INVALID_PARAMS
            )
        try:
            caller = await self.callers.resolve(ctx)
        except CallerError as exc:
            raise protocol_error(exc.message) from None
        if caller.access is None:
            raise protocol_error("the space of this request could not be resolved")
        return caller, caller.access.space.id

    async def subscribe(
        self, ctx: ServerRequestContext[Any, Any], params: types.SubscribeRequestParams
    ) -> types.EmptyResult:
        uri = str(params.uri)
        caller, space_id = await self._caller(ctx, uri)
        # the caller can read it here and now, or the read's own error answers
        await self.views.read_resource(ctx, types.ReadResourceRequestParams(uri=uri))
        try:
            await self.state.subscribe(caller, space_id, uri, ctx.session)
        except SessionStateError as exc:
            raise protocol_error(exc.message, exc.code) from None
        return types.EmptyResult()

    async def unsubscribe(
        self, ctx: ServerRequestContext[Any, Any], params: types.UnsubscribeRequestParams
    ) -> types.EmptyResult:
        uri = str(params.uri)
        caller, space_id = await self._caller(ctx, uri)
        try:
            await self.state.unsubscribe(caller, space_id, uri)
        except SessionStateError as exc:
            raise protocol_error(exc.message, exc.code) from None
        return types.EmptyResult()


class ResourceChanges:
    """Pipeline observer (register `observe` in `Pipeline.observers`): after a successful write
    it asks every `ResourceSpec.changed_by` which resources of the space changed and hands them
    to `state` for delivery, in the background (the call's answer does not wait for it)."""

    def __init__(self, registry: Registry, state: SessionState) -> None:
        self.registry = registry
        self.state = state
        self._tasks: set[asyncio.Task[None]] = set()

    def changed(self, outcome: Outcome, spec: AnySpec | None) -> list[str]:
        """The URIs `outcome` changed in its space (none for reads, failures and replays)."""
        if (
            spec is None
            or spec.policy_hint == "read"
            or not outcome.ok
            or outcome.replayed
            or outcome.result is None
            or outcome.space_id is None
        ):
            return []
        uris: list[str] = []
        for resource in self.registry.resources():
            for uri in resource.changed(outcome.tool, outcome.result):
                if uri not in uris:
                    uris.append(uri)
        return uris

    def observe(self, outcome: Outcome, spec: AnySpec | None) -> None:
        uris = self.changed(outcome, spec)
        if not uris or outcome.space_id is None:
            return
        task = asyncio.get_running_loop().create_task(self._deliver(outcome.space_id, uris))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver(self, space_id: str, uris: list[str]) -> None:
        try:
            await self.state.resources_changed(space_id, uris)
        except Exception:  # advisory: a lost update must not disturb anything else
            log.exception("delivering resource updates failed", count=len(uris))

    async def settled(self) -> None:
        """Wait for the deliveries started so far (tests, shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
