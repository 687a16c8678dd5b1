"""Sub-command groups. Each module has `register(subparsers)`; handlers are
`async (args, settings) -> exit code`. Append a new group to `COMMAND_GROUPS`."""

from __future__ import annotations

from types import ModuleType

from mana_cli.commands import agent, call, init, policy, run, seed, spaces, tools, users

COMMAND_GROUPS: tuple[ModuleType, ...] = (
    init,
    users,
    spaces,
    seed,
    tools,
    call,
    run,
    policy,
    agent,
)
