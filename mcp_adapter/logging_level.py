"""`logging/setLevel` (handshake era only: 2026-07-28 has no such method, and the SDK answers
it there with "Method not found" before any handler runs): the session remembers the lowest
level of `notifications/message` the client wants, and every later request's `Caller.log_level`
carries it, so the client channel drops messages below it."""

from __future__ import annotations

from typing import Any

import mcp_types as types
import structlog
from mcp.server import ServerRequestContext
from mcp.server.context import CallNext, HandlerResult

from mcp_adapter.callers import CallerError, CallerSource, is_handshake_era
from mcp_adapter.results import protocol_error
from mcp_adapter.session_state import SessionState, SessionStateError
from tool_registry.client_channel import LOG_LEVELS, LogLevel

log = structlog.get_logger("mana.mcp")


def parse_log_level(value: object) -> LogLevel | None:
    """`value` as a log level, or None when it names none (e.g. a stored NULL)."""
    return next((level for level in LOG_LEVELS if level == value), None)


def invalid_level_message(value: object) -> str:
    return f"unknown log level {value!r}; use one of: {', '.join(LOG_LEVELS)}"


class LoggingHandlers:
    """The `logging/setLevel` handler of one adapter."""

    def __init__(self, callers: CallerSource, state: SessionState) -> None:
        self.callers = callers
        self.state = state

    async def check_level(
        self, ctx: ServerRequestContext[Any, Any], call_next: CallNext
    ) -> HandlerResult:
        """Server middleware: a `logging/setLevel` naming no level is refused here, with the
        valid levels, before the SDK's own validation answers a bare "Invalid request
        parameters"."""
        if ctx.method == "logging/setLevel" and is_handshake_era(ctx):
            value = (ctx.params or {}).get("level")
            if parse_log_level(value) is None:
                raise protocol_error(invalid_level_message(value), types.INVALID_PARAMS)
        return await call_next(ctx)

    async def set_level(
        self, ctx: ServerRequestContext[Any, Any], params: types.SetLevelRequestParams
    ) -> types.EmptyResult:
        if not is_handshake_era(ctx):  # the SDK refuses it first; never served regardless
            raise protocol_error("logging/setLevel is not part of this protocol version")
        level = parse_log_level(params.level)
        if level is None:
            raise protocol_error(invalid_level_message(params.level), types.INVALID_PARAMS)
        try:
            caller = await self.callers.resolve(ctx, need_access=False)
        except CallerError as exc:
            raise protocol_error(exc.message) from None
        try:
            await self.state.set_log_level(caller, level)
        except SessionStateError as exc:
            raise protocol_error(exc.message, exc.code) from None
        log.debug("client log level set", level=level, session=(caller.session_id or "")[:8])
        return types.EmptyResult()
