"""`McpChannel`: the client channel (`tool_registry.client_channel`) of one MCP `tools/call`,
built from the request context and what the client declared.

- Progress: `notifications/progress` with the request's progress token, only when the client
  sent one, on the request's own stream (over HTTP the POST's response stream), in both eras.
- Log messages: `notifications/message` on the request's stream. Handshake era (2025-11-25):
  at or above the level the client set with `logging/setLevel` (`Caller.log_level`), and
  `DEFAULT_LOG_LEVEL` and above before it set one (the spec leaves that choice to the server).
  2026-07-28: only when the request opted in with `_meta` `io.modelcontextprotocol/logLevel`,
  at or above that level.
- Questions (elicitation, form mode; sampling, text): the handshake era sends a real
  `elicitation/create` / `sampling/createMessage` request related to the call (the client
  must have declared the capability and the connection must carry server requests); the
  2026-07-28 era ends the round with `InputRequired` and finds the answer on the retry
  (`mcp_adapter.input_rounds`). Capabilities come from the `initialize` params the session
  holds (also on a replica that adopted the session) or the request's `_meta` envelope.
- Never while a write transaction is held: a question there raises
  `QuestionInsideTransaction` before anything is sent.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import anyio
import jsonschema
import mcp_types as types
import structlog
from mcp.server import ServerRequestContext
from mcp.server.connection import allowed_log_levels
from mcp.shared.exceptions import MCPError, NoBackChannelError
from mcp.shared.message import ServerMessageMetadata
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS
from pydantic import ValidationError

from mcp_adapter.input_rounds import QuestionKind, RoundAnswers, parse_answer
from tool_registry.client_channel import (
    LOG_LEVELS,
    ClientCannotAsk,
    ElicitAnswer,
    InputRequired,
    LogLevel,
    QuestionInsideTransaction,
    SampledText,
    SamplingMessage,
)
from tool_registry.store import holds_write_transaction

log = structlog.get_logger("mana.mcp")

# The lowest level sent on a handshake-era connection whose client never set one.
DEFAULT_LOG_LEVEL: LogLevel = "info"
# How long a question to the client (a person answering a form) may take before the call
# gives up on it as unanswerable.
ANSWER_TIMEOUT_SECONDS = 600.0


def _rank(level: LogLevel) -> int:
    return LOG_LEVELS.index(level)


@asynccontextmanager
async def _advisory(method: str) -> AsyncIterator[None]:
    """Notifications are advisory: when the client's stream is already gone (it disconnected
    mid-call) the notification is dropped, like the SDK drops standalone ones, and the call
    goes on to its result."""
    try:
        yield
    except (anyio.BrokenResourceError, anyio.ClosedResourceError):
        log.debug("notification dropped: the client's stream is closed", method=method)


class McpChannel:
    """The calling MCP client, for one `tools/call`. `rounds` holds the answers of earlier
    input-required rounds (2026-07-28; empty otherwise)."""

    def __init__(
        self,
        ctx: ServerRequestContext[Any, Any],
        *,
        log_level: LogLevel | None = None,
        rounds: RoundAnswers | None = None,
    ) -> None:
        self._ctx = ctx
        self._log_level = log_level
        self.rounds = rounds if rounds is not None else RoundAnswers()
        self.handshake_era = ctx.protocol_version in HANDSHAKE_PROTOCOL_VERSIONS
        self._capabilities = ctx.session.client_capabilities

    # -- what the client can do ------------------------------------------------------------

    @property
    def can_elicit(self) -> bool:
        """Form-mode elicitation declared (an empty `elicitation` object means form mode)."""
        caps = self._capabilities.elicitation if self._capabilities is not None else None
        return caps is not None and (caps.form is not None or caps.url is None)

    @property
    def can_sample(self) -> bool:
        return self._capabilities is not None and self._capabilities.sampling is not None

    # -- notifications -----------------------------------------------------------------------

    async def progress(
        self, progress: float, total: float | None = None, message: str | None = None
    ) -> None:
        # The SDK sends it with the request's progress token, on the request's stream, and
        # does nothing when the request carried no token.
        async with _advisory("notifications/progress"):
            await self._ctx.session.report_progress(progress, total, message)

    async def log(self, level: LogLevel, data: Any, logger: str | None = None) -> None:
        if level not in allowed_log_levels(self._ctx.protocol_version, self._ctx.meta):
            return  # 2026-07-28: this request did not opt in at that level
        if self.handshake_era and _rank(level) < _rank(self._log_level or DEFAULT_LOG_LEVEL):
            return
        async with _advisory("notifications/message"):
            await self._ctx.session.send_notification(
                types.LoggingMessageNotification(
                    params=types.LoggingMessageNotificationParams(
                        level=level, data=data, logger=logger
                    )
                ),
                related_request_id=self._ctx.request_id,
            )

    # -- questions ---------------------------------------------------------------------------

    async def elicit(self, key: str, message: str, schema: Mapping[str, Any]) -> ElicitAnswer:
        self._refuse_inside_transaction("ask the user")
        if not self.can_elicit:
            raise ClientCannotAsk(
                "this client did not declare the elicitation capability (form mode), so it "
                "cannot show a question to the user"
            )
        request = types.ElicitRequest(
            params=types.ElicitRequestFormParams(message=message, requested_schema=dict(schema))
        )
        result = await self._ask(key, "elicit", request, types.ElicitResult)
        assert isinstance(result, types.ElicitResult)
        return _checked_answer(key, result, schema)

    async def sample(
        self,
        key: str,
        messages: Sequence[SamplingMessage],
        *,
        max_tokens: int,
        system: str | None = None,
    ) -> SampledText:
        self._refuse_inside_transaction("ask the client's model")
        if not self.can_sample:
            raise ClientCannotAsk(
                "this client did not declare the sampling capability, so its model cannot be asked"
            )
        request = types.CreateMessageRequest(
            params=types.CreateMessageRequestParams(
                messages=[
                    types.SamplingMessage(role=m.role, content=types.TextContent(text=m.text))
                    for m in messages
                ],
                max_tokens=max_tokens,
                system_prompt=system,
            )
        )
        result = await self._ask(key, "sample", request, types.CreateMessageResult)
        assert isinstance(result, types.CreateMessageResult)
        if not isinstance(result.content, types.TextContent):
            raise ClientCannotAsk(
                f"the client's model answered with {result.content.type} content; only text "
                "answers are used"
            )
        return SampledText(
            text=result.content.text, model=result.model, stop_reason=result.stop_reason
        )

    async def _ask(
        self,
        key: str,
        kind: QuestionKind,
        request: types.ElicitRequest | types.CreateMessageRequest,
        result_type: type[types.ElicitResult] | type[types.CreateMessageResult],
    ) -> types.ElicitResult | types.CreateMessageResult:
        """The client's answer to `request`: asked now (handshake era) or found among this
        round's answers, else the round ends with the question (2026-07-28)."""
        if not self.handshake_era:
            raw = self.rounds.answers.get(key)
            answer = parse_answer(kind, raw) if raw is not None else None
            if isinstance(answer, result_type):
                return answer
            self.rounds.asked[key] = kind
            raise InputRequired({key: request})
        if not self._ctx.session.can_send_request:
            raise ClientCannotAsk(
                "this connection cannot carry a request from the server to the client"
            )
        try:
            return await self._ctx.session.send_request(
                request,
                result_type,
                request_read_timeout_seconds=ANSWER_TIMEOUT_SECONDS,
                metadata=ServerMessageMetadata(related_request_id=self._ctx.request_id),
            )
        except NoBackChannelError:
            raise ClientCannotAsk(
                "this connection cannot carry a request from the server to the client"
            ) from None
        except (MCPError, ValidationError) as exc:
            # The client declared the capability but could not answer: not the user's decision.
            log.warning("the client failed to answer a question", kind=kind, error=str(exc)[:200])
            raise ClientCannotAsk(f"the client could not answer the {kind} request") from None

    def _refuse_inside_transaction(self, what: str) -> None:
        if holds_write_transaction():
            raise QuestionInsideTransaction(
                f"a tool may not {what} while its write transaction is open; ask before the "
                "write starts"
            )


def _checked_answer(
    key: str, result: types.ElicitResult, schema: Mapping[str, Any]
) -> ElicitAnswer:
    """The answer; an accepted one whose content does not match the form's schema counts as
    declined (logged without the content, which is the user's data)."""
    if result.action != "accept":
        return ElicitAnswer(action=result.action)
    content = dict(result.content or {})
    try:
        jsonschema.validate(content, dict(schema))
    except jsonschema.ValidationError as exc:
        log.warning(
            "elicitation answer does not match its form; treated as declined",
            key=key,
            # where and which rule, never the value: the content is the user's data
            field="/".join(str(p) for p in exc.absolute_path) or "(form)",
            rule=str(exc.validator),
        )
        return ElicitAnswer(action="decline")
    except jsonschema.SchemaError:
        log.error("elicitation form schema is not valid JSON Schema; answer declined", key=key)
        return ElicitAnswer(action="decline")
    return ElicitAnswer(action="accept", content=content)
