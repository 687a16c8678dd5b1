"""A failing event hook is logged and the run goes on: an observer must not end a mission."""

from __future__ import annotations

from typing import Any

from structlog.testing import capture_logs

from agent_loop.loop import LoopOptions, run_loop
from agent_loop.scripted import ScriptedClient
from agent_loop.state import LoopEvent
from agent_loop.tools import FunctionTool, FunctionTools


def turn(text: str | None, *calls: tuple[str, dict[str, Any]]) -> dict[str, Any]:
    return {
        "text": text,
        "tool_calls": [{"name": n, "arguments": a} for n, a in calls],
        "usage": {"input_tokens": 1, "output_tokens": 1},
    }


async def test_a_hook_that_raises_is_logged_and_the_run_finishes() -> None:
    seen: list[str] = []

    def hook(event: LoopEvent) -> None:
        seen.append(type(event).__name__)
        raise RuntimeError("observer broke")

    async def echo(args: dict[str, Any]) -> str:
        return "ok"

    tools = FunctionTools([FunctionTool("echo", "echo", echo, {"type": "object"})])
    client = ScriptedClient([turn(None, ("echo", {})), turn("done")])
    with capture_logs() as logs:
        result = await run_loop(client, tools, "system", "go", LoopOptions(on_event=hook))
    assert result.stop_reason == "assistant-stop", result
    assert result.final_text == "done"
    failures = [e for e in logs if e["event"] == "agent event hook failed"]
    assert [e["event_type"] for e in failures] == seen
