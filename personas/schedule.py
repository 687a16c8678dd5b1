"""When a persona is due, and what its tick is called. Time comes from an injected clock.

A tick is one period of the persona's cadence, named by its start (UTC by default):

- `daily`: one tick per calendar day, id `2026-11-23`;
- `weekdays`: like daily, but Saturday and Sunday have no tick (never due on a weekend);
- `hourly`: one tick per hour, id `2026-11-23T14`.

A persona is due when the current period has a tick and it was not active since that period
began. The tick id is part of every action's id, so re-running a tick rewrites the same rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo

from personas.catalog import Cadence

WEEKEND = (5, 6)  # Saturday, Sunday


@dataclass(frozen=True)
class Due:
    due: bool
    reason: str
    tick_id: str | None


def period_start(cadence: Cadence | str, now: datetime, tz: tzinfo = UTC) -> datetime:
    local = now.astimezone(tz)
    if cadence == "hourly":
        return local.replace(minute=0, second=0, microsecond=0)
    if cadence in ("daily", "weekdays"):
        return local.replace(hour=0, minute=0, second=0, microsecond=0)
    raise ValueError(f"unknown cadence {cadence!r}")


def tick_id(cadence: Cadence | str, now: datetime, tz: tzinfo = UTC) -> str:
    start = period_start(cadence, now, tz)
    return start.strftime("%Y-%m-%dT%H") if cadence == "hourly" else start.strftime("%Y-%m-%d")


def has_tick(cadence: Cadence | str, now: datetime, tz: tzinfo = UTC) -> bool:
    return not (cadence == "weekdays" and now.astimezone(tz).weekday() in WEEKEND)


def is_due(
    cadence: Cadence | str, last_active: datetime | None, now: datetime, tz: tzinfo = UTC
) -> Due:
    if not has_tick(cadence, now, tz):
        return Due(False, "weekend (cadence weekdays)", None)
    tick = tick_id(cadence, now, tz)
    if last_active is None:
        return Due(True, "never active", tick)
    start = period_start(cadence, now, tz)
    if last_active >= start:
        what = "this hour" if cadence == "hourly" else "today"
        return Due(False, f"already active {what} (tick {tick})", tick)
    return Due(True, f"last active {last_active.astimezone(tz):%Y-%m-%d %H:%M}", tick)


def next_tick(cadence: Cadence | str, now: datetime, tz: tzinfo = UTC) -> datetime:
    """The start of the next period that has a tick (strictly after `now`)."""
    step = timedelta(hours=1) if cadence == "hourly" else timedelta(days=1)
    candidate = period_start(cadence, now, tz) + step
    while not has_tick(cadence, candidate, tz):
        candidate += step
    return candidate


__all__ = ["Due", "has_tick", "is_due", "next_tick", "period_start", "tick_id"]
