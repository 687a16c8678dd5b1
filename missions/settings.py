"""Settings of the mission runner and the daemon, with durations written like `60s`, `5m`, `7d`.

Environment (all optional): `MANA_PROPOSAL_EXPIRY` (default 7d), `MANA_MISSION_MAX_ROUNDS`
(default 8), `MANA_MISSION_BACKOFF` (first retry delay after a failed iteration, default 1m),
`MANA_MISSION_BACKOFF_MAX` (default 6h), `MANA_DAEMON_LEASE` (default 2m), `MANA_DAEMON_TICK`
(default 60s), `MANA_DAEMON_CONCURRENCY` (default 4), `MANA_DAEMON_PORT` (default 3070),
`MANA_DAEMON_DRAIN_TIMEOUT` (default 30s). Command flags beat the environment.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

from tool_registry.errors import ValidationFailed

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}


def parse_duration(text: str, *, name: str = "duration") -> timedelta:
    """`250ms`, `60s`, `5m`, `2h`, `7d`, `1w`, or a plain number of seconds."""
    match = _DURATION.match(str(text))
    if not match:
        raise ValidationFailed(
            f"{name} must be a duration like 30s, 5m, 2h or 7d, got {str(text)!r}"
        )
    seconds = float(match.group(1)) * _UNITS[match.group(2) or "s"]
    return timedelta(seconds=seconds)


def format_duration(value: timedelta) -> str:
    seconds = value.total_seconds()
    for unit in ("w", "d", "h", "m", "s"):
        size = _UNITS[unit]
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def _positive_duration(text: str, name: str, *, minimum: float = 0.001) -> timedelta:
    value = parse_duration(text, name=name)
    if value.total_seconds() < minimum:
        raise ValidationFailed(f"{name} must be at least {minimum:g}s, got {text!r}")
    return value


def _int(text: str, name: str, *, low: int, high: int) -> int:
    try:
        value = int(str(text).strip())
    except ValueError:
        raise ValidationFailed(f"{name} must be an integer, got {text!r}") from None
    if not low <= value <= high:
        raise ValidationFailed(f"{name} must be between {low} and {high}, got {value}")
    return value


@dataclass(frozen=True)
class MissionSettings:
    """How iterations run and fail.

    - `max_rounds`: model rounds per iteration;
    - `proposal_expiry`: a pending proposal expires this long after it was made;
    - `backoff` / `backoff_max`: after the n-th consecutive failure the mission is retried no
      sooner than `backoff * 2**(n-1)` (capped), never in a hot loop;
    - `lease`: how long a claim on a mission lasts without renewal (renewed every third of it).
    """

    max_rounds: int = 8
    proposal_expiry: timedelta = timedelta(days=7)
    backoff: timedelta = timedelta(minutes=1)
    backoff_max: timedelta = timedelta(hours=6)
    lease: timedelta = timedelta(minutes=2)

    def __post_init__(self) -> None:
        if self.max_rounds < 1:
            raise ValidationFailed("max rounds must be at least 1")
        if self.proposal_expiry <= timedelta(0):
            raise ValidationFailed("proposal expiry must be positive")
        if self.backoff <= timedelta(0) or self.backoff_max < self.backoff:
            raise ValidationFailed("backoff must be positive and at most the backoff maximum")
        if self.lease < timedelta(seconds=0.3):
            raise ValidationFailed("the lease must be at least 0.3s")

    def backoff_after(self, failures: int) -> timedelta:
        """The wait before retrying after `failures` consecutive failures (>= 1)."""
        exponent = min(max(failures, 1) - 1, 30)
        return min(self.backoff * (1 << exponent), self.backoff_max)

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> MissionSettings:
        base = cls()
        changes: dict[str, object] = {}
        if raw := environ.get("MANA_PROPOSAL_EXPIRY", "").strip():
            changes["proposal_expiry"] = _positive_duration(raw, "MANA_PROPOSAL_EXPIRY")
        if raw := environ.get("MANA_MISSION_MAX_ROUNDS", "").strip():
            changes["max_rounds"] = _int(raw, "MANA_MISSION_MAX_ROUNDS", low=1, high=100)
        if raw := environ.get("MANA_MISSION_BACKOFF", "").strip():
            changes["backoff"] = _positive_duration(raw, "MANA_MISSION_BACKOFF")
        if raw := environ.get("MANA_MISSION_BACKOFF_MAX", "").strip():
            changes["backoff_max"] = _positive_duration(raw, "MANA_MISSION_BACKOFF_MAX")
        if raw := environ.get("MANA_DAEMON_LEASE", "").strip():
            changes["lease"] = _positive_duration(raw, "MANA_DAEMON_LEASE", minimum=0.3)
        return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


@dataclass(frozen=True)
class DaemonSettings:
    """`tick`: how often due missions are selected; `concurrency`: iterations at once in this
    process; `port`: `/health` and `/metrics` on `host` (None: no HTTP; 0: any free port);
    `drain_timeout`: on SIGTERM, how long running iterations may take to finish."""

    tick: timedelta = timedelta(seconds=60)
    concurrency: int = 4
    host: str = "127.0.0.1"
    port: int | None = 3070
    drain_timeout: timedelta = timedelta(seconds=30)

    def __post_init__(self) -> None:
        if self.tick <= timedelta(0):
            raise ValidationFailed("--tick must be positive")
        if not 1 <= self.concurrency <= 1000:
            raise ValidationFailed("--concurrency must be between 1 and 1000")
        if self.port is not None and not 0 <= self.port <= 65535:
            raise ValidationFailed("--port must be between 0 and 65535")
        if self.drain_timeout < timedelta(0):
            raise ValidationFailed("--drain-timeout must not be negative")

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> DaemonSettings:
        base = cls()
        changes: dict[str, object] = {}
        if raw := environ.get("MANA_DAEMON_TICK", "").strip():
            changes["tick"] = _positive_duration(raw, "MANA_DAEMON_TICK")
        if raw := environ.get("MANA_DAEMON_CONCURRENCY", "").strip():
            changes["concurrency"] = _int(raw, "MANA_DAEMON_CONCURRENCY", low=1, high=1000)
        if raw := environ.get("MANA_DAEMON_PORT", "").strip():
            changes["port"] = _int(raw, "MANA_DAEMON_PORT", low=0, high=65535)
        if raw := environ.get("MANA_DAEMON_DRAIN_TIMEOUT", "").strip():
            changes["drain_timeout"] = parse_duration(raw, name="MANA_DAEMON_DRAIN_TIMEOUT")
        return dataclasses.replace(base, **changes)  # type: ignore[arg-type]
