"""`mana daemon [--once] [--tick 60s] [--concurrency N]`: run due missions on their cadence.

    mana daemon --llm anthropic --concurrency 8 --port 3070
    mana daemon --once --llm scripted:examples/mission-demo.json

Serves `/health` and `/metrics` on 127.0.0.1 (`--port`, default `MANA_DAEMON_PORT` or 3070;
`--port 0` picks a free port; `--no-http` turns it off; `--once` never serves). SIGTERM or
Ctrl-C: stop claiming, let running iterations finish within `--drain-timeout`, stop the rest
(they are due again at once), release the leases, exit 0.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import signal
from typing import Any

from mana_cli.commands.common import print_json
from mana_cli.commands.missions_cmd import add_llm, build_runner, mission_settings
from mana_cli.config import Settings
from mana_cli.runtime import open_runtime
from mana_http.session_state import announcing_changes
from missions.daemon import Daemon
from missions.llm import llm_setup
from missions.metrics import MissionMetrics
from missions.settings import DaemonSettings, format_duration, parse_duration


def register(sub: Any) -> None:
    p = sub.add_parser(
        "daemon",
        help="run due missions on their cadence",
        description=(
            "Select due missions every tick, claim them with leases in the database, run them "
            "through the agent loop (up to --concurrency at once) and schedule the next run."
        ),
    )
    p.add_argument("--once", action="store_true", help="run what is due now, then exit")
    p.add_argument("--tick", metavar="DURATION", help="time between ticks (default 60s)")
    p.add_argument("--concurrency", type=int, metavar="N", help="iterations at once (default 4)")
    p.add_argument("--port", type=int, metavar="PORT", help="/health and /metrics port (3070)")
    p.add_argument("--no-http", action="store_true", help="do not serve /health and /metrics")
    p.add_argument("--lease", metavar="DURATION", help="lease time without renewal (default 2m)")
    p.add_argument(
        "--drain-timeout",
        metavar="DURATION",
        help="on SIGTERM, how long running iterations may take to finish (default 30s)",
    )
    add_llm(p)
    p.add_argument("--json", action="store_true", help="with --once: print the summary as JSON")
    p.set_defaults(handler=daemon)


def daemon_settings(args: argparse.Namespace, settings: Settings) -> DaemonSettings:
    base = DaemonSettings.from_env(settings.environ)
    changes: dict[str, Any] = {}
    if args.tick:
        changes["tick"] = parse_duration(args.tick, name="--tick")
    if args.concurrency is not None:
        changes["concurrency"] = args.concurrency
    if args.port is not None:
        changes["port"] = args.port
    if args.no_http or args.once:
        changes["port"] = None
    if args.drain_timeout:
        changes["drain_timeout"] = parse_duration(args.drain_timeout, name="--drain-timeout")
    return dataclasses.replace(base, **changes)


async def daemon(args: argparse.Namespace, settings: Settings) -> int:
    config = daemon_settings(args, settings)
    llm = llm_setup(args.llm, settings.environ)
    try:
        # subscribers (on any server replica) hear of the resources missions change
        async with open_runtime(settings) as rt, announcing_changes(rt.pipeline):
            run_settings = mission_settings(rt, args)
            if args.lease:
                run_settings = dataclasses.replace(
                    run_settings, lease=parse_duration(args.lease, name="--lease")
                )
            metrics = MissionMetrics()
            runner = build_runner(rt, llm, run_settings, metrics=metrics)
            worker = Daemon(runner, config, metrics=metrics, clock=rt.clock)
            if args.once:
                summary = await worker.run_once()
                if args.json:
                    print_json(summary.to_json())
                else:
                    print(summary.text())
                return 0
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, worker.request_stop)
            print(
                f"mana daemon {worker.owner}: tick {format_duration(config.tick)}, concurrency "
                f"{config.concurrency}, model {llm.label}",
                flush=True,
            )

            def announce() -> None:
                if worker.http_port is not None:
                    print(f"health: http://{config.host}:{worker.http_port}/health", flush=True)

            await worker.serve(on_ready=announce)
            return 0
    finally:
        await llm.aclose()
