"""Agent loop costs, measured in one run.

(a) Parallel reads: one round of 10 read calls that each wait 100 ms, through the real registry,
    pipeline and SQLite store: wall time with parallel reads vs one after another.
    Goal: parallel <= 130 ms.
(b) Loop overhead per round: a scripted model and no-op tools, 20 rounds (19 with one tool call,
    then the answer), starting from a history of 50 messages. Ours (`run_loop` + `ScriptedClient`
    + `FunctionTools`) against Pydantic AI's `Agent` with a `FunctionModel` running the same
    conversation with the same tool, interleaved in the same process. Goal: ours no slower.
    Pydantic AI is a benchmark-only extra (`pip install -e '.[bench]'`); without it (b) reports
    our figure only.

    .venv/bin/python benchmarks/loop_overhead.py
    .venv/bin/python benchmarks/loop_overhead.py --repeat 50 --json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from pydantic import Field

from agent_loop.llm import Message, TextPart
from agent_loop.loop import LoopOptions, run_loop
from agent_loop.scripted import ScriptedClient
from agent_loop.tools import FunctionTool, FunctionTools, RegistryTools
from tool_registry.context import CallContext, ToolContext
from tool_registry.logging import configure_logging
from tool_registry.models import ToolInput, ToolOutput
from tool_registry.modules import build_registry
from tool_registry.spec import ToolSpec
from tool_registry.testing import tool_kit

READS = 10
WAIT_SECONDS = 0.100
PARALLEL_GOAL_MS = 130.0
ROUNDS = 20
HISTORY = 50
SYSTEM = "You are a benchmark agent."


# -- (a) parallel reads through the pipeline --------------------------------------------------------


class WaitInput(ToolInput):
    key: int = Field(default=0, ge=0)


class WaitOutput(ToolOutput):
    key: int


async def wait_handler(inp: WaitInput, ctx: ToolContext) -> WaitOutput:
    await asyncio.sleep(WAIT_SECONDS)
    return WaitOutput(key=inp.key)


WAIT_TOOL = ToolSpec(
    name="bench.wait",
    title="Wait",
    description="Waits 100 ms and returns its key.",
    module="bench",
    scope="user-space",
    policy_hint="read",
    input=WaitInput,
    output=WaitOutput,
    handler=wait_handler,
)


def read_round_script() -> list[dict[str, Any]]:
    calls = [{"name": "bench.wait", "arguments": {"key": i}} for i in range(READS)]
    return [{"text": None, "tool_calls": calls}, {"text": "done"}]


async def parallel_reads(repeat: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        async with tool_kit(Path(tmp) / "bench.db", registry=build_registry([WAIT_TOOL])) as kit:
            user = await kit.user("bench@mana.test")
            tools = RegistryTools(kit.pipeline, CallContext(user_id=user.id, invoker="cli"))
            for label, parallel in (("parallel", True), ("sequential", False)):
                times = []
                for _ in range(repeat):
                    client = ScriptedClient(read_round_script())
                    started = time.perf_counter()
                    result = await run_loop(
                        client, tools, SYSTEM, "go", LoopOptions(parallel_reads=parallel)
                    )
                    times.append((time.perf_counter() - started) * 1000)
                    assert all(c.outcome.ok for c in result.calls), result.calls
                out[label] = {"median_ms": statistics.median(times), "min_ms": min(times)}
    return out


# -- (b) loop overhead per round --------------------------------------------------------------------


def our_history() -> list[Message]:
    return [
        Message("user" if i % 2 == 0 else "assistant", (TextPart(f"earlier message {i}"),))
        for i in range(HISTORY)
    ]


def our_script() -> list[dict[str, Any]]:
    turns: list[dict[str, Any]] = [
        {"text": None, "tool_calls": [{"name": "noop", "arguments": {}}]} for _ in range(ROUNDS - 1)
    ]
    turns.append({"text": "done"})
    return turns


async def noop(_: dict[str, Any]) -> dict[str, Any]:
    return {"ok": True}


async def ours_once(tools: FunctionTools, history: list[Message], script: list[Any]) -> float:
    client = ScriptedClient(script)
    started = time.perf_counter()
    result = await run_loop(
        client, tools, SYSTEM, "go", LoopOptions(max_rounds=ROUNDS, history=history)
    )
    elapsed = time.perf_counter() - started
    assert result.rounds == ROUNDS and result.stop_reason == "assistant-stop", result.stop_reason
    return elapsed


def pydantic_ai_runner() -> Callable[[], Awaitable[float]] | None:
    try:
        from pydantic_ai import Agent
        from pydantic_ai.messages import (
            ModelMessage,
            ModelRequest,
            ModelResponse,
            ToolCallPart,
            UserPromptPart,
        )
        from pydantic_ai.messages import (
            TextPart as PaiTextPart,
        )
        from pydantic_ai.models.function import AgentInfo, FunctionModel
    except ImportError:
        return None

    calls = {"n": 0}

    def model(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        calls["n"] += 1
        if calls["n"] < ROUNDS:
            return ModelResponse(parts=[ToolCallPart("noop", {})])
        return ModelResponse(parts=[PaiTextPart("done")])

    agent = Agent(FunctionModel(model), system_prompt=SYSTEM)

    @agent.tool_plain
    async def noop() -> dict[str, Any]:  # the same no-op tool
        return {"ok": True}

    history: list[ModelMessage] = [
        ModelRequest(parts=[UserPromptPart(f"earlier message {i}")])
        if i % 2 == 0
        else ModelResponse(parts=[PaiTextPart(f"earlier message {i}")])
        for i in range(HISTORY)
    ]

    async def once() -> float:
        calls["n"] = 0
        started = time.perf_counter()
        result = await agent.run("go", message_history=history)
        elapsed = time.perf_counter() - started
        assert result.output == "done" and calls["n"] == ROUNDS
        return elapsed

    return once


async def loop_overhead(repeat: int) -> dict[str, Any]:
    tools = FunctionTools([FunctionTool("noop", "Does nothing.", noop)])
    history, script = our_history(), our_script()
    theirs = pydantic_ai_runner()
    ours_times: list[float] = []
    their_times: list[float] = []
    for _ in range(3):  # warm up both
        await ours_once(tools, history, script)
        if theirs is not None:
            await theirs()
    for _ in range(repeat):  # interleaved, so both see the same machine load
        ours_times.append(await ours_once(tools, history, script))
        if theirs is not None:
            their_times.append(await theirs())
    ours_us = statistics.median(ours_times) / ROUNDS * 1e6
    out: dict[str, Any] = {"ours_us_per_round": round(ours_us, 1)}
    if their_times:
        theirs_us = statistics.median(their_times) / ROUNDS * 1e6
        out["pydantic_ai_us_per_round"] = round(theirs_us, 1)
        out["ratio_ours_to_pydantic_ai"] = round(ours_us / theirs_us, 3)
    else:
        out["pydantic_ai_us_per_round"] = None
        out["note"] = "pydantic-ai-slim not installed: pip install -e '.[bench]'"
    return out


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "parallel_reads": await parallel_reads(args.read_repeat),
        "loop_overhead": await loop_overhead(args.repeat),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=30, help="runs per loop-overhead figure")
    parser.add_argument("--read-repeat", type=int, default=5, help="runs per parallel figure")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    configure_logging("WARNING", json=True)
    figures = asyncio.run(main_async(args))
    if args.json:
        print(json.dumps(figures, indent=2))
        return
    reads = figures["parallel_reads"]
    par, seq = reads["parallel"]["median_ms"], reads["sequential"]["median_ms"]
    verdict = "meets" if par <= PARALLEL_GOAL_MS else "MISSES"
    print(f"(a) {READS} reads x {WAIT_SECONDS * 1000:.0f} ms, one round, real pipeline + SQLite")
    print(
        f"    parallel   {par:7.1f} ms (median of {args.read_repeat}; goal <= {PARALLEL_GOAL_MS:.0f} ms: {verdict})"
    )
    print(f"    sequential {seq:7.1f} ms  -> speed-up x{seq / par:.1f}")
    loop = figures["loop_overhead"]
    print(f"(b) loop overhead per round ({ROUNDS} rounds, history {HISTORY}, no-op tool)")
    print(f"    ours        {loop['ours_us_per_round']:8.1f} us")
    if loop["pydantic_ai_us_per_round"] is None:
        print(f"    pydantic-ai  n/a ({loop['note']})")
    else:
        ratio = loop["ratio_ours_to_pydantic_ai"]
        verdict = "meets" if ratio <= 1.0 else "MISSES"
        print(f"    pydantic-ai {loop['pydantic_ai_us_per_round']:8.1f} us")
        print(f"    ratio ours/pydantic-ai {ratio:.3f} (goal <= 1: {verdict})")


if __name__ == "__main__":
    main()
