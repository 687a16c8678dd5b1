"""`AnthropicClient`: the `LLMClient` on `anthropic.AsyncAnthropic` (Messages API).

- Tool names are mapped reversibly to Anthropic's `[a-zA-Z0-9_-]` (`agent_loop.names`).
- The tool results of a round are one user message, in the model's order, with `is_error` set
  for failed calls (the loop builds them that way; this adapter keeps them together and merges
  adjacent turns of the same role).
- Prompt caching: a `cache_control` breakpoint on the last tool definition and on the system
  prompt, so the stable prefix (tools, then system) is cached across rounds.
- Retries (tenacity) only on 429, 5xx (529 included) and connection errors, with exponential
  backoff and full jitter, honouring `retry-after-ms`/`retry-after`, bounded in attempts and in
  total time. The SDK's own retries are off (`max_retries=0`) so attempts are not multiplied.
  400/401/403/404 fail at once with `LLMRequestRejected`; nothing raised from here contains the
  API key.
"""

from __future__ import annotations

import email.utils
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast
from urllib.parse import urlparse

import anthropic
import httpx2
from anthropic.types import MessageParam, TextBlockParam, ToolParam
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception

from agent_loop.llm import (
    LLMError,
    LLMRequest,
    LLMRequestRejected,
    LLMResponse,
    LLMUnavailable,
    Message,
    TextPart,
    ToolCall,
    ToolResultPart,
    ToolUsePart,
    Usage,
)
from agent_loop.names import ToolNameMap
from tool_registry.errors import ValidationFailed

DEFAULT_MODEL = "claude-sonnet-4-5"
DEFAULT_CONTEXT_WINDOW = 200_000
DEFAULT_MAX_TOKENS = 4096
CACHE_CONTROL: dict[str, str] = {"type": "ephemeral"}

Sleep = Callable[[float], Awaitable[None]]


# -- configuration --------------------------------------------------------------------------------


@dataclass(frozen=True)
class AnthropicSettings:
    """Model configuration from the environment: `ANTHROPIC_API_KEY` (required),
    `MANA_MODEL`, `MANA_COMPACT_MODEL` (compaction summaries; default: the main model),
    `ANTHROPIC_BASE_URL`, `MANA_CONTEXT_WINDOW` (tokens), `MANA_MAX_TOKENS` (per response)."""

    api_key: str = field(repr=False)
    model: str = DEFAULT_MODEL
    compact_model: str | None = None
    base_url: str | None = None
    context_window: int = DEFAULT_CONTEXT_WINDOW
    max_tokens: int = DEFAULT_MAX_TOKENS

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> AnthropicSettings:
        """Validated settings; a missing or bad value raises `ValidationFailed` naming it (and
        never echoing the key)."""
        key = environ.get("ANTHROPIC_API_KEY", "").strip()
        if not key:
            raise ValidationFailed(
                "ANTHROPIC_API_KEY is not set: export it to use --llm anthropic, or run offline "
                "with --llm scripted:PATH"
            )
        model = environ.get("MANA_MODEL", "").strip() or DEFAULT_MODEL
        compact = environ.get("MANA_COMPACT_MODEL", "").strip() or None
        base_url = environ.get("ANTHROPIC_BASE_URL", "").strip() or None
        if base_url is not None:
            parsed = urlparse(base_url)
            if parsed.scheme not in ("http", "https") or not parsed.netloc:
                raise ValidationFailed(
                    f"ANTHROPIC_BASE_URL must be an http(s) URL, got {base_url!r}"
                )
        return cls(
            api_key=key,
            model=model,
            compact_model=compact,
            base_url=base_url,
            context_window=_positive(environ, "MANA_CONTEXT_WINDOW", DEFAULT_CONTEXT_WINDOW),
            max_tokens=_positive(environ, "MANA_MAX_TOKENS", DEFAULT_MAX_TOKENS),
        )


def _positive(environ: Mapping[str, str], name: str, default: int) -> int:
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValidationFailed(f"{name} must be a positive integer, got {raw!r}") from None
    if value <= 0:
        raise ValidationFailed(f"{name} must be a positive integer, got {value}")
    return value


@dataclass(frozen=True)
class RetryPolicy:
    """At most `max_attempts` requests within `max_total_seconds`. Without a `retry-after` the
    wait before attempt n+1 is uniform in [0, min(max_delay, base_delay * 2**(n-1))] (full
    jitter); with one, exactly what the server asked (capped at `max_retry_after`). A wait that
    would pass the total deadline ends the retries instead."""

    max_attempts: int = 5
    max_total_seconds: float = 90.0
    base_delay: float = 0.5
    max_delay: float = 8.0
    max_retry_after: float = 60.0


def is_retryable(exc: BaseException) -> bool:
    """429, any 5xx (529 overloaded included) and connection errors (timeouts included)."""
    if isinstance(exc, anthropic.APIConnectionError):
        return True
    if isinstance(exc, anthropic.APIStatusError):
        return exc.status_code == 429 or exc.status_code >= 500
    return False


def retry_after_seconds(exc: BaseException | None) -> float | None:
    """The server's requested wait, from `retry-after-ms` or `retry-after` (seconds or date)."""
    if not isinstance(exc, anthropic.APIStatusError):
        return None
    headers = exc.response.headers
    raw_ms = headers.get("retry-after-ms")
    if raw_ms is not None:
        try:
            return max(0.0, float(raw_ms) / 1000)
        except ValueError:
            pass
    raw = headers.get("retry-after")
    if raw is None:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    parsed = email.utils.parsedate_to_datetime(raw) if raw else None
    if parsed is None:
        return None
    return max(0.0, parsed.timestamp() - time.time())


# -- request / response mapping -------------------------------------------------------------------


def message_params(messages: Sequence[Message], names: ToolNameMap) -> list[dict[str, Any]]:
    """Our turns as Messages API params. Empty text blocks are dropped (the API rejects them) and
    adjacent turns of the same role are merged (e.g. the first prompt and a compaction summary)."""
    out: list[dict[str, Any]] = []
    for message in messages:
        blocks: list[dict[str, Any]] = []
        for part in message.content:
            if isinstance(part, TextPart):
                if part.text:
                    blocks.append({"type": "text", "text": part.text})
            elif isinstance(part, ToolUsePart):
                blocks.append(
                    {
                        "type": "tool_use",
                        "id": part.call.id,
                        "name": names.to_wire(part.call.name),
                        "input": dict(part.call.arguments),
                    }
                )
            elif isinstance(part, ToolResultPart):
                blocks.append(
                    {
                        "type": "tool_result",
                        "tool_use_id": part.tool_use_id,
                        "content": part.content,
                        "is_error": part.is_error,
                    }
                )
        if not blocks:
            continue
        if out and out[-1]["role"] == message.role:
            out[-1]["content"].extend(blocks)
        else:
            out.append({"role": message.role, "content": blocks})
    return out


def build_payload(request: LLMRequest, default_model: str) -> tuple[dict[str, Any], ToolNameMap]:
    """The `messages.create` keyword arguments for a request, and the name map to decode the
    answer with. Public so tests and debugging can see exactly what is sent."""
    names = ToolNameMap(t.name for t in request.tools)
    payload: dict[str, Any] = {
        "model": request.model or default_model,
        "max_tokens": request.max_tokens,
        "messages": message_params(request.messages, names),
    }
    if request.system:
        payload["system"] = [
            {"type": "text", "text": request.system, "cache_control": dict(CACHE_CONTROL)}
        ]
    if request.tools:
        tools: list[dict[str, Any]] = [
            {
                "name": names.to_wire(t.name),
                "description": t.description,
                "input_schema": dict(t.input_schema),
            }
            for t in request.tools
        ]
        tools[-1]["cache_control"] = dict(CACHE_CONTROL)
        payload["tools"] = tools
    if request.temperature is not None:
        payload["temperature"] = request.temperature
    return payload, names


def parse_message(message: anthropic.types.Message, names: ToolNameMap) -> LLMResponse:
    texts: list[str] = []
    calls: list[ToolCall] = []
    for block in message.content:
        if block.type == "text":
            texts.append(block.text)
        elif block.type == "tool_use":
            arguments = block.input if isinstance(block.input, dict) else {}
            calls.append(ToolCall(block.id, names.from_wire(block.name), arguments))
    usage = message.usage
    return LLMResponse(
        text="".join(texts) or None,
        tool_calls=tuple(calls),
        stop_reason=message.stop_reason or "end_turn",
        usage=Usage(
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            cache_read_tokens=usage.cache_read_input_tokens or 0,
            cache_write_tokens=usage.cache_creation_input_tokens or 0,
        ),
        model=message.model,
        id=message.id,
    )


# -- the client -----------------------------------------------------------------------------------

_HINTS = {
    401: " (check ANTHROPIC_API_KEY)",
    403: " (the API key is not allowed to do this)",
    404: " (check the model name: MANA_MODEL / MANA_COMPACT_MODEL)",
}


class AnthropicClient:
    """`LLMClient` for the Anthropic Messages API. `http_client` (an `httpx2.AsyncClient`) and
    `sleep` are injectable for tests; `timeout` applies per attempt."""

    def __init__(
        self,
        *,
        api_key: str,
        model: str = DEFAULT_MODEL,
        base_url: str | None = None,
        http_client: httpx2.AsyncClient | None = None,
        retry: RetryPolicy | None = None,
        timeout: float = 120.0,
        sleep: Sleep | None = None,
    ) -> None:
        if not api_key:
            raise ValidationFailed("an Anthropic API key is required")
        self._api_key = api_key
        self._model = model
        self.retry = retry or RetryPolicy()
        self._sleep = sleep
        self._client = anthropic.AsyncAnthropic(
            api_key=api_key,
            base_url=base_url,
            max_retries=0,
            timeout=timeout,
            http_client=http_client,
        )
        self.attempts = 0  # total HTTP attempts made, for tests and metrics

    @classmethod
    def from_settings(cls, settings: AnthropicSettings, **kwargs: Any) -> AnthropicClient:
        return cls(
            api_key=settings.api_key, model=settings.model, base_url=settings.base_url, **kwargs
        )

    def __repr__(self) -> str:
        return f"AnthropicClient(model={self._model!r})"

    @property
    def model(self) -> str:
        return self._model

    async def aclose(self) -> None:
        await self._client.close()

    async def complete(self, request: LLMRequest) -> LLMResponse:
        payload, names = build_payload(request, self._model)
        started = time.monotonic()
        attempts = 0
        try:
            retrying = self._retrying()
            async for attempt in retrying:
                with attempt:
                    attempts += 1
                    self.attempts += 1
                    message = await self._create(payload)
        except anthropic.APIStatusError as exc:
            elapsed = time.monotonic() - started
            if is_retryable(exc):
                raise LLMUnavailable(
                    self._scrub(
                        f"Anthropic API still failing after {attempts} attempt(s) in "
                        f"{elapsed:.1f} s: {_describe(exc)}"
                    )
                ) from None
            raise LLMRequestRejected(
                self._scrub(
                    f"Anthropic API rejected the request: {_describe(exc)}"
                    f"{_HINTS.get(exc.status_code, '')}"
                ),
                status=exc.status_code,
            ) from None
        except anthropic.APIConnectionError as exc:
            raise LLMUnavailable(
                self._scrub(
                    f"cannot reach the Anthropic API after {attempts} attempt(s): "
                    f"{type(exc).__name__}"
                )
            ) from None
        except anthropic.APIError as exc:
            raise LLMError(
                self._scrub(f"unexpected answer from the Anthropic API: {type(exc).__name__}")
            ) from None
        return parse_message(message, names)

    def _retrying(self) -> AsyncRetrying:
        if self._sleep is None:
            return AsyncRetrying(
                retry=retry_if_exception(is_retryable),
                wait=self._wait,
                stop=self._stop,
                reraise=True,
            )
        return AsyncRetrying(
            retry=retry_if_exception(is_retryable),
            wait=self._wait,
            stop=self._stop,
            reraise=True,
            sleep=self._sleep,
        )

    async def _create(self, payload: dict[str, Any]) -> anthropic.types.Message:
        # This SDK version has no `temperature` parameter; send it as body field when set.
        extra = {"temperature": payload["temperature"]} if "temperature" in payload else None
        message: anthropic.types.Message = await self._client.messages.create(
            model=payload["model"],
            max_tokens=payload["max_tokens"],
            messages=cast("list[MessageParam]", payload["messages"]),
            system=cast("list[TextBlockParam]", payload.get("system", anthropic.omit)),
            tools=cast("list[ToolParam]", payload.get("tools", anthropic.omit)),
            extra_body=extra,
        )
        return message

    def _wait(self, state: RetryCallState) -> float:
        policy = self.retry
        exc = state.outcome.exception() if state.outcome is not None else None
        hinted = retry_after_seconds(exc)
        if hinted is not None:
            return min(hinted, policy.max_retry_after)
        ceiling = min(policy.max_delay, policy.base_delay * 2 ** (state.attempt_number - 1))
        return random.uniform(0, ceiling)

    def _stop(self, state: RetryCallState) -> bool:
        policy = self.retry
        if state.attempt_number >= policy.max_attempts:
            return True
        elapsed = state.seconds_since_start or 0.0
        return elapsed + state.upcoming_sleep > policy.max_total_seconds

    def _scrub(self, text: str) -> str:
        key = self._api_key
        return text.replace(key, "***") if len(key) >= 4 else text


def _describe(exc: anthropic.APIStatusError) -> str:
    kind = f" {exc.type}" if exc.type else ""
    detail = f": {exc.api_message}" if exc.api_message else ""
    rid = f" (request id {exc.request_id})" if exc.request_id else ""
    return f"HTTP {exc.status_code}{kind}{detail}{rid}"
