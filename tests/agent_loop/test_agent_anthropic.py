"""`AnthropicClient` against `httpx2.MockTransport` (the SDK uses httpx2; respx cannot see it):
exact request shape, name mapping, tool_result grouping, caching, retries, errors, usage."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx2
import pytest

from agent_loop.anthropic_client import AnthropicClient, AnthropicSettings, RetryPolicy
from agent_loop.llm import (
    LLMRequest,
    LLMRequestRejected,
    LLMUnavailable,
    Message,
    TextPart,
    ToolCall,
    ToolDef,
    ToolResultPart,
    ToolUsePart,
    with_reminders,
)
from agent_loop.loop import LoopOptions, run_loop
from agent_loop.tools import FunctionTool, FunctionTools
from tool_registry.errors import ValidationFailed

KEY = "sk-test-key-0123456789"
SCHEMA = {"type": "object", "properties": {"name": {"type": "string"}}}
TOOLS = (
    ToolDef("habits.list", "List habits.", {"type": "object", "properties": {}}),
    ToolDef("todo.create", "Create a todo.", SCHEMA),
)


def message_body(
    content: list[dict[str, Any]], stop: str = "end_turn", **usage: int
) -> dict[str, Any]:
    return {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-test",
        "content": content,
        "stop_reason": stop,
        "stop_sequence": None,
        "usage": {"input_tokens": 11, "output_tokens": 7, **usage},
    }


def error(
    status: int, kind: str, text: str, headers: dict[str, str] | None = None
) -> httpx2.Response:
    return httpx2.Response(
        status,
        json={"type": "error", "error": {"type": kind, "message": text}},
        headers={"request-id": "req_fake", **(headers or {})},
    )


def ok(content: list[dict[str, Any]] | None = None, **kw: Any) -> httpx2.Response:
    return httpx2.Response(
        200, json=message_body(content or [{"type": "text", "text": "hi"}], **kw)
    )


class FakeApi:
    """Answers requests from a list (the last answer repeats) and records them."""

    def __init__(
        self, *answers: httpx2.Response | Callable[[httpx2.Request], httpx2.Response]
    ) -> None:
        self.answers = list(answers)
        self.requests: list[httpx2.Request] = []

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        self.requests.append(request)
        answer = self.answers[min(len(self.requests), len(self.answers)) - 1]
        return answer(request) if callable(answer) else answer

    @property
    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(r.content) for r in self.requests]


class Sleeps:
    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def client(api: FakeApi, sleeps: Sleeps | None = None, **retry: Any) -> AnthropicClient:
    return AnthropicClient(
        api_key=KEY,
        model="claude-test",
        http_client=httpx2.AsyncClient(transport=httpx2.MockTransport(api)),
        retry=RetryPolicy(**retry) if retry else None,
        sleep=sleeps,
    )


def simple_request() -> LLMRequest:
    return LLMRequest(system="sys", messages=(Message.user("hello"),), tools=TOOLS, max_tokens=64)


# -- request and response shape -------------------------------------------------------------------


async def test_exact_request_shape_and_response_parsing() -> None:
    api = FakeApi(
        ok(
            [
                {"type": "text", "text": "On it."},
                {
                    "type": "tool_use",
                    "id": "toolu_9",
                    "name": "todo_create",
                    "input": {"name": "x"},
                },
            ],
            stop="tool_use",
            cache_read_input_tokens=1000,
            cache_creation_input_tokens=200,
        )
    )
    history = [
        Message.user("Add a todo"),
        Message(
            "assistant",
            (
                TextPart("Checking first."),
                ToolUsePart(ToolCall("toolu_1", "habits.list", {})),
                ToolUsePart(ToolCall("toolu_2", "todo.create", {"name": "a"})),
            ),
        ),
        Message(
            "user",
            (
                ToolResultPart("toolu_1", '{"habits":[]}'),
                ToolResultPart("toolu_2", '{"status":"denied"}', is_error=True),
            ),
        ),
    ]
    request = LLMRequest(
        system="You help.",
        messages=with_reminders(history, ["Budget at 80%."]),
        tools=TOOLS,
        max_tokens=512,
    )
    response = await client(api).complete(request)

    (sent,) = api.requests
    assert sent.url.path == "/v1/messages"
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    body = api.bodies[0]
    assert body["model"] == "claude-test" and body["max_tokens"] == 512
    assert "temperature" not in body
    assert body["system"] == [
        {"type": "text", "text": "You help.", "cache_control": {"type": "ephemeral"}}
    ]
    assert body["tools"] == [
        {
            "name": "habits_list",
            "description": "List habits.",
            "input_schema": TOOLS[0].input_schema,
        },
        {
            "name": "todo_create",
            "description": "Create a todo.",
            "input_schema": SCHEMA,
            "cache_control": {"type": "ephemeral"},
        },
    ]
    assert body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "Add a todo"}]},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Checking first."},
                {"type": "tool_use", "id": "toolu_1", "name": "habits_list", "input": {}},
                {
                    "type": "tool_use",
                    "id": "toolu_2",
                    "name": "todo_create",
                    "input": {"name": "a"},
                },
            ],
        },
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_1",
                    "content": '{"habits":[]}',
                    "is_error": False,
                },
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_2",
                    "content": '{"status":"denied"}',
                    "is_error": True,
                },
                {"type": "text", "text": "<system-reminder>\nBudget at 80%.\n</system-reminder>"},
            ],
        },
    ]

    assert response.text == "On it."
    assert response.tool_calls == (ToolCall("toolu_9", "todo.create", {"name": "x"}),)
    assert response.stop_reason == "tool_use"
    usage = response.usage
    assert (usage.input_tokens, usage.output_tokens) == (11, 7)
    assert (usage.cache_read_tokens, usage.cache_write_tokens) == (1000, 200)


async def test_temperature_is_sent_only_when_set() -> None:
    api = FakeApi(ok())
    request = LLMRequest(system="", messages=(Message.user("x"),), temperature=0.2)
    await client(api).complete(request)
    body = api.bodies[0]
    assert body["temperature"] == 0.2
    assert "system" not in body and "tools" not in body


async def test_loop_sends_one_grouped_result_message_per_round() -> None:
    """Through the loop: both results of a round go back in one user message, in the order
    the model asked, with is_error on the failed one."""
    api = FakeApi(
        ok(
            [
                {"type": "tool_use", "id": "t_a", "name": "kv_get", "input": {"key": "a"}},
                {"type": "tool_use", "id": "t_b", "name": "kv_get", "input": {"key": "missing"}},
            ],
            stop="tool_use",
        ),
        ok([{"type": "text", "text": "a is 1"}]),
    )

    async def get(args: dict[str, Any]) -> Any:
        if args["key"] != "a":
            raise ValueError(f"no key {args['key']}")
        return {"a": 1}

    tools = FunctionTools([FunctionTool("kv.get", "Read a key.", get)])
    result = await run_loop(client(api), tools, "sys", "what is a?", LoopOptions())
    assert result.stop_reason == "assistant-stop" and result.final_text == "a is 1"
    assert [c.call.name for c in result.calls] == ["kv.get", "kv.get"]  # decoded names
    second = api.bodies[1]["messages"]
    assert len(second) == 3
    results = second[2]["content"]
    assert [(b["type"], b["tool_use_id"], b["is_error"]) for b in results] == [
        ("tool_result", "t_a", False),
        ("tool_result", "t_b", True),
    ]


# -- retries --------------------------------------------------------------------------------------


async def test_429_is_retried_after_the_servers_retry_after() -> None:
    api = FakeApi(error(429, "rate_limit_error", "slow down", {"retry-after": "0.01"}), ok())
    sleeps = Sleeps()
    llm = client(api, sleeps)
    response = await llm.complete(simple_request())
    assert response.text == "hi"
    assert len(api.requests) == 2 and llm.attempts == 2
    assert sleeps.waits == [0.01]


async def test_retry_after_ms_wins_and_real_sleep_works() -> None:
    api = FakeApi(
        error(429, "rate_limit_error", "slow", {"retry-after-ms": "10", "retry-after": "30"}),
        ok(),
    )
    llm = client(api)  # real asyncio.sleep: 10 ms
    assert (await llm.complete(simple_request())).text == "hi"
    assert len(api.requests) == 2


async def test_overloaded_529_is_retried_with_jittered_backoff() -> None:
    overloaded = error(529, "overloaded_error", "Overloaded")
    api = FakeApi(overloaded, overloaded, ok())
    sleeps = Sleeps()
    assert (await client(api, sleeps).complete(simple_request())).text == "hi"
    assert len(api.requests) == 3
    first, second = sleeps.waits
    assert 0 <= first <= 0.5 and 0 <= second <= 1.0  # full jitter under 0.5 * 2**(n-1)


async def test_connection_errors_are_retried() -> None:
    def refuse(request: httpx2.Request) -> httpx2.Response:
        raise httpx2.ConnectError("connection refused", request=request)

    api = FakeApi(refuse, ok())
    assert (await client(api, Sleeps()).complete(simple_request())).text == "hi"
    assert len(api.requests) == 2


@pytest.mark.parametrize("status", [500, 503, 529])
async def test_attempts_are_bounded_and_not_multiplied_by_the_sdk(status: int) -> None:
    api = FakeApi(error(status, "api_error", "boom"))
    llm = client(api, Sleeps(), max_attempts=3)
    with pytest.raises(LLMUnavailable, match=f"after 3 attempt\\(s\\).*HTTP {status}"):
        await llm.complete(simple_request())
    assert len(api.requests) == 3  # the SDK's own retries are off


async def test_total_time_bound_stops_instead_of_sleeping_past_it() -> None:
    api = FakeApi(error(429, "rate_limit_error", "later", {"retry-after": "120"}), ok())
    sleeps = Sleeps()
    with pytest.raises(LLMUnavailable):
        await client(api, sleeps, max_total_seconds=5.0).complete(simple_request())
    assert len(api.requests) == 1 and sleeps.waits == []


@pytest.mark.parametrize(
    ("status", "kind", "hint"),
    [
        (400, "invalid_request_error", ""),
        (401, "authentication_error", "check ANTHROPIC_API_KEY"),
        (403, "permission_error", "not allowed"),
        (404, "not_found_error", "MANA_MODEL"),
    ],
)
async def test_client_errors_fail_at_once_without_the_key(
    status: int, kind: str, hint: str
) -> None:
    api = FakeApi(error(status, kind, f"bad request for key {KEY}"))
    sleeps = Sleeps()
    with pytest.raises(LLMRequestRejected) as caught:
        await client(api, sleeps).complete(simple_request())
    assert len(api.requests) == 1 and sleeps.waits == []
    exc = caught.value
    assert exc.status == status
    assert f"HTTP {status} {kind}" in exc.message and hint in exc.message
    assert KEY not in exc.message and KEY not in str(exc) and "***" in exc.message


async def test_model_failure_in_the_loop_is_an_llm_error_with_the_partial_transcript() -> None:
    api = FakeApi(
        ok([{"type": "tool_use", "id": "t1", "name": "kv_get", "input": {}}], stop="tool_use"),
        error(500, "api_error", "boom"),
    )

    async def get(_: dict[str, Any]) -> Any:
        return {"v": 1}

    tools = FunctionTools([FunctionTool("kv.get", "Read.", get)])
    result = await run_loop(client(api, Sleeps(), max_attempts=2), tools, "sys", "go")
    assert result.stop_reason == "llm-error"
    assert result.error is not None and "HTTP 500" in result.error
    assert len(result.transcript) == 3 and result.calls[0].outcome.ok
    assert KEY not in json.dumps(result.to_json())


# -- settings -------------------------------------------------------------------------------------


def test_settings_from_environment() -> None:
    settings = AnthropicSettings.from_environ(
        {
            "ANTHROPIC_API_KEY": KEY,
            "MANA_MODEL": "claude-opus-4-5",
            "MANA_COMPACT_MODEL": "claude-haiku-4-5",
            "ANTHROPIC_BASE_URL": "http://127.0.0.1:9",
            "MANA_CONTEXT_WINDOW": "100000",
        }
    )
    assert settings.model == "claude-opus-4-5" and settings.compact_model == "claude-haiku-4-5"
    assert settings.base_url == "http://127.0.0.1:9" and settings.context_window == 100_000
    assert KEY not in repr(settings)
    assert KEY not in repr(AnthropicClient.from_settings(settings))


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({}, "ANTHROPIC_API_KEY is not set"),
        ({"ANTHROPIC_API_KEY": KEY, "ANTHROPIC_BASE_URL": "ftp://x"}, "ANTHROPIC_BASE_URL"),
        ({"ANTHROPIC_API_KEY": KEY, "MANA_CONTEXT_WINDOW": "big"}, "MANA_CONTEXT_WINDOW"),
    ],
)
def test_bad_settings_are_clear_errors(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ValidationFailed, match=message) as caught:
        AnthropicSettings.from_environ(environ)
    assert KEY not in caught.value.message
