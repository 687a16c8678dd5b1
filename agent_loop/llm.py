"""The model-facing vocabulary every `LLMClient` speaks, independent of any vendor.

The loop builds an `LLMRequest` per round (system prompt, the working history, the tool
definitions, limits) and gets back an `LLMResponse` (text, tool calls, stop reason, usage).
Histories are tuples of immutable `Message`s, so a request handed to a client is a snapshot: a
client may keep it (the scripted client records every request) without copying, and the loop can
never change what a client already saw.

Tool names inside these types are always the registry's `module.verb` names; mapping them to a
vendor's allowed characters is the client's business (see `agent_loop.names`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, TypeAlias

from tool_registry.errors import ManaError

Role = Literal["user", "assistant"]

REMINDER_OPEN = "<system-reminder>"
REMINDER_CLOSE = "</system-reminder>"


# -- conversation parts ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ToolCall:
    """One tool call the model asked for. `id` pairs it with its `ToolResultPart`."""

    id: str
    name: str
    arguments: Mapping[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "arguments": dict(self.arguments)}


@dataclass(frozen=True, slots=True)
class TextPart:
    text: str

    def to_json(self) -> dict[str, Any]:
        return {"type": "text", "text": self.text}


@dataclass(frozen=True, slots=True)
class ToolUsePart:
    call: ToolCall

    def to_json(self) -> dict[str, Any]:
        return {
            "type": "tool_use",
            "id": self.call.id,
            "name": self.call.name,
            "input": dict(self.call.arguments),
        }


@dataclass(frozen=True, slots=True)
class ToolResultPart:
    """The result of one call as the model sees it. `flagged` lists injection markers found in
    the result; it is transcript metadata (where a taint came from), never sent to the model."""

    tool_use_id: str
    content: str
    is_error: bool = False
    flagged: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": "tool_result",
            "tool_use_id": self.tool_use_id,
            "content": self.content,
            "is_error": self.is_error,
        }
        if self.flagged:
            body["flagged"] = list(self.flagged)
        return body


Part: TypeAlias = TextPart | ToolUsePart | ToolResultPart


@dataclass(frozen=True, slots=True)
class Message:
    """One turn. A user turn holds the prompt or the tool results of a round (results first, in
    the model's order); an assistant turn holds the model's text and tool calls."""

    role: Role
    content: tuple[Part, ...]

    @classmethod
    def user(cls, text: str) -> Message:
        return cls("user", (TextPart(text),))

    @property
    def text(self) -> str:
        return "".join(p.text for p in self.content if isinstance(p, TextPart))

    @property
    def tool_calls(self) -> tuple[ToolCall, ...]:
        return tuple(p.call for p in self.content if isinstance(p, ToolUsePart))

    @property
    def tool_results(self) -> tuple[ToolResultPart, ...]:
        return tuple(p for p in self.content if isinstance(p, ToolResultPart))

    def to_json(self) -> dict[str, Any]:
        return {"role": self.role, "content": [p.to_json() for p in self.content]}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Message:
        """Inverse of `to_json` (used to resume from a stored transcript)."""
        role = data["role"]
        if role not in ("user", "assistant"):
            raise ValueError(f"unknown message role {role!r}")
        parts: list[Part] = []
        for raw in data["content"]:
            kind = raw.get("type")
            if kind == "text":
                parts.append(TextPart(str(raw["text"])))
            elif kind == "tool_use":
                parts.append(ToolUsePart(ToolCall(raw["id"], raw["name"], dict(raw["input"]))))
            elif kind == "tool_result":
                parts.append(
                    ToolResultPart(
                        raw["tool_use_id"],
                        str(raw["content"]),
                        bool(raw.get("is_error", False)),
                        tuple(raw.get("flagged", ())),
                    )
                )
            else:
                raise ValueError(f"unknown content part type {kind!r}")
        return cls(role, tuple(parts))


def reminder_block(text: str) -> str:
    return f"{REMINDER_OPEN}\n{text}\n{REMINDER_CLOSE}"


def with_reminders(messages: Sequence[Message], reminders: Sequence[str]) -> tuple[Message, ...]:
    """The history to send for *this* request: reminders become `<system-reminder>` text blocks
    at the end of the last user turn (after any tool results, as the API requires). The input is
    not changed, so reminders never reach the stored history."""
    history = tuple(messages)
    if not reminders:
        return history
    blocks = tuple(TextPart(reminder_block(r)) for r in reminders)
    if history and history[-1].role == "user":
        last = history[-1]
        return (*history[:-1], Message("user", (*last.content, *blocks)))
    return (*history, Message("user", blocks))


# -- request / response ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ToolDef:
    """A tool as offered to the model: name (`module.verb`), description, input JSON Schema."""

    name: str
    description: str
    input_schema: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts. `input_tokens` excludes cached tokens, as the Messages API reports it."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.cache_read_tokens + other.cache_read_tokens,
            self.cache_write_tokens + other.cache_write_tokens,
        )

    @property
    def total_tokens(self) -> int:
        """Everything processed, cached or not: what a token budget is charged."""
        return (
            self.input_tokens
            + self.output_tokens
            + self.cache_read_tokens
            + self.cache_write_tokens
        )

    @property
    def context_tokens(self) -> int:
        """For one response: how much of the context window the conversation now fills."""
        return self.total_tokens

    def to_json(self) -> dict[str, int]:
        return {
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cache_read_tokens": self.cache_read_tokens,
            "cache_write_tokens": self.cache_write_tokens,
        }


@dataclass(frozen=True, slots=True)
class LLMRequest:
    """One call to the model. `messages` already carry this round's reminders (see
    `with_reminders`); `reminders` repeats them for inspection. `model=None` means the client's
    default. `purpose` tells a client whether this is a loop turn or a compaction summary."""

    system: str
    messages: tuple[Message, ...]
    tools: tuple[ToolDef, ...] = ()
    model: str | None = None
    max_tokens: int = 4096
    temperature: float | None = None
    reminders: tuple[str, ...] = ()
    purpose: Literal["turn", "compaction"] = "turn"


@dataclass(frozen=True, slots=True)
class LLMResponse:
    """`stop_reason` is the vendor's (e.g. `end_turn`, `tool_use`, `max_tokens`); `id` the
    vendor's message id, when there is one (logged as the round's request id)."""

    text: str | None
    tool_calls: tuple[ToolCall, ...] = ()
    stop_reason: str = "end_turn"
    usage: Usage = field(default_factory=Usage)
    model: str | None = None
    id: str | None = None

    def message(self) -> Message:
        parts: list[Part] = []
        if self.text:
            parts.append(TextPart(self.text))
        parts.extend(ToolUsePart(c) for c in self.tool_calls)
        return Message("assistant", tuple(parts))


class LLMClient(Protocol):
    """What the loop needs from a model. Implementations: `AnthropicClient`, `ScriptedClient`.

    `complete` raises `LLMError` (after the client's own retries) for failures the loop should
    report as `llm-error`; anything else is a bug and propagates.
    """

    @property
    def model(self) -> str: ...

    async def complete(self, request: LLMRequest) -> LLMResponse: ...


# -- errors ---------------------------------------------------------------------------------------


class LLMError(ManaError):
    """The model could not answer. Messages are safe to show: they never contain credentials."""

    reason = "llm-error"


class LLMRequestRejected(LLMError):
    """The API refused the request itself (400/401/403/404): retrying cannot help."""

    reason = "llm-rejected"

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class LLMUnavailable(LLMError):
    """Retryable failures (429, 5xx, 529, connection) persisted past the retry budget."""

    reason = "llm-unavailable"


class ScriptExhausted(LLMError):
    """A `ScriptedClient` was asked for more turns than its script has."""

    reason = "script-exhausted"
