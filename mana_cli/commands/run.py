"""`mana run`: the main job on the embedded default. Initialises `./.mana/`, seeds the demo on
first run, and shows what the demo user sees per space (tools and reference images)."""

from __future__ import annotations

import argparse
from typing import Any

from mana_cli.config import Settings
from mana_cli.demo import DEMO_EMAIL, seed_demo
from mana_cli.runtime import Runtime, open_runtime
from tool_registry.context import CallContext


def register(sub: Any) -> None:
    p = sub.add_parser("run", help="initialise, seed the demo on first run, and start")
    p.set_defaults(handler=run)


async def show_demo(rt: Runtime) -> None:
    user = await rt.accounts.require_user(DEMO_EMAIL)
    for access in await rt.accounts.spaces_of(user.id):
        space = access.space
        tools = rt.pipeline.visible_tools(space.type)
        print(f"\n== {space.name} [{space.type}, slug {space.slug}] ==")
        print(f"{len(tools)} tools: {', '.join(t.name for t in tools)}")
        outcome = await rt.pipeline.invoke(
            "me.listReferenceImages",
            {},
            CallContext(user_id=user.id, space=space.id, invoker="cli"),
        )
        images = (outcome.result or {}).get("images", [])
        print(f"reference images usable for AI here: {len(images)}")
        for image in images:
            print(f"  - {image['id']}: {image['kind']}, {image['label']}")


async def run(args: argparse.Namespace, settings: Settings) -> int:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    async with open_runtime(settings) as rt:
        if await rt.accounts.user_by_email(DEMO_EMAIL) is None:
            print((await seed_demo(rt)).summary())
        print(f"database: {settings.db_path}")
        await show_demo(rt)
    return 0
