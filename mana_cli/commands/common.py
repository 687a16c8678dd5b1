"""Helpers shared by sub-commands: identity flags, JSON output."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from mana_cli.runtime import Runtime
from tool_registry.store import User


def add_identity(parser: argparse.ArgumentParser, *, space: bool = True) -> None:
    parser.add_argument(
        "--as", dest="as_email", required=True, metavar="EMAIL", help="act as this user"
    )
    if space:
        parser.add_argument(
            "--space",
            metavar="ID|SLUG",
            help="space id or slug (default: the user's personal space)",
        )


async def acting_user(rt: Runtime, args: argparse.Namespace) -> User:
    return await rt.accounts.require_user(args.as_email)


def print_json(value: Any) -> None:
    json.dump(value, sys.stdout, indent=2, ensure_ascii=False, default=str)
    sys.stdout.write("\n")


def print_table(rows: list[list[str]], headers: list[str]) -> None:
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)
    ]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    print(line.rstrip())
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
