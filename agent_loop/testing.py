"""Testing kit for code built on the agent loop (the loop's own tests, missions, personas):

- `Probe` + `probe_kit(path, probe)`: a registry with `probe.*` tools that prove or disprove
  concurrency without timing (a barrier only concurrent calls get through, an in-flight counter,
  gates that force an order, a call that blocks until released);
- `FlagGate`: a gate that flags one tool's calls with a reminder, like an injection marker;
- `registry_mcp_server(pipeline, user_id)`: a minimal in-process MCP server over the pipeline,
  for `McpTools` tests without the HTTP stack;
- `assert_pairs_intact(messages)`: every tool_use answered in the next message, in order;
- `strip_volatile(value)`: drop ids and timestamps to compare data made in two databases.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mcp_types as types
from mcp.server import Server, ServerRequestContext

from agent_loop.llm import Message, ToolResultPart, ToolUsePart
from tool_registry.context import CallContext, ToolContext
from tool_registry.errors import ToolError
from tool_registry.gate import ALLOW, Decision, Gate, GateRequest
from tool_registry.models import ToolInput, ToolOutput
from tool_registry.modules import build_registry
from tool_registry.pipeline import Pipeline
from tool_registry.spec import PolicyHint, ToolSpec
from tool_registry.store import User
from tool_registry.testing import ToolKit, tool_kit

# Only a failure guard: a barrier that is never reached fails the call after this long.
BARRIER_TIMEOUT = 5.0


class ProbeInput(ToolInput):
    key: str = "x"


class ProbeOutput(ToolOutput):
    key: str
    text: str = ""


@dataclass
class Probe:
    """Shared state of the probe tools of one test."""

    parties: int = 2
    barrier: asyncio.Barrier = field(init=False)
    in_flight: int = 0
    max_in_flight: int = 0
    started: list[str] = field(default_factory=list)
    finished: list[str] = field(default_factory=list)
    gates: dict[str, asyncio.Event] = field(default_factory=dict)
    block: asyncio.Event = field(default_factory=asyncio.Event)
    blocked: asyncio.Event = field(default_factory=asyncio.Event)
    text: str = ""

    def __post_init__(self) -> None:
        self.barrier = asyncio.Barrier(self.parties)

    async def enter(self, key: str) -> None:
        self.started.append(key)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        for _ in range(5):  # give any concurrently scheduled call the chance to start
            await asyncio.sleep(0)

    def leave(self, key: str) -> None:
        self.in_flight -= 1
        self.finished.append(key)


def probe_specs(probe: Probe) -> list[ToolSpec[Any, Any]]:
    async def meet(inp: ProbeInput, ctx: ToolContext) -> ProbeOutput:
        await probe.enter(inp.key)
        try:
            await asyncio.wait_for(probe.barrier.wait(), BARRIER_TIMEOUT)
        except TimeoutError:
            raise ToolError("barrier not reached: the calls did not run concurrently") from None
        finally:
            probe.leave(inp.key)
        return ProbeOutput(key=inp.key)

    async def count(inp: ProbeInput, ctx: ToolContext) -> ProbeOutput:
        await probe.enter(inp.key)
        probe.leave(inp.key)
        return ProbeOutput(key=inp.key, text=probe.text)

    async def ordered(inp: ProbeInput, ctx: ToolContext) -> ProbeOutput:
        """Waits for `gates[key]` if there is one, and sets `gates["after:" + key]` when done:
        lets a test force the first call of a round to finish last."""
        await probe.enter(inp.key)
        gate = probe.gates.get(inp.key)
        if gate is not None:
            try:
                await asyncio.wait_for(gate.wait(), BARRIER_TIMEOUT)
            except TimeoutError:
                raise ToolError("gate never opened: the calls did not run concurrently") from None
        probe.leave(inp.key)
        release = probe.gates.get(f"after:{inp.key}")
        if release is not None:
            release.set()
        return ProbeOutput(key=inp.key)

    async def hold(inp: ProbeInput, ctx: ToolContext) -> ProbeOutput:
        probe.blocked.set()
        await probe.block.wait()
        return ProbeOutput(key=inp.key)

    def spec(name: str, handler: Any, hint: PolicyHint = "read") -> ToolSpec[Any, Any]:
        return ToolSpec(
            name=f"probe.{name}",
            title=f"Probe {name}",
            description=f"Test probe {name}.",
            module="probe",
            scope="user-space",
            policy_hint=hint,
            input=ProbeInput,
            output=ProbeOutput,
            handler=handler,
        )

    return [
        spec("meet", meet),
        spec("count", count),
        spec("write", count, "write"),
        spec("ordered", ordered),
        spec("hold", hold),
    ]


@asynccontextmanager
async def probe_kit(
    path: Path | str, probe: Probe, gate: Gate | None = None
) -> AsyncIterator[ToolKit]:
    registry = build_registry(extra=probe_specs(probe))
    async with tool_kit(path, registry=registry, gate=gate) as kit:
        yield kit


class FlagGate:
    """Flags (but allows) every call of `tool`, with a reminder, like the policy gate does for an
    injection marker in the arguments."""

    def __init__(self, tool: str, reminder: str) -> None:
        self.tool = tool
        self.reminder = reminder

    async def check(self, request: GateRequest) -> Decision:
        if request.spec.name == self.tool:
            return Decision(
                allow=True, reason="injection-marker", reminder=self.reminder, flagged=True
            )
        return ALLOW


def context(user: User, space: str | None = None, **kw: Any) -> CallContext:
    return CallContext(user_id=user.id, space=space, invoker=kw.pop("invoker", "cli"), **kw)


def all_text(messages: Sequence[Message]) -> str:
    return json.dumps([m.to_json() for m in messages])


def assert_pairs_intact(messages: Sequence[Message]) -> None:
    """Every tool_use is answered in the very next message, and every tool_result answers a
    tool_use of the message right before it."""
    for i, message in enumerate(messages):
        uses = [p.call.id for p in message.content if isinstance(p, ToolUsePart)]
        results = [p.tool_use_id for p in message.content if isinstance(p, ToolResultPart)]
        if uses:
            assert i + 1 < len(messages), f"tool_use in message {i} has no answer"
            answered = [r.tool_use_id for r in messages[i + 1].tool_results]
            assert answered == uses, f"message {i + 1} answers {answered}, expected {uses}"
        if results:
            assert i > 0, "a tool_result opens the history"
            asked = [c.id for c in messages[i - 1].tool_calls]
            assert results == asked, f"message {i} answers {results}, previous asked {asked}"


# -- an in-process MCP server over the pipeline (stands in for the project's MCP server) ------------


def registry_mcp_server(pipeline: Pipeline, user_id: str, space: str | None = None) -> Server[Any]:
    """A minimal low-level MCP server exposing the registry for one user and space, through the
    pipeline: enough to test `McpTools` until the project's server lands."""

    def ctx() -> CallContext:
        return CallContext(user_id=user_id, space=space, invoker="mcp")

    async def list_tools(
        _: ServerRequestContext, params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        access = await pipeline.resolve(ctx())
        return types.ListToolsResult(
            tools=[
                types.Tool(
                    name=s.name,
                    description=s.description,
                    input_schema=s.input_schema(),
                    annotations=types.ToolAnnotations(
                        read_only_hint=s.read_only,
                        destructive_hint=s.policy_hint == "destructive",
                        idempotent_hint=s.is_idempotent,
                        open_world_hint=s.open_world,
                    ),
                )
                for s in pipeline.visible_tools(access.space.type)
            ]
        )

    async def call_tool(
        _: ServerRequestContext, params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        outcome = await pipeline.invoke(params.name, params.arguments or {}, ctx())
        if outcome.ok:
            return types.CallToolResult(
                content=[types.TextContent(text=json.dumps(outcome.result))],
                structured_content=outcome.result,
            )
        return types.CallToolResult(
            content=[types.TextContent(text=json.dumps(outcome.public()))], is_error=True
        )

    return Server("mana-test", version="0", on_list_tools=list_tools, on_call_tool=call_tool)


def strip_volatile(value: Any) -> Any:
    """Drop ids and timestamps, so data made in two databases can be compared."""
    volatile = {"id", "createdAt", "updatedAt", "completedAt", "habitId"}
    if isinstance(value, dict):
        return {k: strip_volatile(v) for k, v in value.items() if k not in volatile}
    if isinstance(value, list):
        return [strip_volatile(v) for v in value]
    return value
