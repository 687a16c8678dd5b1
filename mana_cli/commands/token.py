"""`mana token issue --as EMAIL [--ttl 1h]` and `mana token rotate-key`: local bearer tokens for
the HTTP MCP server (signed with the Ed25519 key in the data directory)."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from typing import Any

from mana_cli.commands.users import read_password
from mana_cli.config import Settings
from mana_cli.runtime import open_runtime
from tool_registry.errors import ManaError, ValidationFailed


def register(sub: Any) -> None:
    p = sub.add_parser("token", help="issue bearer tokens and rotate the signing key")
    s = p.add_subparsers(dest="token_command", metavar="ACTION", required=True)
    i = s.add_parser(
        "issue",
        help="issue a token for a user (checks the user's password)",
        description="Prints only the token on stdout, so TOKEN=$(mana token issue ...) works.",
    )
    i.add_argument("--as", dest="as_email", required=True, metavar="EMAIL")
    i.add_argument("--ttl", default="1h", help="lifetime, e.g. 15m, 1h, 7d (default 1h)")
    pw = i.add_mutually_exclusive_group()
    pw.add_argument("--password", help="the user's password (omit to be prompted)")
    pw.add_argument(
        "--password-stdin", action="store_true", help="read the password from stdin (one line)"
    )
    i.set_defaults(handler=issue)
    r = s.add_parser(
        "rotate-key",
        help="start signing with a new key; the old public key stays published until its "
        "tokens have expired",
    )
    r.set_defaults(handler=rotate_key)


def _local_only(settings: Settings) -> None:
    if settings.jwks_url:
        raise ValidationFailed(
            "MANA_JWKS_URL is set: tokens come from that auth server, not from local keys"
        )


async def issue(args: argparse.Namespace, settings: Settings) -> int:
    from mana_auth import KeyStore, TokenIssuer, parse_duration
    from mana_auth.tokens import LOCAL_ISSUER

    _local_only(settings)
    try:
        ttl = parse_duration(args.ttl)
    except ValueError as exc:
        raise ValidationFailed(f"--ttl: {exc}") from None
    if args.password_stdin:
        password: str | None = sys.stdin.readline().rstrip("\r\n")
    else:
        password = read_password(args.password, confirm=False)
    if not password:
        raise ValidationFailed("give --password, --password-stdin, or run in a terminal")
    keys = KeyStore(settings.data_dir)
    if ttl > keys.max_token_ttl:
        raise ValidationFailed(f"--ttl must be at most {keys.max_token_ttl.days}d")
    async with open_runtime(settings) as rt:
        user = await rt.accounts.check_password(args.as_email, password)
    if user is None:
        raise ManaError("email or password is wrong", reason="bad-credentials")
    issuer = TokenIssuer(
        keys, audience=settings.jwt_audience, issuer=settings.jwt_issuer or LOCAL_ISSUER
    )
    issued = issuer.issue(user.id, email=user.email, ttl=ttl)
    print(issued.token, flush=True)
    print(
        f"token for {user.email}, key {issued.kid}, expires {issued.expires_at:%Y-%m-%d %H:%M} UTC",
        file=sys.stderr,
    )
    return 0


async def rotate_key(args: argparse.Namespace, settings: Settings) -> int:
    from mana_auth import KeyStore

    _local_only(settings)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    keys = KeyStore(settings.data_dir)
    new, retired = keys.rotate()
    print(f"new signing key {new.kid}")
    if retired is not None:
        until = retired.published_until(keys.max_token_ttl) or datetime.now(UTC)
        print(
            f"retired key {retired.kid}: its public key stays in the JWKS until "
            f"{until:%Y-%m-%d %H:%M} UTC, when every token it signed has expired"
        )
    return 0
