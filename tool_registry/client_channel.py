"""What a call can ask of the client that made it, beyond its result: report progress, send
log messages, ask the user a question (elicitation) and ask the client's model for a completion
(sampling); and the content parts (images, audio, embedded resources) a tool attaches to its
result.

The MCP adapter implements `ClientChannel` per request from what the client declared and the
protocol era; every other consumer (CLI, agents, missions, tests) gets `NO_CHANNEL`, which
reports into the void and can ask nothing. A question has a `key`, stable for the call: in the
2026-07-28 era a server cannot send a request mid-call, so the adapter ends the call with an
input-required result carrying the question, and the client's retry of the same call brings the
answer under that key (`InputRequired` is what the adapter raises to end the round; tools and
the pipeline let it pass through untouched).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

LogLevel = Literal["debug", "info", "notice", "warning", "error", "critical", "alert", "emergency"]
LOG_LEVELS: tuple[LogLevel, ...] = (
    "debug",
    "info",
    "notice",
    "warning",
    "error",
    "critical",
    "alert",
    "emergency",
)
ElicitAction = Literal["accept", "decline", "cancel"]


class ClientCannotAsk(Exception):
    """The client of this call cannot answer this kind of question (it did not declare the
    capability, the transport cannot carry a server request, or there is no client: CLI and
    agents). The text says why, for a reminder."""


class QuestionInsideTransaction(RuntimeError):
    """A handler asked its client a question (elicitation or sampling) while its call holds a
    write transaction. Refused: the transaction's locks would be held for as long as the person
    or model takes. Ask before the write starts (the pipeline's confirmation does), or declare
    the tool read-only and write through services that open their own short transactions."""


class InputRequired(BaseException):
    """Ends the current round of a call whose questions must travel in an input-required
    result (2026-07-28). A `BaseException` so that handlers and pipeline steps catching
    `Exception` to report a failure let it through to the adapter whose channel raised it."""

    def __init__(self, requests: Mapping[str, Any], state: str | None = None) -> None:
        super().__init__("input required")
        self.requests = dict(requests)
        self.state = state


@dataclass(frozen=True)
class ElicitAnswer:
    """The user's answer: `accept` with `content` (the form's values), `decline` or `cancel`."""

    action: ElicitAction
    content: Mapping[str, Any] | None = None

    @property
    def accepted(self) -> bool:
        return self.action == "accept"


@dataclass(frozen=True)
class SamplingMessage:
    role: Literal["user", "assistant"]
    text: str


@dataclass(frozen=True)
class SampledText:
    """The client model's answer to a sampling request."""

    text: str
    model: str | None = None
    stop_reason: str | None = None


class ClientChannel(Protocol):
    """The calling client, for the duration of one call."""

    @property
    def can_elicit(self) -> bool:
        """True when `elicit` can reach the user (form mode)."""
        ...

    @property
    def can_sample(self) -> bool: ...

    async def progress(
        self, progress: float, total: float | None = None, message: str | None = None
    ) -> None:
        """Report progress (a no-op unless the client asked for it with a progress token)."""
        ...

    async def log(self, level: LogLevel, data: Any, logger: str | None = None) -> None:
        """Send a log message (dropped below the level the client set, and where the era or
        transport has no channel for it)."""
        ...

    async def elicit(self, key: str, message: str, schema: Mapping[str, Any]) -> ElicitAnswer:
        """Ask the user `message` with a form of `schema` (a flat JSON Schema object).
        Raises `ClientCannotAsk` when the client cannot be asked; may raise `InputRequired`;
        raises `QuestionInsideTransaction` when called while a write transaction is held. An
        accepted answer whose content does not match `schema` comes back as `decline`."""
        ...

    async def sample(
        self,
        key: str,
        messages: Sequence[SamplingMessage],
        *,
        max_tokens: int,
        system: str | None = None,
    ) -> SampledText:
        """Ask the client's model (text only). Raises `ClientCannotAsk`; may raise
        `InputRequired`; raises `QuestionInsideTransaction` inside a write transaction."""
        ...


class NoChannel:
    """No client to talk to (CLI, agents, missions, tests): progress and logs go nowhere and
    every question raises `ClientCannotAsk`."""

    can_elicit = False
    can_sample = False

    async def progress(
        self, progress: float, total: float | None = None, message: str | None = None
    ) -> None:
        return None

    async def log(self, level: LogLevel, data: Any, logger: str | None = None) -> None:
        return None

    async def elicit(self, key: str, message: str, schema: Mapping[str, Any]) -> ElicitAnswer:
        raise ClientCannotAsk("this call has no client that can ask the user")

    async def sample(
        self,
        key: str,
        messages: Sequence[SamplingMessage],
        *,
        max_tokens: int,
        system: str | None = None,
    ) -> SampledText:
        raise ClientCannotAsk("this call has no client model to ask")


NO_CHANNEL: ClientChannel = NoChannel()


AttachmentKind = Literal["image", "audio", "resource"]


@dataclass(frozen=True)
class Attachment:
    """A content part a tool adds to its result besides the structured output: an image or
    audio clip (`data` bytes with `mime_type`) or an embedded resource (`uri` with `text` or
    `data`). The MCP adapter turns each into a content block after the JSON text block; other
    consumers may show a summary. Not part of the structured result, nor of a replayed one."""

    kind: AttachmentKind
    mime_type: str
    data: bytes | None = None
    text: str | None = None
    uri: str | None = None
    meta: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind in ("image", "audio") and self.data is None:
            raise ValueError(f"an {self.kind} attachment needs its bytes")
        one_body = (self.data is None) != (self.text is None)
        if self.kind == "resource" and (self.uri is None or not one_body):
            raise ValueError("a resource attachment needs a uri and exactly one of text or data")
