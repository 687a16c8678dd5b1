"""Test-only tools, loaded by a daemon subprocess through `MANA_EXTRA_TOOLS=
tests.missions.plugin_tools:TOOLS` (see `mana_cli.runtime.load_extra_tools`).

`killtest.wait` is a read tool that blocks until a file appears: it first creates
`$MANA_KILLTEST_DIR/entered` (so the test knows the daemon is inside the tool), then waits for
`$MANA_KILLTEST_DIR/release`. The kill test SIGKILLs the daemon while it waits.

`fencetest.pause` lets the fencing test hold chosen daemons inside an iteration: each daemon gets
its own `MANA_FENCETEST_NAME` and, when it is to be held, `MANA_FENCETEST_HOLD` (a file name in that folder).
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


class PauseInput(ToolInput):
    label: str = "pause"


class PauseOutput(ToolOutput):
    paused: bool


async def pause(inp: PauseInput, ctx: ToolContext) -> PauseOutput:
    """Marks `$MANA_KILLTEST_DIR/entered-$MANA_FENCETEST_NAME`, then blocks while the file
    `$MANA_KILLTEST_DIR/$MANA_FENCETEST_HOLD` exists (when set), then takes a short while like real work."""
    folder = signal_dir()
    name = os.environ.get("MANA_FENCETEST_NAME", "daemon")
    (folder / f"entered-{name}").write_text(inp.label, encoding="utf-8")
    hold = os.environ.get("MANA_FENCETEST_HOLD")
    held = folder / hold if hold else None
    while held is not None and held.exists():  # noqa: ASYNC110 - a file is the cross-process signal
        await asyncio.sleep(POLL_SECONDS)
    await asyncio.sleep(WORK_SECONDS)
    return PauseOutput(paused=True)


WORK_SECONDS = 0.1

PAUSE = ToolSpec(
    name="fencetest.pause",
    title="Pause for the test",
    description="Test only: marks that this daemon is inside an iteration and holds it there.",
    module="fencetest",
    scope="user-space",
    policy_hint="read",
    input=PauseInput,
    output=PauseOutput,
    handler=pause,
)

TOOLS = (WAIT, PAUSE)
