"""`tools/list` and `tools/call`: every call is one `Pipeline.invoke` as the request's caller;
handshake-era connections hear `notifications/tools/list_changed` when their tool set changes."""

from __future__ import annotations

from typing import Any

import mcp_types as types
import structlog
from mcp.server import ServerRequestContext

from mcp_adapter.callers import CallerError, CallerSource, ToolSetWatch
from mcp_adapter.catalog import ToolCatalog
from mcp_adapter.results import (
    META_IDEMPOTENCY_KEY,
    idempotency_key_of,
    invalid_meta,
    outcome_result,
    plain_error,
    protocol_error,
    sentence,
)
from tool_registry.context import (
    CallContext,
    InvalidIdempotencyKey,
)
from tool_registry.ids import new_request_id
from tool_registry.pipeline import Pipeline

log = structlog.get_logger("mana.mcp")


class ToolHandlers:
    """The tool handlers of one adapter: list per caller, call through the pipeline."""

    def __init__(self, pipeline: Pipeline, callers: CallerSource, catalog: ToolCatalog) -> None:
        self.pipeline = pipeline
        self.callers = callers
        self.catalog = catalog

    async def list_tools(
        self, ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        try:
            caller = await self.callers.resolve(ctx)
        except CallerError as exc:
            raise protocol_error(exc.message) from None
        except Exception:
            log.exception("tools/list: resolving the caller failed")
            raise protocol_error("internal error while resolving the caller") from None
        if caller.access is None:  # a caller source must resolve the space for listing
            raise protocol_error("the space of this request could not be resolved")
        space_type = caller.access.space.type
        if caller.watch is not None:
            try:
                await self._remember(caller.watch, space_type)
            except Exception:
                log.exception("tools/list: saving the session's tool view failed")
                raise protocol_error("the session could not be updated; retry") from None
        return types.ListToolsResult(
            tools=self.catalog.tools(space_type, caller.invoker, caller.scopes)
        )

    async def call_tool(
        self, ctx: ServerRequestContext[Any, Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        request_id = new_request_id()
        name = params.name
        try:
            caller = await self.callers.resolve(ctx, need_access=False)
        except CallerError as exc:
            return plain_error(sentence(exc.message), exc.reason, request_id)
        except Exception:
            log.exception("tools/call: resolving the caller failed", request_id=request_id)
            return plain_error(
                f"{name} failed unexpectedly (request id {request_id})", "error", request_id
            )
        try:
            key = idempotency_key_of(params.meta)
        except InvalidIdempotencyKey as exc:
            field_name = f"_meta.{META_IDEMPOTENCY_KEY}"
            return outcome_result(invalid_meta(name, request_id, field_name, str(exc)))
        try:
            if caller.watch is not None and caller.space_type is not None:
                await self._notify_if_changed(caller.watch, ctx, caller.space_type)
            outcome = await self.pipeline.invoke(
                name,
                params.arguments or {},
                CallContext(
                    user_id=caller.user_id,
                    space=caller.space,
                    invoker=caller.invoker,
                    request_id=request_id,
                    idempotency_key=key,
                    session_id=caller.session_id,
                    scopes=caller.scopes,
                ),
                resolved=caller.access,  # the HTTP guard resolved this request's space already
            )
            return outcome_result(outcome)
        except Exception:
            log.exception("tools/call failed", request_id=request_id, tool=name)
            return plain_error(
                f"{name} failed unexpectedly; quote request id {request_id} when reporting it",
                "handler-error",
                request_id,
            )

    # -- list_changed ------------------------------------------------------------------------

    async def _remember(self, watch: ToolSetWatch, space_type: str) -> None:
        names = self.catalog.names(space_type)
        changed = (names, space_type) != (watch.seen, watch.space_type)
        watch.seen = names
        watch.space_type = space_type
        if changed and watch.persist is not None:
            await watch.persist(names, space_type)

    async def _notify_if_changed(
        self, watch: ToolSetWatch, ctx: ServerRequestContext[Any, Any], space_type: str
    ) -> None:
        before = watch.seen
        await self._remember(watch, space_type)
        if before is not None and before != watch.seen:
            # Rides this request's own response stream, so the client sees it before the result.
            await ctx.session.send_notification(
                types.ToolListChangedNotification(), related_request_id=ctx.request_id
            )
