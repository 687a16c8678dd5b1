"""`mana call TOOL --as EMAIL [--space ID|SLUG] --args JSON`: one call through the pipeline."""

from __future__ import annotations

import argparse
from typing import Any

from mana_cli.commands.common import acting_user, add_identity, print_json
from mana_cli.config import Settings
from mana_cli.runtime import open_runtime
from tool_registry.context import CallContext
from tool_registry.errors import ValidationFailed
from tool_registry.json_input import JsonInputError, loads_json


def register(sub: Any) -> None:
    p = sub.add_parser("call", help="call a tool through the invocation pipeline")
    p.add_argument("tool", metavar="TOOL", help="tool name, e.g. habits.list")
    add_identity(p)
    p.add_argument("--args", default="{}", metavar="JSON", help="arguments as a JSON object")
    p.add_argument("--idempotency-key", help="retrying with the same key returns the first result")
    p.set_defaults(handler=call)


def parse_args_json(text: str) -> dict[str, Any]:
    try:
        value = loads_json(text)
    except JsonInputError as exc:
        raise ValidationFailed(f"--args: {exc}") from None
    if not isinstance(value, dict):
        raise ValidationFailed('--args must be a JSON object, e.g. \'{"name": "Walk"}\'')
    return value


async def call(args: argparse.Namespace, settings: Settings) -> int:
    arguments = parse_args_json(args.args)
    async with open_runtime(settings) as rt:
        user = await acting_user(rt, args)
        outcome = await rt.pipeline.invoke(
            args.tool,
            arguments,
            CallContext(
                user_id=user.id,
                space=args.space,
                invoker="cli",
                idempotency_key=args.idempotency_key,
            ),
        )
    print_json(outcome.public())
    return 0 if outcome.ok else 1
