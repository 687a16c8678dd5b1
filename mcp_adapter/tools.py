"""`tools/list` and `tools/call`: every call is one `Pipeline.invoke` as the request's caller,
with an `McpChannel` to the calling client (progress, log messages, questions); handshake-era
connections hear `notifications/tools/list_changed` when their tool set changes. In the
2026-07-28 era a call whose tool asks a question ends with an `InputRequiredResult` and is run
again on the client's retry (`mcp_adapter.input_rounds`)."""

from __future__ import annotations

from typing import Any

import mcp_types as types
import structlog
from mcp.server import ServerRequestContext
from mcp.shared.exceptions import MCPError

from mcp_adapter.callers import Caller, CallerError, CallerSource, ToolSetWatch
from mcp_adapter.catalog import ToolCatalog
from mcp_adapter.channel import McpChannel
from mcp_adapter.input_rounds import CallBinding, InputRounds
from mcp_adapter.results import (
    META_IDEMPOTENCY_KEY,
    error_text,
    idempotency_key_of,
    invalid_meta,
    missing_capability_error,
    outcome_result,
    plain_error,
    protocol_error,
    sentence,
)
from tool_registry.client_channel import InputRequired
from tool_registry.context import (
    CallContext,
    InvalidIdempotencyKey,
)
from tool_registry.ids import new_request_id
from tool_registry.pipeline import Pipeline, input_hash

log = structlog.get_logger("mana.mcp")


class ToolHandlers:
    """The tool handlers of one adapter: list per caller, call through the pipeline with a
    channel to the calling client. `rounds` seals and opens the state of 2026-07-28
    input-required rounds (default: one over the pipeline's database, whose shared secret makes
    a state sealed here valid on every replica)."""

    def __init__(
        self,
        pipeline: Pipeline,
        callers: CallerSource,
        catalog: ToolCatalog,
        rounds: InputRounds | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.callers = callers
        self.catalog = catalog
        self.rounds = rounds if rounds is not None else InputRounds(pipeline.db)

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
    ) -> types.CallToolResult | types.InputRequiredResult:
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
        binding = self._binding(caller, params)
        channel = McpChannel(ctx, log_level=caller.log_level)
        if not channel.handshake_era:
            try:
                channel.rounds = await self.rounds.open(
                    binding, params.request_state, params.input_responses
                )
            except MCPError:
                raise  # a requestState that fails verification: JSON-RPC error -32602
            except Exception:
                log.exception("opening the request state failed", request_id=request_id)
                return plain_error(
                    f"{name} could not read its request state; quote request id {request_id} "
                    "when reporting it",
                    "error",
                    request_id,
                )
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
                    channel=channel,
                ),
                resolved=caller.access,  # the HTTP guard resolved this request's space already
            )
        except InputRequired as pending:
            if channel.handshake_era:
                # The channel asks directly in this era; nothing else may end a round.
                log.error("input required on a handshake-era call", request_id=request_id)
                return plain_error(
                    f"{name} asked for input in a way this connection cannot carry; quote "
                    f"request id {request_id} when reporting it",
                    "handler-error",
                    request_id,
                )
            try:
                state = await self.rounds.seal(binding, channel.rounds)
            except Exception:
                log.exception("sealing the request state failed", request_id=request_id)
                return plain_error(
                    f"{name} could not ask for input; quote request id {request_id} when "
                    "reporting it",
                    "error",
                    request_id,
                )
            return types.InputRequiredResult(input_requests=pending.requests, request_state=state)
        except Exception:
            log.exception("tools/call failed", request_id=request_id, tool=name)
            return plain_error(
                f"{name} failed unexpectedly; quote request id {request_id} when reporting it",
                "handler-error",
                request_id,
            )
        if outcome.required_capabilities is not None and not channel.handshake_era:
            # 2026-07-28: a capability the client did not declare is a protocol error (the
            # handshake era keeps the clear tool error).
            raise missing_capability_error(error_text(outcome), outcome.required_capabilities)
        return outcome_result(outcome)

    @staticmethod
    def _binding(caller: Caller, params: types.CallToolRequestParams) -> CallBinding:
        """What a 2026-07-28 round's state is bound to. The space is the resolved id over HTTP
        and the connection's fixed reference over stdio: the same on every retry of a call."""
        return CallBinding(
            user_id=caller.user_id,
            space=caller.space or "",
            tool=params.name,
            args_hash=input_hash(params.arguments or {}),
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
