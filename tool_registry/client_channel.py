"""What a call can ask of the client that made it, beyond its result: report progress, send
log messages, ask the user a question (elicitation), ask the client's model for a completion
(sampling) and ask for the client's roots; and the content parts (images, audio, embedded
resources) a tool attaches to its result.

The MCP adapter implements `ClientChannel` per request from what the client declared and the
protocol era; every other consumer (CLI, agents, missions, tests) gets `NO_CHANNEL`, which
reports into the void and can ask nothing. A question has a `key`, stable for the call: in the
2026-07-28 era a server cannot send a request mid-call, so the adapter ends the call with an
input-required result carrying the question, and the client's retry of the same call brings the
answer under that key (`InputRequired` is what the adapter raises to end the round; tools and
the pipeline let it pass through untouched). Independent questions asked together (`ask_all`)
travel in one round.

A question the client cannot answer raises `ClientCannotAsk`; when the reason is a capability
the client did not declare, `required` names it (as a `ClientCapabilities` object). A handler
may catch it and do without; one that lets it escape needed the capability, and the pipeline
ends the call with the `client-cannot-ask` reason (MCP 2026-07-28: error -32021).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, TypeVar

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
    agents). The text says why, for a reminder. `required`: the client capabilities whose
    declaration would let it answer (e.g. `{"sampling": {}}`), when that is the reason."""

    def __init__(self, message: str, *, required: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.required = dict(required) if required is not None else None


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


@dataclass(frozen=True)
class ElicitQuestion:
    """A form for the user (see `ClientChannel.elicit`). `asked_first`: the answer counts only
    when the server really asked this question of this call before (in the 2026-07-28 era, the
    signed state of the previous round names it); an answer a client sends unasked is ignored
    and the question is asked. For consent the person must see, such as confirming a delete."""

    key: str
    message: str
    schema: Mapping[str, Any]
    asked_first: bool = False


@dataclass(frozen=True)
class SampleQuestion:
    """A text completion by the client's model (see `ClientChannel.sample`)."""

    key: str
    messages: Sequence[SamplingMessage]
    max_tokens: int
    system: str | None = None


@dataclass(frozen=True)
class RootsQuestion:
    """The client's roots (see `ClientChannel.roots`)."""

    key: str = "roots"


Question = ElicitQuestion | SampleQuestion | RootsQuestion
Answer = ElicitAnswer | SampledText | tuple[str, ...]


@dataclass(frozen=True)
class Answers:
    """The answers to questions asked together, by key, read with the accessor of each
    question's kind (a wrong kind or key is a bug of the handler: `KeyError`/`TypeError`)."""

    by_key: Mapping[str, Answer]

    def elicited(self, key: str) -> ElicitAnswer:
        return _of_kind(self.by_key[key], ElicitAnswer, key)

    def sampled(self, key: str) -> SampledText:
        return _of_kind(self.by_key[key], SampledText, key)

    def roots(self, key: str) -> list[str]:
        return list(_of_kind(self.by_key[key], tuple, key))


_T = TypeVar("_T")


def _of_kind(answer: Answer, kind: type[_T], key: str) -> _T:
    if not isinstance(answer, kind):
        raise TypeError(f"the answer under {key!r} is a {type(answer).__name__}")
    return answer


def check_questions(questions: Sequence[Question]) -> None:
    """Questions asked together need distinct keys (each answer comes back under its key)."""
    keys = [q.key for q in questions]
    if not keys or len(set(keys)) != len(keys):
        raise ValueError(f"questions asked together need distinct keys, got {keys}")


async def ask_consent(
    channel: ClientChannel, key: str, message: str, schema: Mapping[str, Any]
) -> ElicitAnswer:
    """Ask the person for consent (a form marked `asked_first`): an answer counts only as the
    reply to this question really asked, never one a client sent unasked."""
    answers = await channel.ask_all([ElicitQuestion(key, message, schema, asked_first=True)])
    return answers.elicited(key)


class ClientChannel(Protocol):
    """The calling client, for the duration of one call."""

    @property
    def can_elicit(self) -> bool:
        """True when `elicit` can reach the user (form mode)."""
        ...

    @property
    def can_sample(self) -> bool: ...

    @property
    def can_list_roots(self) -> bool: ...

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

    async def roots(self, key: str = "roots") -> list[str]:
        """The URIs of the client's roots (the directories or files it offers). Raises
        `ClientCannotAsk`; may raise `InputRequired`."""
        ...

    async def ask_all(self, questions: Sequence[Question]) -> Answers:
        """Ask independent questions at once (distinct keys): on 2026-07-28 every unanswered
        one travels in one input-required round, elsewhere they are asked in order. Asked only
        when the client can answer every one (else `ClientCannotAsk`, before anything is
        asked); the same checks as the single-question methods."""
        ...


class NoChannel:
    """No client to talk to (CLI, agents, missions, tests): progress and logs go nowhere and
    every question raises `ClientCannotAsk`."""

    can_elicit = False
    can_sample = False
    can_list_roots = False

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

    async def roots(self, key: str = "roots") -> list[str]:
        raise ClientCannotAsk("this call has no client with roots")

    async def ask_all(self, questions: Sequence[Question]) -> Answers:
        check_questions(questions)
        raise ClientCannotAsk("this call has no client that can be asked")


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
