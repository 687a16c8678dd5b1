"""Sub-command groups, loaded lazily: only the group being run is imported, so `mana serve
--stdio` (started by Claude Desktop) does not pay for the agent loop, plotting or the daemon.

Each module has `register(subparsers)` and handlers `async (args, settings) -> exit code`.
Add a group with one line below: name → (module, one-line help for `mana --help`).
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

COMMAND_GROUPS: dict[str, tuple[str, str]] = {
    "init": ("mana_cli.commands.init", "create the data directory and database"),
    "users": ("mana_cli.commands.users", "manage users"),
    "spaces": ("mana_cli.commands.spaces", "manage spaces and memberships"),
    "seed": ("mana_cli.commands.seed", "load sample data"),
    "tools": ("mana_cli.commands.tools", "list or export the tool registry"),
    "call": ("mana_cli.commands.call", "call a tool through the invocation pipeline"),
    "run": ("mana_cli.commands.run", "initialise, seed the demo on first run, and serve MCP"),
    "serve": ("mana_cli.commands.serve", "run the MCP server (stdio or Streamable HTTP)"),
    "token": ("mana_cli.commands.token", "issue bearer tokens and rotate the signing key"),
    "connections": ("mana_cli.commands.connections", "list or revoke remote client sign-ins"),
    "policy": ("mana_cli.commands.policy", "show or change a space's destructive-tool allowlist"),
    "agent": ("mana_cli.commands.agent", "run an agent against your data"),
    "agents": ("mana_cli.commands.agents", "manage the agents of a space"),
    "missions": ("mana_cli.commands.missions_cmd", "create, inspect and run missions"),
    "proposals": ("mana_cli.commands.proposals", "list, approve or reject calls agents proposed"),
    "daemon": ("mana_cli.commands.daemon", "run due missions on their cadence"),
    "personas": ("mana_cli.commands.personas", "simulated users: seed, run, report ratings"),
    "db": ("mana_cli.commands.db", "copy a database between SQLite and PostgreSQL"),
}


def load(name: str) -> ModuleType:
    return importlib.import_module(COMMAND_GROUPS[name][0])


def register(sub: Any, selected: str | None) -> None:
    """Fully register the selected group; the others only as named entries with their help."""
    for name, (_, summary) in COMMAND_GROUPS.items():
        if name == selected:
            load(name).register(sub)
        else:
            sub.add_parser(name, help=summary)
