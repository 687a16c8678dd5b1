"""`mana personas seed|cleanup|list|show|run|report`: simulated users who use Mana every day
through the MCP server and rate the modules they used (catalog: `catalogs/personas.json`)."""

from __future__ import annotations

import argparse
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

from mana_cli.commands.common import print_table
from mana_cli.config import Settings
from mana_cli.runtime import Runtime, open_runtime
from personas.catalog import PERSONAS_CATALOG, PersonaCatalog, load_catalog
from personas.llm import llm_factory
from personas.passwords import persona_secret
from personas.report import build_report, period_text, table, write_chart
from personas.runner import HttpConnector, PersonaRunner, RunnerConfig, TickResult
from personas.schedule import is_due
from personas.seed import Seeder, cleanup
from personas.store import PersonaStore
from tool_registry.errors import NotFoundError, ValidationFailed


def register(sub: Any) -> None:
    p = sub.add_parser(
        "personas",
        help="simulated users: seed, run over MCP, report their ratings",
        description=(
            "Personas are simulated users (catalogs/personas.json) who use Mana through the MCP "
            "server like a person with Claude Desktop would, and rate the modules they used. "
            "Passwords are derived from PERSONA_SEED_SECRET (a built-in development secret "
            "otherwise, refused with MANA_ENV=production)."
        ),
    )
    s = p.add_subparsers(dest="personas_command", metavar="ACTION", required=True)

    seed = s.add_parser("seed", help="create or update the catalog's personas and shared spaces")
    _catalog_flag(seed)
    seed.add_argument(
        "--dry-run", action="store_true", help="list what would change, change nothing"
    )
    seed.set_defaults(handler=seed_cmd)

    clean = s.add_parser("cleanup", help="delete persona users and all their data")
    _catalog_flag(clean)
    clean.add_argument(
        "--email",
        action="append",
        default=[],
        metavar="EMAIL",
        help="delete only this persona (repeatable); a non-persona email is refused",
    )
    clean.add_argument("--dry-run", action="store_true", help="list what would be deleted")
    clean.set_defaults(handler=cleanup_cmd)

    ls = s.add_parser("list", help="personas with their cadence and actions over 7 days")
    ls.set_defaults(handler=list_cmd)

    show = s.add_parser("show", help="one persona: last 20 actions, average rating per module")
    show.add_argument("email", metavar="EMAIL")
    show.set_defaults(handler=show_cmd)

    run = s.add_parser(
        "run",
        help="run a tick for every due persona against a running MCP server",
        description=(
            "For each due persona: log in (POST /auth/token), open an MCP session over HTTP in "
            "its personal space or a shared space (chosen by its module mix), spend a short day "
            "in the app, then rate the modules used. --llm scripted:PATH replays scripts: PATH "
            "is a directory with persona-<name>.json per persona (e.g. persona-maya-chen.json "
            "for maya.chen@mana.test), or a JSON file mapping persona email to a script or a "
            "script path. Personas without a script are skipped."
        ),
    )
    run.add_argument("--once", action="store_true", help="one pass over due personas, then exit")
    run.add_argument("--concurrency", type=int, default=2, help="personas at a time (default 2)")
    run.add_argument(
        "--mcp-url", metavar="URL", help="MCP endpoint (default http://HOST:PORT/mcp from settings)"
    )
    run.add_argument(
        "--llm",
        default="anthropic",
        metavar="anthropic|scripted:PATH",
        help="the model (default anthropic: needs ANTHROPIC_API_KEY)",
    )
    run.add_argument(
        "--persona",
        action="append",
        default=[],
        metavar="EMAIL",
        help="run only this persona (repeatable)",
    )
    run.add_argument(
        "--timeout",
        type=float,
        default=600.0,
        metavar="SECONDS",
        help="per-persona tick timeout (default 600)",
    )
    run.set_defaults(handler=run_cmd)

    rep = s.add_parser("report", help="average rating per module, change, action counts (+ PNG)")
    rep.add_argument("--days", type=int, default=7, help="period length in days (default 7)")
    rep.add_argument("--output", type=Path, metavar="PATH", help="also write a PNG bar chart here")
    rep.set_defaults(handler=report_cmd)


def _catalog_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--catalog",
        type=Path,
        default=PERSONAS_CATALOG,
        metavar="PATH",
        help="persona catalog (default catalogs/personas.json)",
    )


def _catalog(rt: Runtime, path: Path) -> PersonaCatalog:
    return load_catalog(rt.registry, path)


def _warn(lines: list[str]) -> None:
    for line in lines:
        print(f"warning: {line}", file=sys.stderr)


async def seed_cmd(args: argparse.Namespace, settings: Settings) -> int:
    secret = persona_secret(settings.environ, env=settings.env)
    async with open_runtime(settings) as rt:
        catalog = _catalog(rt, args.catalog)
        seeder = Seeder(rt.db, rt.accounts, secret, rt.clock)
        plan = await seeder.seed(catalog, dry_run=args.dry_run)
    _warn(plan.warnings)
    if plan.empty:
        print(
            f"nothing to change: {len(catalog.personas)} personas and "
            f"{len(catalog.shared_spaces)} shared spaces are up to date"
        )
        return 0
    for line in plan.lines():
        print(line)
    verb = "would make" if args.dry_run else "made"
    print(f"{verb} {len(plan.changes)} change(s) (passwords from the {secret.source})")
    return 0


async def cleanup_cmd(args: argparse.Namespace, settings: Settings) -> int:
    async with open_runtime(settings) as rt:
        catalog = _catalog(rt, args.catalog)
        result = await cleanup(
            rt.db, rt.accounts, emails=args.email, catalog=catalog, dry_run=args.dry_run
        )
    _warn(result.warnings)
    for line in result.lines():
        print(line)
    return 0


async def list_cmd(args: argparse.Namespace, settings: Settings) -> int:
    async with open_runtime(settings) as rt:
        store = PersonaStore(rt.db, rt.clock)
        now = rt.clock.now()
        personas = await store.personas()
        counts = await store.action_counts(now - timedelta(days=7))
    rows = []
    for p in personas:
        due = is_due(p.cadence, p.last_active, now)
        rows.append(
            [
                p.email,
                p.name,
                p.archetype,
                p.cadence,
                p.last_active_at[:16].replace("T", " ") if p.last_active_at else "never",
                "yes" if due.due else "no",
                str(counts.get(p.user_id, 0)),
            ]
        )
    if not rows:
        print("no personas yet: run `mana personas seed`")
        return 0
    print_table(rows, ["EMAIL", "NAME", "ARCHETYPE", "CADENCE", "LAST ACTIVE", "DUE", "ACTIONS 7D"])
    return 0


async def show_cmd(args: argparse.Namespace, settings: Settings) -> int:
    async with open_runtime(settings) as rt:
        store = PersonaStore(rt.db, rt.clock)
        persona = await store.persona(args.email)
        if persona is None:
            user = await rt.accounts.user_by_email(args.email)
            if user is not None:
                raise ValidationFailed(f"{user.email} is a {user.kind} user, not a persona")
            raise NotFoundError(f"no persona with email {args.email.strip().lower()}")
        spaces = await rt.accounts.spaces_of(persona.user_id)
        actions = await store.actions(persona.user_id, limit=20)
        ratings = await store.average_ratings(persona.user_id)
        ticks = await store.ticks(persona.user_id, limit=5)
    slugs = {a.space.id: a.space.slug for a in spaces}
    print(f"{persona.name} <{persona.email}>  {persona.archetype}, {persona.cadence}")
    print(f"last active: {persona.last_active_at or 'never'}")
    mix = ", ".join(
        f"{m} {w:.2f}" for m, w in sorted(persona.module_mix.items(), key=lambda i: -i[1])
    )
    print(f"module mix: {mix}")
    print("spaces: " + ", ".join(f"{a.space.slug} ({a.space.type}, {a.role})" for a in spaces))
    print()
    print("average rating per module:")
    if ratings:
        print_table(
            [[m, f"{avg:.2f}", str(n)] for m, (avg, n) in ratings.items()],
            ["MODULE", "AVG", "RATINGS"],
        )
    else:
        print("  (no ratings yet)")
    print()
    print(f"last {len(actions)} action(s):")
    if actions:
        print_table(
            [
                [
                    a.at[:19].replace("T", " "),
                    a.tick_id,
                    slugs.get(a.space_id or "", a.space_id or "-"),
                    a.tool,
                    a.result,
                    f"{a.latency_ms:.0f}",
                    (a.error_message or "")[:60],
                ]
                for a in actions
            ],
            ["AT", "TICK", "SPACE", "TOOL", "RESULT", "MS", "ERROR"],
        )
    else:
        print("  (no actions yet)")
    if ticks:
        print()
        print("recent ticks:")
        print_table(
            [
                [
                    t["tick_id"],
                    t["status"],
                    slugs.get(t["space_id"] or "", t["space_id"] or "-"),
                    t["focus_module"] or "-",
                    str(t["calls"]),
                    (t["error"] or "")[:60],
                ]
                for t in ticks
            ],
            ["TICK", "STATUS", "SPACE", "FOCUS", "CALLS", "ERROR"],
        )
    return 0


async def run_cmd(args: argparse.Namespace, settings: Settings) -> int:
    if args.concurrency < 1:
        raise ValidationFailed("--concurrency must be at least 1")
    if args.timeout <= 0:
        raise ValidationFailed("--timeout must be positive")
    secret = persona_secret(settings.environ, env=settings.env)
    choice = llm_factory(args.llm, settings.environ)
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    mcp_url = args.mcp_url or f"http://{host}:{settings.port}/mcp"
    try:
        async with open_runtime(settings) as rt:
            runner = PersonaRunner(
                accounts=rt.accounts,
                store=PersonaStore(rt.db, rt.clock),
                space_types=rt.pipeline.space_types,
                secret=secret,
                connector=HttpConnector(mcp_url),
                llm=choice.factory,
                config=RunnerConfig(
                    concurrency=args.concurrency,
                    tick_timeout=args.timeout,
                    model=choice.model,
                    max_tokens=choice.max_tokens,
                ),
                clock=rt.clock,
            )
            if not args.once:
                await runner.run_forever(args.persona, on_pass=_print_pass)  # until Ctrl-C
                return 0
            results = await runner.run_once(args.persona)
    finally:
        await choice.aclose()
    for r in results:
        print(r.summary())
    ran = [r for r in results if r.status not in ("not-due", "skipped")]
    failed = [r for r in ran if r.status != "ok"]
    print(f"{len(ran)} tick(s) run, {len(failed)} failed or timed out")
    return 1 if failed else 0


def _print_pass(results: list[TickResult]) -> None:
    for r in results:
        if r.status not in ("not-due", "skipped"):
            print(r.summary(), flush=True)


async def report_cmd(args: argparse.Namespace, settings: Settings) -> int:
    if args.days < 1:
        raise ValidationFailed("--days must be at least 1")
    async with open_runtime(settings) as rt:
        report = await build_report(PersonaStore(rt.db, rt.clock), args.days)
    print(f"persona report, last {report.days} day(s): {period_text(report)}")
    if report.empty:
        print("no persona ratings or actions in this period")
    else:
        headers, rows = table(report)
        print_table(rows, headers)
        if report.failed_ratings:
            print(f"{report.failed_ratings} unparsable rating(s) (failed-rating)")
    if args.output is not None:
        path = write_chart(report, args.output)
        print(f"chart written to {path}")
    return 0


__all__ = ["register"]
