"""`mana policy show|allow|revoke|destructive|audit`: the per-space destructive allowlist and
destructive mode (`deny`, `confirm` or `allow`: what happens to destructive tools not on the
list; see `policy.allowlist`).

Changing the list is a human decision: it is reachable from here (and, later, an authenticated
settings endpoint), never through a tool, MCP or an agent.
"""

from __future__ import annotations

import argparse
from typing import Any

from mana_cli.commands.common import acting_user, add_identity, print_table
from mana_cli.config import Settings
from mana_cli.runtime import Runtime, open_runtime
from policy.allowlist import DestructiveAllowlist
from policy.rules import DESTRUCTIVE_MODES
from policy.settings import PolicySettings


def register(sub: Any) -> None:
    p = sub.add_parser("policy", help="show or change a space's destructive-tool allowlist")
    s = p.add_subparsers(dest="policy_command", metavar="ACTION", required=True)
    show = s.add_parser("show", help="show the space's allowlist and the gate settings")
    add_identity(show)
    show.set_defaults(handler=show_policy)
    allow = s.add_parser(
        "allow",
        help="let agents and clients use destructive tools in the space (owner or admin)",
        description=(
            "Add destructive tools to the space's allowlist. Agents and MCP clients acting in "
            "the space may then delete data with them without asking. Requires --acknowledge."
        ),
    )
    allow.add_argument(
        "tools", nargs="+", metavar="TOOL", help="destructive tool, e.g. notes.delete"
    )
    add_identity(allow)
    allow.add_argument(
        "--acknowledge",
        action="store_true",
        help="confirm that callers in this space may delete data with these tools",
    )
    allow.set_defaults(handler=allow_tools)
    revoke = s.add_parser("revoke", help="remove tools from the space's allowlist (owner or admin)")
    revoke.add_argument("tools", nargs="+", metavar="TOOL")
    add_identity(revoke)
    revoke.set_defaults(handler=revoke_tools)
    destructive = s.add_parser(
        "destructive",
        help="set what happens to destructive tools not on the allowlist (owner or admin)",
        description=(
            "deny (default): such calls are denied. confirm: a person's call (an MCP client) "
            "runs once the user confirms it in their client; agents stay denied. allow: they "
            "run for every caller, agents included, as if allowlisted (requires --acknowledge)."
        ),
    )
    destructive.add_argument("mode", choices=DESTRUCTIVE_MODES)
    add_identity(destructive)
    destructive.add_argument(
        "--acknowledge",
        action="store_true",
        help="confirm that callers in this space may delete data without asking (mode allow)",
    )
    destructive.set_defaults(handler=set_destructive_mode)
    audit = s.add_parser(
        "audit", help="list changes to the space's allowlist and destructive mode, newest first"
    )
    add_identity(audit)
    audit.add_argument("--limit", type=int, default=100, help="at most this many rows (100)")
    audit.set_defaults(handler=show_audit)


def _allowlist(rt: Runtime) -> DestructiveAllowlist:
    if rt.policy is not None and isinstance(rt.policy.allowlist, DestructiveAllowlist):
        return rt.policy.allowlist
    return DestructiveAllowlist(rt.db, rt.registry, accounts=rt.accounts, clock=rt.clock)


async def show_policy(args: argparse.Namespace, settings: Settings) -> int:
    async with open_runtime(settings) as rt:
        user = await acting_user(rt, args)
        view = await _allowlist(rt).show(user.id, args.space)
        gate_settings = (
            rt.policy.settings if rt.policy else PolicySettings.from_env(settings.environ)
        )
    space = view.space
    print(f"space {space.slug} ({space.id}, {space.type}); {user.email} is {view.role}")
    print(f"gate: {gate_settings.describe()}")
    print(f"destructive mode: {view.mode} (for destructive tools not on the allowlist)")
    if view.allowed:
        print(f"destructive tools allowed here ({len(view.allowed)}):")
        print_table(
            [[a.tool, a.added_by_email or a.added_by or "", a.added_at] for a in view.allowed],
            ["TOOL", "ADDED BY", "ADDED AT"],
        )
    else:
        print("destructive tools allowed here: none")
    if view.not_allowed:
        print(f"denied here (not allowed): {', '.join(view.not_allowed)}")
    if not view.can_change:
        print("only the space's owner or an admin can change this list")
    return 0


async def allow_tools(args: argparse.Namespace, settings: Settings) -> int:
    async with open_runtime(settings) as rt:
        user = await acting_user(rt, args)
        change = await _allowlist(rt).allow(
            user.id, args.space, args.tools, acknowledge=args.acknowledge
        )
    if change.changed:
        print(f"allowed in {change.space.slug}: {', '.join(change.changed)}")
    if change.unchanged:
        print(f"already allowed in {change.space.slug}: {', '.join(change.unchanged)}")
    return 0


async def revoke_tools(args: argparse.Namespace, settings: Settings) -> int:
    async with open_runtime(settings) as rt:
        user = await acting_user(rt, args)
        change = await _allowlist(rt).revoke(user.id, args.space, args.tools)
    if change.changed:
        print(f"revoked in {change.space.slug}: {', '.join(change.changed)}")
    if change.unchanged:
        print(f"not on the list of {change.space.slug}: {', '.join(change.unchanged)}")
    return 0


async def set_destructive_mode(args: argparse.Namespace, settings: Settings) -> int:
    async with open_runtime(settings) as rt:
        user = await acting_user(rt, args)
        change = await _allowlist(rt).set_mode(
            user.id, args.space, args.mode, acknowledge=args.acknowledge
        )
    if change.changed:
        print(f"destructive mode of {change.space.slug}: {change.previous} -> {change.mode}")
    else:
        print(f"destructive mode of {change.space.slug} is already {change.mode}")
    return 0


async def show_audit(args: argparse.Namespace, settings: Settings) -> int:
    async with open_runtime(settings) as rt:
        user = await acting_user(rt, args)
        entries = await _allowlist(rt).audit(user.id, args.space, limit=args.limit)
    if not entries:
        print("no changes to this space's destructive allowlist or mode")
        return 0
    print_table(
        [
            [e.at, e.action, e.tool or f"(mode {e.mode})", e.actor_email or e.actor_id]
            for e in entries
        ],
        ["AT", "ACTION", "TOOL", "ACTOR"],
    )
    return 0
