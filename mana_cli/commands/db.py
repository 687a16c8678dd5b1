"""`mana db copy`: move an install between the embedded SQLite file and PostgreSQL (either way,
or file to file), every row verified by per-table counts and checksums."""

from __future__ import annotations

import argparse
from typing import Any

from mana_cli.config import Settings
from mana_cli.runtime import EXTRA_MIGRATIONS
from tool_registry.store.copy import DEFAULT_BATCH_SIZE, copy_database
from tool_registry.store.migrations import CORE_MIGRATIONS


def register(sub: Any) -> None:
    p = sub.add_parser("db", help="copy a database between SQLite and PostgreSQL")
    s = p.add_subparsers(dest="db_command", metavar="COMMAND", required=True)
    c = s.add_parser(
        "copy",
        help="copy every row of one database into another and verify it",
        description=(
            "Copy every row of --from into --to (a SQLite file path or a postgresql:// URL), "
            "in one transaction on the target, then verify each table's row count and checksum; "
            "the target's schema is created or migrated first. Exit 0 only when every table "
            "matches; on a mismatch the copy is rolled back."
        ),
    )
    c.add_argument("--from", dest="source", required=True, metavar="PATH_OR_URL")
    c.add_argument("--to", dest="target", required=True, metavar="PATH_OR_URL")
    c.add_argument(
        "--force",
        action="store_true",
        help="empty a non-empty target first (in the same transaction as the copy)",
    )
    c.add_argument(
        "--batch-size",
        type=int,
        default=DEFAULT_BATCH_SIZE,
        metavar="N",
        help=f"rows read and written at a time (default {DEFAULT_BATCH_SIZE})",
    )
    c.set_defaults(handler=copy)


async def copy(args: argparse.Namespace, settings: Settings) -> int:
    """Runs the copy on this thread: a one-shot command has nothing else to serve meanwhile, and
    Ctrl-C then interrupts the copy itself (its target transaction rolls back)."""
    report = copy_database(
        args.source,
        args.target,
        [*CORE_MIGRATIONS, *EXTRA_MIGRATIONS],
        force=args.force,
        batch_size=args.batch_size,
    )
    for line in report.lines():
        print(line)
    print(report.summary())
    return 0 if report.ok else 1
