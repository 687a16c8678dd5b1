"""`mana spaces create|list|add-member`."""

from __future__ import annotations

import argparse
from typing import Any

from mana_cli.commands.common import acting_user, add_identity, print_table
from mana_cli.config import Settings
from mana_cli.runtime import open_runtime
from tool_registry.errors import PermissionDeniedError
from tool_registry.membership import require_manager
from tool_registry.store.accounts import ROLES, SLUG_RULE, SPACE_TYPES


def register(sub: Any) -> None:
    p = sub.add_parser("spaces", help="manage spaces and memberships")
    s = p.add_subparsers(dest="spaces_command", metavar="ACTION", required=True)
    c = s.add_parser("create", help="create a shared space owned by --as")
    add_identity(c, space=False)
    c.add_argument("--type", required=True, choices=[t for t in SPACE_TYPES if t != "personal"])
    c.add_argument("--name", required=True)
    c.add_argument(
        "--slug", help=f"short name in URLs and --space: {SLUG_RULE} (default: from the name)"
    )
    c.set_defaults(handler=create)
    ls = s.add_parser("list", help="list the spaces of --as")
    add_identity(ls, space=False)
    ls.set_defaults(handler=list_spaces)
    m = s.add_parser("add-member", help="add a member (run as the space's owner or an admin)")
    add_identity(m)
    m.add_argument("--email", required=True, help="the user to add")
    m.add_argument("--role", choices=ROLES, default="member")
    m.set_defaults(handler=add_member)


async def create(args: argparse.Namespace, settings: Settings) -> int:
    async with open_runtime(settings) as rt:
        owner = await acting_user(rt, args)
        space = await rt.accounts.create_space(
            owner.id, type_=args.type, name=args.name, slug=args.slug
        )
    print(f"created {space.type} space {space.slug} ({space.id}) owned by {owner.email}")
    return 0


async def list_spaces(args: argparse.Namespace, settings: Settings) -> int:
    async with open_runtime(settings) as rt:
        user = await acting_user(rt, args)
        rows = await rt.accounts.spaces_of(user.id)
    print_table(
        [[a.space.slug, a.space.type, a.role or "", a.space.name, a.space.id] for a in rows],
        ["SLUG", "TYPE", "ROLE", "NAME", "ID"],
    )
    return 0


async def add_member(args: argparse.Namespace, settings: Settings) -> int:
    if not args.space:
        raise PermissionDeniedError("--space is required: personal spaces have one member")
    async with open_runtime(settings) as rt:
        actor = await acting_user(rt, args)
        access = await require_manager(rt.accounts, actor.id, args.space, "add members")
        space = access.space
        if args.role == "owner" and access.role != "owner":
            raise PermissionDeniedError("only an owner can add another owner")
        member = await rt.accounts.require_user(args.email)
        await rt.accounts.add_member(space.id, member.id, args.role)
    print(f"{member.email} is now {args.role} of {space.slug}")
    return 0
