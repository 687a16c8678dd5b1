"""Who holds a mission's lease, whether that holder is still alive, and the fence every write of
an iteration passes.

A lease is three columns on the mission row (`lease_owner`, `lease_expires_at`, `lease_epoch`),
taken with an atomic `UPDATE ... WHERE` on a row the claim holds locked (SQLite: the `BEGIN
IMMEDIATE` writer; PostgreSQL: `SELECT ... FOR UPDATE SKIP LOCKED`), renewed while the iteration
runs and released when it finishes. Two daemons on one database therefore never run one mission
at the same time.

Fencing: `lease_epoch` goes up with every claim and every takeover (recovery of an interrupted
iteration). The claim hands the runner a `Lease` (mission, owner, epoch), the iteration row
stores the epoch, and every write the iteration makes (progress, tokens, proposals, its end,
the next run, the release) first checks, in its own transaction and holding the mission row,
that the mission still carries that owner and epoch; otherwise the unit raises `LeaseLost` and
rolls back. A daemon that lost its lease (paused past expiry, partitioned, presumed dead) can
therefore never commit after another one took over.

An owner id is `host:pid:start:token` (`start` is the process start time from `/proc`, so a
reused pid is not mistaken for the old process). When a lease's holder is a process on this host
that no longer exists, the lease is treated as free at once: a daemon killed with SIGKILL and
restarted recovers its interrupted iterations immediately instead of waiting for the lease to
expire. Holders on other hosts are only ever recovered by expiry.
"""

from __future__ import annotations

import os
import secrets
import socket
from dataclasses import dataclass
from pathlib import Path

from tool_registry.errors import ManaError


class LeaseLost(ManaError):
    """The mission's lease is no longer the one this iteration was claimed under (expired and
    taken over, or recovered): the write was refused and its unit rolled back."""

    reason = "lease-lost"


@dataclass(frozen=True)
class Lease:
    """The claim an iteration runs under: its writes commit only while the mission still carries
    this owner and epoch."""

    mission_id: str
    owner: str
    epoch: int


def _process_start(pid: int) -> str:
    """The kernel's start time of `pid` (clock ticks since boot), or '' when unknown."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return ""
    # The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    fields = raw.rsplit(")", 1)[-1].split()
    return fields[19] if len(fields) > 19 else ""


@dataclass(frozen=True)
class Owner:
    host: str
    pid: int
    start: str
    token: str

    def __str__(self) -> str:
        return f"{self.host}:{self.pid}:{self.start}:{self.token}"

    @classmethod
    def parse(cls, text: str) -> Owner | None:
        parts = text.rsplit(":", 3)
        if len(parts) != 4 or not parts[1].isdigit():
            return None
        return cls(parts[0], int(parts[1]), parts[2], parts[3])


def _host() -> str:
    return (socket.gethostname() or "host").replace(":", "-")


def new_owner() -> str:
    """A fresh lease owner id for this process (one per daemon or CLI run)."""
    pid = os.getpid()
    return str(Owner(_host(), pid, _process_start(pid), secrets.token_hex(4)))


def holder_is_dead(owner_text: str) -> bool:
    """True only when we can tell for sure that the holder's process is gone: same host, and
    its pid no longer exists or now belongs to a process started at another time."""
    owner = Owner.parse(owner_text)
    if owner is None or owner.host != _host():
        return False
    if owner.pid == os.getpid():
        # Another daemon object in this very process (tests) or a restarted container that got
        # the same pid: tell them apart by start time.
        return bool(owner.start) and owner.start != _process_start(owner.pid)
    try:
        os.kill(owner.pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass  # exists, belongs to someone else
    if owner.start:
        current = _process_start(owner.pid)
        return bool(current) and current != owner.start
    return False
