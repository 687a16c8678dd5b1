"""Cadences: when a mission runs. Pure functions of (cadence, previous due time, now).

Kinds: `manual` (never scheduled), `interval` (every N minutes, on a grid anchored at the
previous due time), `daily` (hour:minute in a time zone), `weekly` (day + hour:minute in a time
zone) and `cron` (a five-field expression, evaluated in a time zone by `croniter`).

`next_run(cadence, after, now)` is the first due time strictly after `now` (and after `after`).
That is the whole missed-window rule: a daemon that was down for a day finds the mission due
(its stored `next_run_at` is in the past), runs it once, and then asks for the next time after
*now*, so the windows it missed are not replayed one by one.

Daylight saving time: daily and weekly times are wall-clock times in their zone. A time that
does not exist on a spring-forward day runs at the equivalent instant (02:30 becomes 03:30 in
Europe/Berlin); a time that exists twice on a fall-back day runs once, at its first occurrence.
Cron expressions with a fixed hour get the same treatment for the repeated hour; expressions
with `*` in the hour field run in every elapsed hour.

Every cadence is validated by computing its next run (`check_fires`, part of the `Cadence` type,
so the MCP tools, the CLI and stored rows all go through it): a cron expression that names no
real date (`0 0 30 2 *`, the 30th of February) is refused as invalid input, not stored.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadDateError, croniter
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, TypeAdapter
from pydantic.alias_generators import to_camel

from tool_registry.errors import ValidationFailed

Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
MAX_INTERVAL_MINUTES = 366 * 24 * 60


def zone(name: str) -> ZoneInfo:
    """The IANA zone `name`; a clear `ValidationFailed` for anything else."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValidationFailed(
            f"unknown time zone {name!r}; use an IANA name such as Europe/Berlin or UTC"
        ) from None


def _check_zone(name: str) -> str:
    try:
        zone(name)
    except ValidationFailed as exc:
        raise ValueError(exc.message) from None
    return name


def _check_cron(expression: str) -> str:
    fields = expression.split()
    if len(fields) != 5:
        raise ValueError(
            "a cron expression has five fields (minute hour day-of-month month day-of-week), "
            f"got {len(fields)}"
        )
    if not croniter.is_valid(expression):
        raise ValueError(f"invalid cron expression {expression!r}")
    return " ".join(fields)


TimeZoneName = Annotated[
    str,
    AfterValidator(_check_zone),
    Field(description="IANA time zone, e.g. Europe/Berlin (default UTC)."),
]


class _Cadence(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        alias_generator=to_camel,
        validate_by_alias=True,
        validate_by_name=True,
        serialize_by_alias=True,
    )


class ManualCadence(_Cadence):
    """Runs only when asked (`mana missions run-now`)."""

    kind: Literal["manual"]


class IntervalCadence(_Cadence):
    """Every N minutes."""

    kind: Literal["interval"]
    every_minutes: int = Field(ge=1, le=MAX_INTERVAL_MINUTES, description="Minutes between runs.")


class DailyCadence(_Cadence):
    """Every day at hour:minute in a time zone."""

    kind: Literal["daily"]
    hour: int = Field(ge=0, le=23)
    minute: int = Field(default=0, ge=0, le=59)
    timezone: TimeZoneName = "UTC"


class WeeklyCadence(_Cadence):
    """Every week on a day at hour:minute in a time zone."""

    kind: Literal["weekly"]
    day: Weekday
    hour: int = Field(ge=0, le=23)
    minute: int = Field(default=0, ge=0, le=59)
    timezone: TimeZoneName = "UTC"


class CronCadence(_Cadence):
    """A five-field cron expression evaluated in a time zone."""

    kind: Literal["cron"]
    expression: Annotated[
        str,
        AfterValidator(_check_cron),
        Field(
            min_length=9,
            max_length=200,
            description="minute hour day-of-month month day-of-week, e.g. '0 9 * * 1-5'.",
        ),
    ]
    timezone: TimeZoneName = "UTC"


# Whether a cadence fires does not depend on when it is asked (a five-field cron expression's
# calendar repeats), so validation computes the next run after one fixed instant.
_PROBE = datetime(2000, 1, 1, tzinfo=UTC)


def check_fires(
    cadence: ManualCadence | IntervalCadence | DailyCadence | WeeklyCadence | CronCadence,
) -> ManualCadence | IntervalCadence | DailyCadence | WeeklyCadence | CronCadence:
    """The validation every cadence passes: its next run can be computed (a manual cadence has
    none by design). `ValueError` naming the cadence otherwise, which pydantic reports as
    invalid input on the field that holds it."""
    try:
        next_run(cadence, None, _PROBE)
    except ValidationFailed as exc:
        raise ValueError(exc.message) from None
    return cadence


Cadence = Annotated[
    ManualCadence | IntervalCadence | DailyCadence | WeeklyCadence | CronCadence,
    Field(discriminator="kind"),
    AfterValidator(check_fires),
]
_ADAPTER: TypeAdapter[Cadence] = TypeAdapter(Cadence)

MANUAL = ManualCadence(kind="manual")


def cadence_from_json(data: Any) -> Cadence:
    """A stored or submitted cadence (camelCase JSON object); `ValidationFailed` if invalid."""
    try:
        return _ADAPTER.validate_python(data)
    except ValueError as exc:
        raise ValidationFailed(f"invalid cadence: {_short_error(exc)}") from None


def cadence_to_json(cadence: Cadence) -> dict[str, Any]:
    dumped: dict[str, Any] = cadence.model_dump(mode="json", by_alias=True)
    return dumped


def _short_error(exc: ValueError) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        parts = []
        for err in errors(include_url=False):
            loc = ".".join(str(p) for p in err["loc"])
            msg = str(err["msg"]).removeprefix("Value error, ")
            parts.append(f"{loc}: {msg}" if loc else msg)
        return "; ".join(parts)
    return str(exc)


# -- next run ---------------------------------------------------------------------------------


def next_run(cadence: Cadence, after: datetime | None, now: datetime) -> datetime | None:
    """The first due time strictly after `now` (and after `after`, the previous due time, when
    given), in UTC; None for a manual cadence. `after` anchors the interval grid."""
    _aware(now, "now")
    if after is not None:
        _aware(after, "after")
    if isinstance(cadence, ManualCadence):
        return None
    if isinstance(cadence, IntervalCadence):
        return _next_interval(cadence, after, now)
    ref = now if after is None or after < now else after
    if isinstance(cadence, DailyCadence):
        return _next_wall_time(ref, zone(cadence.timezone), cadence.hour, cadence.minute, None)
    if isinstance(cadence, WeeklyCadence):
        weekday = WEEKDAYS.index(cadence.day)
        return _next_wall_time(ref, zone(cadence.timezone), cadence.hour, cadence.minute, weekday)
    return _next_cron(cadence, ref)


def _aware(value: datetime, name: str) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware")


def _next_interval(cadence: IntervalCadence, after: datetime | None, now: datetime) -> datetime:
    step = timedelta(minutes=cadence.every_minutes)
    if after is None:
        return (now + step).astimezone(UTC)
    # The first point of the grid after + k*step (k >= 1) that lies strictly after `now`.
    k = max(1, math.floor((now - after) / step) + 1)
    return (after + k * step).astimezone(UTC)


def wall_time(day: date, hour: int, minute: int, tz: ZoneInfo) -> datetime:
    """`day` at hour:minute in `tz` as a UTC instant. A wall time skipped by a DST jump maps to
    the instant the clock would have shown it without the jump (02:30 -> 03:30 CEST); a wall
    time that occurs twice maps to its first occurrence (fold=0)."""
    local = datetime.combine(day, time(hour, minute), tzinfo=tz)
    return local.astimezone(UTC)


def _next_wall_time(
    ref: datetime, tz: ZoneInfo, hour: int, minute: int, weekday: int | None
) -> datetime:
    local_day = ref.astimezone(tz).date()
    for offset in range(9):
        day = local_day + timedelta(days=offset)
        if weekday is not None and day.weekday() != weekday:
            continue
        candidate = wall_time(day, hour, minute, tz)
        if candidate > ref:
            return candidate
    raise AssertionError("unreachable: a daily or weekly time recurs within 8 days")


_WILDCARD_HOUR = re.compile(r"^\*(/\d+)?$")
# Far longer than any gap between two runs of a five-field expression that fires at all (the
# longest, the 29th of February, recurs within 8 years).
_CRON_SEARCH_YEARS = 50


def _next_cron(cadence: CronCadence, ref: datetime) -> datetime:
    tz = zone(cadence.timezone)
    hour_field = cadence.expression.split()[1]
    once_per_wall_time = not _WILDCARD_HOUR.match(hour_field)
    # croniter searches at most `_CRON_SEARCH_YEARS` ahead and raises when nothing matches; the
    # loop skips at most a few repeated wall times, so both ends are bounded.
    it = croniter(
        cadence.expression, ref.astimezone(tz), max_years_between_matches=_CRON_SEARCH_YEARS
    )
    for _ in range(1000):
        try:
            candidate: datetime = it.get_next(datetime)
        except CroniterBadDateError:
            break
        instant = candidate.astimezone(UTC)
        if instant <= ref:
            continue
        if once_per_wall_time and _is_second_occurrence(candidate, tz):
            continue
        return instant
    raise ValidationFailed(
        f"cron expression {cadence.expression!r} never fires: no date in the next "
        f"{_CRON_SEARCH_YEARS} years matches it"
    )


def _is_second_occurrence(moment: datetime, tz: ZoneInfo) -> bool:
    """True when `moment` is the repeat of a wall time that occurs twice (fall-back hour)."""
    local = moment.astimezone(tz).replace(tzinfo=None)
    first = local.replace(tzinfo=tz, fold=0).astimezone(UTC)
    second = local.replace(tzinfo=tz, fold=1).astimezone(UTC)
    return first != second and moment.astimezone(UTC) == second


def is_due(next_run_at: datetime | None, now: datetime) -> bool:
    return next_run_at is not None and next_run_at <= now


# -- text form (CLI) ------------------------------------------------------------------------------

CADENCE_HELP = (
    "manual | interval:MINUTES | daily:HH:MM | weekly:DAY:HH:MM (DAY = mon..sun) | cron:EXPR "
    "(five fields, e.g. 'cron:0 9 * * 1-5'); times are in --tz (default UTC)"
)


def _hh_mm(text: str, spec: str) -> tuple[int, int]:
    match = re.fullmatch(r"(\d{1,2})(?::(\d{2}))?", text.strip())
    if not match:
        raise ValidationFailed(f"cadence {spec!r}: expected a time like 09:00, got {text!r}")
    hour, minute = int(match.group(1)), int(match.group(2) or 0)
    if hour > 23 or minute > 59:
        raise ValidationFailed(f"cadence {spec!r}: {text!r} is not a time of day")
    return hour, minute


def parse_cadence(spec: str, timezone: str | None = None) -> Cadence:
    """The CLI's text form (see `CADENCE_HELP`) to a cadence. `timezone` applies to daily,
    weekly and cron."""
    text = spec.strip()
    kind, _, rest = text.partition(":")
    kind = kind.strip().lower()
    tz = timezone or "UTC"
    data: dict[str, Any]
    if kind == "manual" and not rest:
        data = {"kind": "manual"}
    elif kind in ("interval", "every"):
        raw = rest.strip().lower().removesuffix("m").removesuffix("min")
        if not raw.isdigit():
            raise ValidationFailed(f"cadence {spec!r}: expected interval:MINUTES, e.g. interval:30")
        data = {"kind": "interval", "everyMinutes": int(raw)}
    elif kind == "daily":
        hour, minute = _hh_mm(rest, spec)
        data = {"kind": "daily", "hour": hour, "minute": minute, "timezone": tz}
    elif kind == "weekly":
        day, _, at = rest.partition(":")
        day = day.strip().lower()[:3]
        if day not in WEEKDAYS:
            raise ValidationFailed(
                f"cadence {spec!r}: expected weekly:DAY:HH:MM with DAY one of {', '.join(WEEKDAYS)}"
            )
        hour, minute = _hh_mm(at, spec)
        data = {"kind": "weekly", "day": day, "hour": hour, "minute": minute, "timezone": tz}
    elif kind == "cron":
        data = {"kind": "cron", "expression": rest.strip(), "timezone": tz}
    else:
        raise ValidationFailed(f"unknown cadence {spec!r}; use {CADENCE_HELP}")
    return cadence_from_json(data)


def describe(cadence: Cadence) -> str:
    """Short text for people, e.g. `daily 09:00 Europe/Berlin`."""
    if isinstance(cadence, ManualCadence):
        return "manual"
    if isinstance(cadence, IntervalCadence):
        return f"every {cadence.every_minutes} min"
    if isinstance(cadence, DailyCadence):
        return f"daily {cadence.hour:02d}:{cadence.minute:02d} {cadence.timezone}"
    if isinstance(cadence, WeeklyCadence):
        return f"weekly {cadence.day} {cadence.hour:02d}:{cadence.minute:02d} {cadence.timezone}"
    return f"cron '{cadence.expression}' {cadence.timezone}"
