"""`McpChannel`: the client channel (`tool_registry.client_channel`) of one MCP `tools/call`,
built from the request context and what the client declared.

- Progress: `notifications/progress` with the request's progress token, only when the client
  sent one, on the request's own stream (over HTTP the POST's response stream), in both eras.
- Log messages: `notifications/message` on the request's stream. Handshake era (2025-11-25):
  at or above the level the client set with `logging/setLevel` (`Caller.log_level`), and
  `DEFAULT_LOG_LEVEL` and above before it set one (the spec leaves that choice to the server).
  2026-07-28: only when the request opted in with `_meta` `io.modelcontextprotocol/logLevel`,
  at or above that level.
- Questions (elicitation, form mode; sampling, text; roots): the handshake era sends a real
  `elicitation/create` / `sampling/createMessage` / `roots/list` request related to the call
  (the connection must carry server requests); the 2026-07-28 era ends the round with
  `InputRequired` carrying every unanswered question asked together and finds the answers on
  the retry (`mcp_adapter.input_rounds`). In both eras the client must have declared the
  capability a question needs, else `ClientCannotAsk` names it (`required`). Capabilities come from the `initialize` params the session
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
from pydantic import BaseModel, ValidationError

from mcp_adapter.input_rounds import QuestionKind, RoundAnswers, parse_answer
from tool_registry.client_channel import (
    LOG_LEVELS,
    Answer,
    Answers,
    ClientCannotAsk,
    ElicitAnswer,
    ElicitQuestion,
    InputRequired,
    LogLevel,
    Question,
    QuestionInsideTransaction,
    RootsQuestion,
    SampledText,
    SampleQuestion,
    SamplingMessage,
    check_questions,
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

    @property
    def can_list_roots(self) -> bool:
        return self._capabilities is not None and self._capabilities.roots is not None

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
        answers = await self.ask_all([ElicitQuestion(key, message, schema)])
        return answers.elicited(key)

    async def sample(
        self,
        key: str,
        messages: Sequence[SamplingMessage],
        *,
        max_tokens: int,
        system: str | None = None,
    ) -> SampledText:
        answers = await self.ask_all([SampleQuestion(key, messages, max_tokens, system)])
        return answers.sampled(key)

    async def roots(self, key: str = "roots") -> list[str]:
        answers = await self.ask_all([RootsQuestion(key)])
        return answers.roots(key)

    async def ask_all(self, questions: Sequence[Question]) -> Answers:
        """Every question answered: asked now one after another (handshake era), or found
        among this round's answers, else the round ends with every unanswered question at once
        (2026-07-28). Nothing is asked unless the client can answer them all."""
        check_questions(questions)
        self._refuse_inside_transaction(questions)
        for question in questions:
            self._require_capability(question)
        requests = {q.key: _request_of(q) for q in questions}
        if self.handshake_era:
            raw = {q.key: await self._send(q, requests[q.key]) for q in questions}
        else:
            raw = self._from_rounds(questions, requests)
        return Answers({q.key: _answer_of(q, raw[q.key]) for q in questions})

    def _from_rounds(
        self, questions: Sequence[Question], requests: Mapping[str, _Request]
    ) -> dict[str, BaseModel]:
        found: dict[str, BaseModel] = {}
        for question in questions:
            kind = _KINDS[type(question)]
            asked_first = isinstance(question, ElicitQuestion) and question.asked_first
            raw = self.rounds.answer(question.key, asked_first=asked_first)
            answer = parse_answer(kind, raw) if raw is not None else None
            if answer is not None:
                found[question.key] = answer
            else:
                self.rounds.answers.pop(question.key, None)  # not an answer: ask again
        pending = {q.key: requests[q.key] for q in questions if q.key not in found}
        if pending:
            for question in questions:
                if question.key in pending:
                    self.rounds.asked[question.key] = _KINDS[type(question)]
            raise InputRequired(pending)
        return found

    async def _send(self, question: Question, request: _Request) -> BaseModel:
        """One question sent to the client now, related to the call (handshake era)."""
        kind = _KINDS[type(question)]
        if not self._ctx.session.can_send_request:
            raise ClientCannotAsk(
                "this connection cannot carry a request from the server to the client"
            )
        try:
            return await self._ctx.session.send_request(
                request,
                _RESULT_TYPES[kind],
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

    def _require_capability(self, question: Question) -> None:
        """`ClientCannotAsk` naming the capability a question needs, unless the client declared
        it (the spec forbids asking what the client did not declare)."""
        if isinstance(question, ElicitQuestion) and not self.can_elicit:
            raise ClientCannotAsk(
                "this client did not declare the elicitation capability (form mode), so it "
                "cannot show a question to the user",
                required={"elicitation": {"form": {}}},
            )
        if isinstance(question, SampleQuestion) and not self.can_sample:
            raise ClientCannotAsk(
                "this client did not declare the sampling capability, so its model cannot be asked",
                required={"sampling": {}},
            )
        if isinstance(question, RootsQuestion) and not self.can_list_roots:
            raise ClientCannotAsk(
                "this client did not declare the roots capability, so it cannot list its roots",
                required={"roots": {}},
            )

    def _refuse_inside_transaction(self, questions: Sequence[Question]) -> None:
        if holds_write_transaction():
            what = (
                "ask the user"
                if any(isinstance(q, ElicitQuestion) for q in questions)
                else "ask its client"
            )
            raise QuestionInsideTransaction(
                f"a tool may not {what} while its write transaction is open; ask before the "
                "write starts"
            )


_Request = types.ElicitRequest | types.CreateMessageRequest | types.ListRootsRequest
_KINDS: dict[type[Question], QuestionKind] = {
    ElicitQuestion: "elicit",
    SampleQuestion: "sample",
    RootsQuestion: "roots",
}
_RESULT_TYPES: dict[QuestionKind, type[BaseModel]] = {
    "elicit": types.ElicitResult,
    "sample": types.CreateMessageResult,
    "roots": types.ListRootsResult,
}


def _request_of(question: Question) -> _Request:
    if isinstance(question, ElicitQuestion):
        return types.ElicitRequest(
            params=types.ElicitRequestFormParams(
                message=question.message, requested_schema=dict(question.schema)
            )
        )
    if isinstance(question, SampleQuestion):
        return types.CreateMessageRequest(
            params=types.CreateMessageRequestParams(
                messages=[
                    types.SamplingMessage(role=m.role, content=types.TextContent(text=m.text))
                    for m in question.messages
                ],
                max_tokens=question.max_tokens,
                system_prompt=question.system,
            )
        )
    return types.ListRootsRequest()


def _answer_of(question: Question, result: BaseModel) -> Answer:
    """The client's result as the contract's answer of the question's kind."""
    if isinstance(question, ElicitQuestion):
        assert isinstance(result, types.ElicitResult)
        return _checked_answer(question.key, result, question.schema)
    if isinstance(question, SampleQuestion):
        assert isinstance(result, types.CreateMessageResult)
        if not isinstance(result.content, types.TextContent):
            raise ClientCannotAsk(
                f"the client's model answered with {result.content.type} content; only text "
                "answers are used"
            )
        return SampledText(
            text=result.content.text, model=result.model, stop_reason=result.stop_reason
        )
    assert isinstance(result, types.ListRootsResult)
    return tuple(str(root.uri) for root in result.roots)


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
