"""`mana run`: the main job on the embedded default. Initialises `./.mana/`, seeds the demo on
first run, prints the MCP endpoint, a freshly issued demo token and ready commands for trying it
with an MCP client, then serves Streamable HTTP until stopped (Ctrl-C or SIGTERM)."""

from __future__ import annotations

import argparse
import shlex
from datetime import timedelta
from typing import Any

from mana_cli.commands.serve import endpoint_url, serve_http
from mana_cli.config import Settings
from mana_cli.demo import BRAND_SLUG, DEMO_EMAIL, DEMO_PASSWORD, seed_demo
from mana_cli.runtime import Runtime
from tool_registry.context import CallContext

DEMO_TOKEN_TTL = timedelta(hours=8)


def register(sub: Any) -> None:
    p = sub.add_parser(
        "run", help="initialise, seed the demo on first run, and serve MCP over HTTP"
    )
    p.add_argument("--host", help="bind address (default 127.0.0.1, env MANA_HOST)")
    p.add_argument("--port", type=int, help="port (default 3069, env MANA_PORT)")
    p.set_defaults(handler=run)


async def show_demo(rt: Runtime) -> None:
    """What the demo user sees per space: tool count and usable reference images."""
    user = await rt.accounts.require_user(DEMO_EMAIL)
    for access in await rt.accounts.spaces_of(user.id):
        space = access.space
        tools = rt.pipeline.visible_tools(space.type)
        outcome = await rt.pipeline.invoke(
            "me.listReferenceImages",
            {},
            CallContext(user_id=user.id, space=space.id, invoker="cli"),
        )
        images = (outcome.result or {}).get("images", [])
        print(
            f"  space {space.slug} ({space.type}): {len(tools)} tools, "
            f"{len(images)} reference image(s) usable for AI"
        )


# The Inspector release the README and `mana run` name. Later releases and this one declare
# Node >= 22.19, but this one's CLI works on Node 20 (npm only warns); an unpinned `npx` on
# Node < 22.19 silently falls back to 0.15, which has no `--header`. scripts/inspector-smoke.sh
# defaults to the same version.
INSPECTOR_VERSION = "2.12.0"
INSPECTOR = f"npx -y @modelcontextprotocol/inspector@{INSPECTOR_VERSION} --cli"


def python_snippet(url: str) -> str:
    """A complete script (mcp 2.x, the repository's venv) calling the server as the demo user
    in the brand space with the token in `MANA_TOKEN`."""
    return "\n".join(
        [
            "import asyncio",
            "import os",
            "",
            "import httpx2",
            "from mcp import Client",
            "from mcp.client.streamable_http import streamable_http_client",
            "",
            "",
            "async def main() -> None:",
            '    token = os.environ["MANA_TOKEN"]',
            f'    headers = {{"Authorization": f"Bearer {{token}}", "X-Mana-Space": "{BRAND_SLUG}"}}',
            "    async with httpx2.AsyncClient(headers=headers) as http:",
            f'        async with Client(streamable_http_client("{url}", http_client=http)) as c:',
            '            result = await c.call_tool("me.listReferenceImages", {})',
            "            print(result.structured_content)",
            "",
            "",
            "asyncio.run(main())",
        ]
    )


SNIPPET_START = "----- mana_try.py -----"
SNIPPET_END = "-----------------------"


def ready_text(settings: Settings, token: str) -> str:
    url = endpoint_url(settings)
    auth = '--header "Authorization: Bearer $MANA_TOKEN"'
    return "\n".join(
        [
            "",
            f"MCP endpoint   {url}",
            f"Demo user      {DEMO_EMAIL} (password {DEMO_PASSWORD!r})",
            f"Demo token     valid {int(DEMO_TOKEN_TTL.total_seconds() // 3600)} h "
            f"(new one: mana token issue --as {DEMO_EMAIL})",
            "",
            f"Try it with the MCP Inspector CLI {INSPECTOR_VERSION} (Node 20 or later; pinned "
            "because an unpinned npx on Node < 22.19 picks 0.15, which has no --header), "
            "in another terminal:",
            f"  export MANA_TOKEN={shlex.quote(token)}",
            f"  {INSPECTOR} {url} --transport http {auth} --method tools/list",
            f"  {INSPECTOR} {url} --transport http {auth} --header 'X-Mana-Space: {BRAND_SLUG}' "
            "--method tools/call --tool-name me.listReferenceImages",
            "",
            "Or from Python (mcp 2.x): save this as mana_try.py and run "
            "`.venv/bin/python mana_try.py` with MANA_TOKEN exported as above:",
            SNIPPET_START,
            python_snippet(url),
            SNIPPET_END,
            *_sign_in_lines(settings, url),
            "",
            "Serving; stop with Ctrl-C. Another port: make run PORT=8080 (or MANA_PORT=8080).",
        ]
    )


def _sign_in_lines(settings: Settings, url: str) -> list[str]:
    """How a client that signs in by itself (OAuth: Claude, Cursor, mcp-remote, the Inspector)
    connects; only when this server is its own authorization server."""
    if settings.jwks_url:
        return []
    return [
        "",
        "Or let a client sign in by itself (Claude Desktop through mcp-remote, Cursor, the "
        "Inspector): add",
        f"  {url}",
        f"as a remote MCP server; it opens a browser: sign in as {DEMO_EMAIL}, pick a space and "
        "the access, Allow.",
        f"See or end those connections: mana connections list --as {DEMO_EMAIL}",
    ]


async def run(args: argparse.Namespace, settings: Settings) -> int:
    settings = settings.with_flags(host=args.host, port=args.port)
    token: list[str] = []

    async def prepare(rt: Runtime) -> None:
        from mana_auth import KeyStore, TokenIssuer
        from mana_auth.tokens import LOCAL_ISSUER

        if await rt.accounts.user_by_email(DEMO_EMAIL) is None:
            print((await seed_demo(rt)).summary())
        print(f"database: {settings.database_label}")
        await show_demo(rt)
        if settings.jwks_url:
            token.append("<a token from your Mana auth server>")
            return
        user = await rt.accounts.require_user(DEMO_EMAIL)
        issuer = TokenIssuer(
            KeyStore(settings.data_dir),
            audience=settings.jwt_audience,
            issuer=settings.jwt_issuer or LOCAL_ISSUER,
        )
        token.append(issuer.issue(user.id, email=user.email, ttl=DEMO_TOKEN_TTL).token)

    def ready() -> None:
        print(ready_text(settings, token[0] if token else "<token>"), flush=True)

    return await serve_http(settings, before=prepare, on_ready=ready, create=True)
