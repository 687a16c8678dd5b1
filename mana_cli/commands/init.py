"""`mana init`: create the data directory and the database (migrations applied)."""

from __future__ import annotations

import argparse
from typing import Any

from mana_cli.config import Settings
from mana_cli.runtime import open_runtime


def register(sub: Any) -> None:
    p = sub.add_parser("init", help="create the data directory and database")
    p.set_defaults(handler=init)


async def init(args: argparse.Namespace, settings: Settings) -> int:
    async with open_runtime(settings, create=True):
        pass
    print(f"initialised {settings.database_label}")
    return 0
