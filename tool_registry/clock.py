"""Time as an injectable object, so tests and the daemon can control `now`.

A clock also mints record ids (`new_id`): ids carry the clock's time and are monotonic per clock,
so whoever controls `now` controls both `created_at` and the id order among equal timestamps.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol

from tool_registry.ids import IdSource


class Clock(Protocol):
    def now(self) -> datetime: ...

    def new_id(self, prefix: str) -> str:
        """A record id: `prefix_` + this clock's millisecond + a part that makes ids of this
        clock strictly increasing."""
        ...


class SystemClock:
    def __init__(self) -> None:
        self._ids = IdSource(self.now)

    def now(self) -> datetime:
        return datetime.now(UTC)

    def new_id(self, prefix: str) -> str:
        return self._ids.new(prefix)


class FixedClock:
    """A clock for tests: returns `current` until moved with `advance` or `set`."""

    def __init__(self, current: datetime) -> None:
        self.current = current
        self._ids = IdSource(self.now)

    def now(self) -> datetime:
        return self.current

    def new_id(self, prefix: str) -> str:
        return self._ids.new(prefix)

    def set(self, current: datetime) -> None:
        self.current = current

    def advance(self, **delta: float) -> None:
        self.current = self.current + timedelta(**delta)


def iso(ts: datetime) -> str:
    """Canonical UTC text form, `2026-12-03T10:00:00.000000Z`: fixed width with a zero-padded
    year (strftime's `%Y` drops the zeros of a year before 1000 on glibc), so text order equals
    time order. Every stored time is written by this function."""
    utc = ts.astimezone(UTC).replace(tzinfo=None)
    return utc.isoformat(timespec="microseconds") + "Z"


def parse_iso(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))
