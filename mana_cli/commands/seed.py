"""`mana seed demo`: an idempotent demo dataset."""

from __future__ import annotations

import argparse
from typing import Any

from mana_cli.config import Settings
from mana_cli.demo import DEMO_EMAIL, seed_demo
from mana_cli.runtime import open_runtime


def register(sub: Any) -> None:
    p = sub.add_parser("seed", help="load sample data")
    s = p.add_subparsers(dest="seed_command", metavar="DATASET", required=True)
    d = s.add_parser("demo", help=f"the demo user {DEMO_EMAIL} with a personal and a brand space")
    d.set_defaults(handler=demo)


async def demo(args: argparse.Namespace, settings: Settings) -> int:
    async with open_runtime(settings) as rt:
        report = await seed_demo(rt)
    print(report.summary())
    return 0
