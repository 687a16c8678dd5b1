"""Test-only tools that use the client channel, loaded by a server subprocess through
`MANA_EXTRA_TOOLS=tests.mcp.channel_tools:TOOLS` (see `mana_cli.runtime.load_extra_tools`), or
added to an in-process registry.

- `chantest.ask` asks two questions in sequence (a name, then a colour, only after the name was
  accepted) and returns what it got; a client that cannot be asked gets `refused`.
- `chantest.sample` asks the client's model one question.
- `chantest.report` reports three steps of progress and logs at debug, info and warning.
- `chantest.attach` attaches an image, an audio clip and two embedded resources.
- `chantest.askInWrite` (a write tool) asks inside its write transaction, which is refused.
- `chantest.endRound` raises `InputRequired` itself, which only a 2026-07-28 channel may do.
- `chantest.needSample` needs the client's model and lets `ClientCannotAsk` escape.
- `chantest.roots` lists the client's roots.
- `chantest.askAll` asks a name, the model and the roots together (one 2026-07-28 round); a
  client that cannot answer them all gets `refused`.

Each run is counted in `$MANA_CHANTEST_DIR/<tool>.runs` when that variable is set, so a test can
see how often a tool ran (once per round on 2026-07-28; not at all on a rejected state).
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from pydantic import Field

from tool_registry.client_channel import (
    Attachment,
    ClientCannotAsk,
    ElicitQuestion,
    InputRequired,
    RootsQuestion,
    SampleQuestion,
    SamplingMessage,
)
from tool_registry.context import ToolContext
from tool_registry.models import ToolInput, ToolOutput
from tool_registry.spec import InT, OutT, PolicyHint, ToolSpec

MODULE = "chantest"
NAME_FORM = {
    "type": "object",
    "properties": {"name": {"type": "string", "minLength": 1}},
    "required": ["name"],
}
COLOUR_FORM = {
    "type": "object",
    "properties": {"colour": {"type": "string", "enum": ["red", "green", "blue"]}},
    "required": ["colour"],
}
# A 1x1 PNG and a tiny WAV header: enough for content blocks.
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360f8cf00000301010018dd8db00000000049454e44ae426082"
)
WAV = b"RIFF$\x00\x00\x00WAVEfmt \x10\x00\x00\x00\x01\x00\x01\x00@\x1f\x00\x00"


def _count(tool: str) -> None:
    folder = os.environ.get("MANA_CHANTEST_DIR")
    if folder:
        path = Path(folder) / f"{tool}.runs"
        runs = int(path.read_text()) if path.exists() else 0
        path.write_text(str(runs + 1))


class Empty(ToolInput):
    pass


class AskInput(ToolInput):
    topic: str = "you"


class AskOutput(ToolOutput):
    name: str | None = None
    colour: str | None = None
    actions: list[str]
    refused: str | None = None


async def ask(inp: AskInput, ctx: ToolContext) -> AskOutput:
    _count("ask")
    try:
        first = await ctx.channel.elicit("name", f"What is your name, {inp.topic}?", NAME_FORM)
        if not first.accepted or first.content is None:
            return AskOutput(actions=[first.action])
        second = await ctx.channel.elicit("colour", "Your favourite colour?", COLOUR_FORM)
    except ClientCannotAsk as refusal:
        return AskOutput(actions=[], refused=str(refusal))
    colour = second.content.get("colour") if second.content else None
    return AskOutput(
        name=str(first.content["name"]),
        colour=str(colour) if colour is not None else None,
        actions=[first.action, second.action],
    )


class SampleOutput(ToolOutput):
    text: str | None = None
    model: str | None = None
    refused: str | None = None


async def sample(inp: Empty, ctx: ToolContext) -> SampleOutput:
    _count("sample")
    try:
        answer = await ctx.channel.sample(
            "joke",
            [SamplingMessage(role="user", text="Tell me a short joke.")],
            max_tokens=50,
            system="Be brief.",
        )
    except ClientCannotAsk as refusal:
        return SampleOutput(refused=str(refusal))
    return SampleOutput(text=answer.text, model=answer.model)


class ReportOutput(ToolOutput):
    steps: int


async def report(inp: Empty, ctx: ToolContext) -> ReportOutput:
    for step in range(4):
        await ctx.channel.progress(step, 3, f"step {step} of 3")
    await ctx.channel.log("debug", {"detail": "debug line"}, "chantest")
    await ctx.channel.log("info", "info line", "chantest")
    await ctx.channel.log("warning", "warning line", "chantest")
    return ReportOutput(steps=3)


class AttachOutput(ToolOutput):
    attached: int


async def attach(inp: Empty, ctx: ToolContext) -> AttachOutput:
    ctx.attach(Attachment(kind="image", mime_type="image/png", data=PNG))
    ctx.attach(Attachment(kind="audio", mime_type="audio/wav", data=WAV))
    ctx.attach(
        Attachment(kind="resource", mime_type="text/markdown", uri="mana://test/a", text="# A")
    )
    ctx.attach(Attachment(kind="resource", mime_type="image/png", uri="mana://test/b", data=PNG))
    return AttachOutput(attached=4)


class WriteOutput(ToolOutput):
    asked: bool


async def ask_in_write(inp: Empty, ctx: ToolContext) -> WriteOutput:
    answer = await ctx.channel.elicit("sure", "Sure?", NAME_FORM)
    return WriteOutput(asked=answer.accepted)


async def end_round(inp: Empty, ctx: ToolContext) -> WriteOutput:
    """Ends the round the way only a 2026-07-28 channel may; on 2025-11-25 it must not."""
    raise InputRequired({"q": {"method": "elicitation/create"}})


async def need_sample(inp: Empty, ctx: ToolContext) -> SampleOutput:
    _count("needSample")
    answer = await ctx.channel.sample(
        "needed", [SamplingMessage(role="user", text="Say hi.")], max_tokens=10
    )
    return SampleOutput(text=answer.text, model=answer.model)


class RootsOutput(ToolOutput):
    roots: list[str]


async def roots(inp: Empty, ctx: ToolContext) -> RootsOutput:
    return RootsOutput(roots=await ctx.channel.roots())


class AskAllOutput(ToolOutput):
    name: str | None = None
    text: str | None = None
    roots: list[str] = Field(default_factory=list)
    refused: str | None = None


async def ask_all(inp: Empty, ctx: ToolContext) -> AskAllOutput:
    _count("askAll")
    try:
        answers = await ctx.channel.ask_all(
            [
                ElicitQuestion("name", "What is your name?", NAME_FORM),
                SampleQuestion("joke", [SamplingMessage(role="user", text="A joke?")], 50),
                RootsQuestion("roots"),
            ]
        )
    except ClientCannotAsk as refusal:
        return AskAllOutput(refused=str(refusal))
    content = answers.elicited("name").content or {}
    return AskAllOutput(
        name=str(content.get("name")),
        text=answers.sampled("joke").text,
        roots=answers.roots("roots"),
    )


def _tool(
    verb: str,
    hint: PolicyHint,
    inp: type[InT],
    out: type[OutT],
    handler: Callable[[InT, ToolContext], Awaitable[OutT]],
) -> ToolSpec[InT, OutT]:
    return ToolSpec(
        name=f"{MODULE}.{verb}",
        title=f"Channel test: {verb}",
        description="Test only: uses the client channel.",
        module=MODULE,
        scope="user-space",
        policy_hint=hint,
        input=inp,
        output=out,
        handler=handler,
    )


TOOLS: list[ToolSpec[Any, Any]] = [
    _tool("ask", "read", AskInput, AskOutput, ask),
    _tool("sample", "read", Empty, SampleOutput, sample),
    _tool("report", "read", Empty, ReportOutput, report),
    _tool("attach", "read", Empty, AttachOutput, attach),
    _tool("askInWrite", "write", Empty, WriteOutput, ask_in_write),
    _tool("endRound", "read", Empty, WriteOutput, end_round),
    _tool("needSample", "read", Empty, SampleOutput, need_sample),
    _tool("roots", "read", Empty, RootsOutput, roots),
    _tool("askAll", "read", Empty, AskAllOutput, ask_all),
]
