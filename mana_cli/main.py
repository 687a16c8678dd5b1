"""`mana` entry point: global flags, sub-command registration, one error boundary."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from typing import Any

import structlog

from mana_cli import commands
from mana_cli.config import Settings
from tool_registry.errors import ManaError
from tool_registry.logging import configure_logging, stderr_is_json


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"mana: error: {message} (see `{self.prog} --help`)\n")


GLOBAL_OPTIONS_WITH_VALUE = frozenset({"--data-dir", "--db", "--database-url", "--log-level"})


def selected_group(argv: Sequence[str]) -> str | None:
    """The sub-command group named in `argv` (skipping global options and their values)."""
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg in GLOBAL_OPTIONS_WITH_VALUE:
            skip = True
        elif arg.startswith("-"):
            continue
        else:
            return arg if arg in commands.COMMAND_GROUPS else None
    return None


def add_global_options(parser: argparse.ArgumentParser, *, default: object = None) -> None:
    """The options every command takes. Given after a command they override the ones given
    before it (`mana serve --database-url URL` and `mana --database-url URL serve` both work)."""
    parser.add_argument(
        "--data-dir", default=default, help="data directory (default ./.mana, env MANA_DATA_DIR)"
    )
    parser.add_argument(
        "--db", default=default, help="SQLite file (default DATA_DIR/mana.db, env MANA_DB)"
    )
    parser.add_argument(
        "--database-url",
        default=default,
        help="PostgreSQL instead of the SQLite file: postgresql://user:password@host:port/db "
        "(env MANA_DATABASE_URL)",
    )
    parser.add_argument(
        "--log-level",
        default=default,
        help="debug, info, warning or error (env MANA_LOG_LEVEL; default info for serve, run and "
        "daemon, warning otherwise)",
    )


class _CommandParser(_Parser):
    """A command's parser: it also takes the global options (absent unless given)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        add_global_options(self, default=argparse.SUPPRESS)


def build_parser(argv: Sequence[str] = ()) -> argparse.ArgumentParser:
    parser = _Parser(prog="mana", description="Mana agent runtime: tools, MCP server, agents.")
    add_global_options(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_CommandParser)
    sub.required = True
    commands.register(sub, selected_group(argv))
    return parser


# Long-running commands whose stderr is an operator's log stream: they log start-up, ticks and
# iterations at INFO unless told otherwise; one-shot commands only warn.
SERVER_COMMANDS = frozenset({"serve", "run", "daemon"})


def main(argv: Sequence[str] | None = None) -> int:
    """Run one `mana` command. An expected failure (`ManaError`, e.g. a bad setting or a missing
    database) ends as one line on stderr and exit code 1, never a traceback."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    server = args.command in SERVER_COMMANDS
    json_logs: bool | None = None
    try:
        settings = Settings.load(
            {
                "data_dir": args.data_dir,
                "db": args.db,
                "database_url": args.database_url,
                "log_level": args.log_level,
            },
            default_log_level="INFO" if server else "WARNING",
        )
        json_logs = settings.log_json
        configure_logging(settings.log_level, json=json_logs)
        code: int = asyncio.run(args.handler(args, settings))
    except ManaError as exc:
        if server and stderr_is_json(json_logs):
            # A server's stderr is a log stream: its fatal error is a log line like the rest.
            configure_logging("ERROR", json=True)
            structlog.get_logger("mana").error(exc.message, reason=exc.reason)
        else:
            print(f"mana: error: {exc.message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("mana: interrupted", file=sys.stderr)
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
