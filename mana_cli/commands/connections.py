"""`mana connections list|revoke`: the remote clients a user connected through the built-in
OAuth authorization server (one connection per consent: client, space, access), and ending them.

    mana connections list --as ann@example.com [--all] [--json]
    mana connections revoke conn_... --as ann@example.com
    mana connections revoke --all --as ann@example.com

Revoking ends the connection's refresh tokens at once and its access tokens within seconds on
every server replica (the MCP endpoint checks the connection of each such token); the client
has to ask the user to sign in and consent again.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import Any

from mana_cli.commands.common import acting_user, add_identity, print_json, print_table
from mana_cli.config import Settings
from mana_cli.runtime import Runtime, open_runtime
from mana_oauth.store import Connection, OAuthStore
from tool_registry.errors import NotFoundError, ValidationFailed


def register(sub: Any) -> None:
    p = sub.add_parser("connections", help="list or revoke a user's connected remote clients")
    s = p.add_subparsers(dest="connections_command", metavar="ACTION", required=True)
    ls = s.add_parser("list", help="the clients --as connected (OAuth sign-in), live ones")
    add_identity(ls, space=False)
    ls.add_argument("--all", action="store_true", help="include revoked connections")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(handler=list_connections)
    rv = s.add_parser("revoke", help="end one connection of --as (or --all of them)")
    rv.add_argument("connection", metavar="ID", nargs="?", help="the connection id (conn_...)")
    add_identity(rv, space=False)
    rv.add_argument("--all", action="store_true", help="every live connection of --as")
    rv.set_defaults(handler=revoke)


def _time(at: float | None) -> str:
    if at is None:
        return "-"
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M UTC")


def _iso(at: float | None) -> str | None:
    if at is None:
        return None
    return datetime.fromtimestamp(at, UTC).isoformat().replace("+00:00", "Z")


async def _slugs(rt: Runtime, connections: list[Connection]) -> dict[str, str]:
    """Space id -> slug of the spaces the connections act in (the id if the space is gone)."""
    slugs: dict[str, str] = {}
    for space_id in dict.fromkeys(c.space_id for c in connections):
        space = await rt.accounts.resolve_space(space_id)
        slugs[space_id] = space.slug if space is not None else space_id
    return slugs


def _json(connection: Connection, slug: str) -> dict[str, Any]:
    return {
        "id": connection.gid,
        "client_name": connection.client_name,
        "client_id": connection.client_id,
        "space_id": connection.space_id,
        "space": slug,
        "scopes": list(connection.scopes),
        "created_at": _iso(connection.created_at),
        "last_used_at": _iso(connection.last_used_at),
        "revoked_at": _iso(connection.revoked_at),
    }


async def list_connections(args: argparse.Namespace, settings: Settings) -> int:
    async with open_runtime(settings) as rt:
        user = await acting_user(rt, args)
        connections = await OAuthStore(rt.db).connections_of(user.id, include_revoked=args.all)
        slugs = await _slugs(rt, connections)
    if args.json:
        print_json([_json(c, slugs[c.space_id]) for c in connections])
        return 0
    if not connections:
        print(f"no {'' if args.all else 'live '}connections of {user.email}")
        return 0
    headers = ["ID", "CLIENT", "SPACE", "ACCESS", "CREATED", "LAST USED"]
    rows = [
        [
            c.gid,
            f"{c.client_name} ({c.client_id})",
            slugs[c.space_id],
            " ".join(c.scopes),
            _time(c.created_at),
            _time(c.last_used_at),
        ]
        for c in connections
    ]
    if args.all:
        headers.append("REVOKED")
        for row, c in zip(rows, connections, strict=True):
            row.append(_time(c.revoked_at))
    print_table(rows, headers)
    return 0


async def revoke(args: argparse.Namespace, settings: Settings) -> int:
    if args.all == (args.connection is not None):
        raise ValidationFailed("name one connection ID or give --all (not both)")
    async with open_runtime(settings) as rt:
        user = await acting_user(rt, args)
        store = OAuthStore(rt.db)
        if args.all:
            revoked = await store.revoke_connections_of(user.id)
            for c in revoked:
                print(f"revoked {c.gid}: {c.client_name} ({c.client_id})")
            print(f"{len(revoked)} connection(s) of {user.email} revoked")
            return 0
        found = await store.revoke_connection_of(user.id, args.connection)
    if found is None:
        raise NotFoundError(f"{user.email} has no connection {args.connection!r}")
    connection, revoked_now = found
    if revoked_now:
        print(f"revoked {connection.gid}: {connection.client_name} ({connection.client_id})")
    else:
        print(f"{connection.gid} was already revoked ({_time(connection.revoked_at)})")
    return 0
