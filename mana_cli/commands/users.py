"""`mana users create|list|set-tier|set-password`."""

from __future__ import annotations

import argparse
import getpass
import sys
from typing import Any

from mana_cli.commands.common import print_table
from mana_cli.config import Settings
from mana_cli.runtime import open_runtime
from tool_registry.errors import ValidationFailed
from tool_registry.store.accounts import TIERS, USER_KINDS


def register(sub: Any) -> None:
    p = sub.add_parser("users", help="manage users")
    s = p.add_subparsers(dest="users_command", metavar="ACTION", required=True)
    c = s.add_parser("create", help="create a user (and their personal space)")
    c.add_argument("--email", required=True)
    c.add_argument("--name")
    c.add_argument("--password", help="omit to be prompted (when a terminal is attached)")
    c.add_argument("--kind", choices=[k for k in USER_KINDS if k != "persona"], default="human")
    c.set_defaults(handler=create)
    ls = s.add_parser("list", help="list users")
    ls.add_argument("--kind", choices=USER_KINDS)
    ls.set_defaults(handler=list_users)
    t = s.add_parser("set-tier", help="change a user's tier (admin)")
    t.add_argument("--email", required=True)
    t.add_argument("--tier", required=True, choices=TIERS)
    t.set_defaults(handler=set_tier)
    pw = s.add_parser("set-password", help="set a user's password")
    pw.add_argument("--email", required=True)
    pw.add_argument("--password", help="omit to be prompted")
    pw.set_defaults(handler=set_password)


def read_password(given: str | None, *, confirm: bool = True) -> str | None:
    """The given password, or a prompted one when a terminal is attached, else None."""
    if given is not None:
        return given
    if not sys.stdin.isatty():
        return None
    first = getpass.getpass("password: ")
    if confirm and getpass.getpass("repeat password: ") != first:
        raise ValidationFailed("passwords did not match")
    return first


async def create(args: argparse.Namespace, settings: Settings) -> int:
    password = read_password(args.password)
    async with open_runtime(settings) as rt:
        user = await rt.accounts.create_user(
            args.email, name=args.name, kind=args.kind, password=password
        )
        space = await rt.accounts.personal_space(user.id)
    note = "" if password else " (no password set: it cannot log in over HTTP)"
    print(f"created user {user.email} ({user.id}), personal space {space.slug}{note}")
    return 0


async def list_users(args: argparse.Namespace, settings: Settings) -> int:
    async with open_runtime(settings) as rt:
        users = await rt.accounts.list_users(args.kind)
    print_table(
        [[u.email, u.name, u.kind, u.tier, u.id] for u in users],
        ["EMAIL", "NAME", "KIND", "TIER", "ID"],
    )
    return 0


async def set_tier(args: argparse.Namespace, settings: Settings) -> int:
    async with open_runtime(settings) as rt:
        user = await rt.accounts.require_user(args.email)
        await rt.accounts.set_tier(user.id, args.tier)
    print(f"{user.email} is now on tier {args.tier}")
    return 0


async def set_password(args: argparse.Namespace, settings: Settings) -> int:
    password = read_password(args.password)
    if password is None:
        raise ValidationFailed("give --password or run in a terminal to be prompted")
    async with open_runtime(settings) as rt:
        user = await rt.accounts.require_user(args.email)
        await rt.accounts.set_password(user.id, password)
    print(f"password set for {user.email}")
    return 0
