"""Test-only tools, loaded by a daemon subprocess through `MANA_EXTRA_TOOLS=
tests.missions.plugin_tools:TOOLS` (see `mana_cli.runtime.load_extra_tools`).

`killtest.wait` is a read tool that blocks until a file appears: it first creates
`$MANA_KILLTEST_DIR/entered` (so the test knows the daemon is inside the tool), then waits for
`$MANA_KILLTEST_DIR/release`. The kill test SIGKILLs the daemon while it waits.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from tool_registry.context import ToolContext
from tool_registry.models import ToolInput, ToolOutput
from tool_registry.spec import ToolSpec

POLL_SECONDS = 0.02


class WaitInput(ToolInput):
    label: str = "wait"


class WaitOutput(ToolOutput):
    released: bool


def signal_dir() -> Path:
    return Path(os.environ["MANA_KILLTEST_DIR"])


async def wait(inp: WaitInput, ctx: ToolContext) -> WaitOutput:
    folder = signal_dir()
    (folder / "entered").write_text(inp.label, encoding="utf-8")
    release = folder / "release"
    while not release.exists():  # noqa: ASYNC110 - a file is the cross-process signal
        await asyncio.sleep(POLL_SECONDS)
    return WaitOutput(released=True)


WAIT = ToolSpec(
    name="killtest.wait",
    title="Wait for the test",
    description="Test only: blocks until the test releases it.",
    module="killtest",
    scope="user-space",
    policy_hint="read",
    input=WaitInput,
    output=WaitOutput,
    handler=wait,
)

TOOLS = (WAIT,)
