"""`mana tools list|export`: the registry's public surface."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from mana_cli.commands.common import print_table
from mana_cli.config import Settings
from mana_cli.runtime import build_runtime_registry
from tool_registry.catalog import TOOLS_CATALOG, render_catalogs
from tool_registry.space_types import SpaceTypeCatalog
from tool_registry.store.accounts import SPACE_TYPES


def register(sub: Any) -> None:
    p = sub.add_parser("tools", help="list or export the tool registry")
    s = p.add_subparsers(dest="tools_command", metavar="ACTION", required=True)
    ls = s.add_parser("list", help="list tools")
    ls.add_argument(
        "--space-type", choices=SPACE_TYPES, help="only tools exposable in a space of this type"
    )
    ls.add_argument("--json", action="store_true", help="print the full descriptions as JSON")
    ls.set_defaults(handler=list_tools)
    ex = s.add_parser(
        "export", help="write catalogs/tools.json (and resources.json, prompts.json beside it)"
    )
    ex.add_argument("--output", type=Path, default=TOOLS_CATALOG)
    ex.add_argument(
        "--check",
        action="store_true",
        help="exit 1 if the file differs from the registry instead of writing",
    )
    ex.set_defaults(handler=export)


async def list_tools(args: argparse.Namespace, settings: Settings) -> int:
    registry = build_runtime_registry(settings.environ)
    specs = registry.all()
    if args.space_type:
        catalog = SpaceTypeCatalog.load()
        specs = [s for s in registry.exposable() if catalog.allows(args.space_type, s.module)]
    if args.json:
        json.dump([s.describe() for s in specs], sys.stdout, indent=2)
        print()
        return 0
    print_table(
        [[s.name, s.policy_hint, s.scope, ",".join(s.requires) or "-", s.title] for s in specs],
        ["TOOL", "HINT", "SCOPE", "REQUIRES", "TITLE"],
    )
    return 0


async def export(args: argparse.Namespace, settings: Settings) -> int:
    # The checked-in catalogs are the public surface: no MANA_EXTRA_TOOLS plugins.
    catalogs = render_catalogs(build_runtime_registry(), args.output)
    if args.check:
        stale = [
            path
            for path, text in catalogs.items()
            if (path.read_text(encoding="utf-8") if path.exists() else "") != text
        ]
        for path in stale:
            print(f"{path} is out of date; run `mana tools export`", file=sys.stderr)
        if stale:
            return 1
        for path in catalogs:
            print(f"{path} is up to date")
        return 0
    for path, text in catalogs.items():
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path} ({text.count(chr(10))} lines)")
    return 0
