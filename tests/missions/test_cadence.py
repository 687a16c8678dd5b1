"""Cadences with an injected clock: every kind, time zones, DST changes, cron, missed windows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from mana_cli.main import main
from missions.cadence import (
    MANUAL,
    CronCadence,
    DailyCadence,
    IntervalCadence,
    WeeklyCadence,
    cadence_from_json,
    cadence_to_json,
    describe,
    next_run,
    parse_cadence,
)
from tests.missions.helpers import World
from tool_registry.context import CallContext
from tool_registry.errors import ValidationFailed


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def test_manual_never_runs() -> None:
    assert next_run(MANUAL, None, utc(2026, 1, 1)) is None
    assert next_run(MANUAL, utc(2026, 1, 1), utc(2026, 1, 2)) is None


def test_interval_first_run_and_grid() -> None:
    every = IntervalCadence(kind="interval", every_minutes=30)
    now = utc(2026, 5, 1, 10, 7)
    assert next_run(every, None, now) == utc(2026, 5, 1, 10, 37)
    # On time: the next point of the grid anchored at the previous due time.
    assert next_run(every, utc(2026, 5, 1, 10, 0), utc(2026, 5, 1, 10, 1)) == utc(
        2026, 5, 1, 10, 30
    )


def test_interval_missed_windows_collapse_to_one_run() -> None:
    every = IntervalCadence(kind="interval", every_minutes=60)
    due = utc(2026, 5, 1, 10, 0)
    back = due + timedelta(days=1, minutes=17)  # the daemon was down for a day
    # The overdue run happens once (now); the next one is the first grid point after now,
    # not one of the 24 windows that were missed.
    assert next_run(every, due, back) == utc(2026, 5, 2, 11, 0)


def test_daily_in_a_time_zone() -> None:
    daily = DailyCadence(kind="daily", hour=9, minute=30, timezone="Europe/Berlin")
    # 2026-01-15 is winter time (UTC+1): 09:30 Berlin = 08:30 UTC.
    assert next_run(daily, None, utc(2026, 1, 15, 7, 0)) == utc(2026, 1, 15, 8, 30)
    assert next_run(daily, None, utc(2026, 1, 15, 8, 30)) == utc(2026, 1, 16, 8, 30)
    # Summer time (UTC+2).
    assert next_run(daily, None, utc(2026, 7, 1, 12, 0)) == utc(2026, 7, 2, 7, 30)


def test_daily_across_spring_forward_keeps_wall_time() -> None:
    daily = DailyCadence(kind="daily", hour=9, minute=0, timezone="Europe/Berlin")
    saturday = utc(2026, 3, 28, 8, 0)  # 09:00 CET
    sunday = next_run(daily, saturday, saturday)
    assert sunday == utc(2026, 3, 29, 7, 0)  # 09:00 CEST: still 09:00 on the wall
    assert next_run(daily, sunday, sunday) == utc(2026, 3, 30, 7, 0)


def test_daily_at_a_skipped_wall_time_runs_once_at_the_shifted_instant() -> None:
    daily = DailyCadence(kind="daily", hour=2, minute=30, timezone="Europe/Berlin")
    before = utc(2026, 3, 28, 12, 0)
    first = next_run(daily, None, before)
    assert first == utc(2026, 3, 29, 1, 30)  # 02:30 does not exist; runs at 03:30 CEST
    second = next_run(daily, first, first)
    assert second == utc(2026, 3, 30, 0, 30)  # back to 02:30 CEST


def test_daily_at_a_repeated_wall_time_runs_once() -> None:
    daily = DailyCadence(kind="daily", hour=2, minute=30, timezone="Europe/Berlin")
    first = next_run(daily, None, utc(2026, 10, 24, 12, 0))
    assert first == utc(2026, 10, 25, 0, 30)  # first 02:30 (CEST)
    # Even when asked during the repeated hour, the second 02:30 is not a new window.
    assert next_run(daily, first, utc(2026, 10, 25, 1, 15)) == utc(2026, 10, 26, 1, 30)


def test_daily_missed_for_days_runs_next_day_only() -> None:
    daily = DailyCadence(kind="daily", hour=6, minute=0, timezone="UTC")
    due = utc(2026, 5, 1, 6, 0)
    assert next_run(daily, due, utc(2026, 5, 4, 9, 0)) == utc(2026, 5, 5, 6, 0)


def test_weekly_day_and_hour_in_a_time_zone_across_dst() -> None:
    weekly = WeeklyCadence(kind="weekly", day="mon", hour=9, timezone="America/New_York")
    fri = utc(2026, 10, 30, 12, 0)
    first = next_run(weekly, None, fri)
    assert first == utc(2026, 11, 2, 14, 0)  # Mon 09:00 EST (DST ended Sun 2026-11-01)
    assert next_run(weekly, first, first) == utc(2026, 11, 9, 14, 0)
    earlier = next_run(weekly, None, utc(2026, 10, 20, 0, 0))
    assert earlier == utc(2026, 10, 26, 13, 0)  # Mon 09:00 EDT


def test_cron_weekdays_in_a_time_zone() -> None:
    cron = CronCadence(kind="cron", expression="0 9 * * 1-5", timezone="Europe/Berlin")
    friday_evening = utc(2026, 3, 27, 17, 0)
    monday = next_run(cron, None, friday_evening)
    assert monday == utc(2026, 3, 30, 7, 0)  # after the spring-forward weekend: CEST
    assert next_run(cron, monday, monday) == utc(2026, 3, 31, 7, 0)


def test_cron_fixed_hour_runs_once_in_a_repeated_hour_but_hourly_runs_every_hour() -> None:
    fixed = CronCadence(kind="cron", expression="30 2 * * *", timezone="Europe/Berlin")
    first = next_run(fixed, None, utc(2026, 10, 24, 12, 0))
    assert first == utc(2026, 10, 25, 0, 30)
    assert next_run(fixed, first, first) == utc(2026, 10, 26, 1, 30)
    hourly = CronCadence(kind="cron", expression="0 * * * *", timezone="Europe/Berlin")
    start = utc(2026, 10, 25, 0, 0)  # 02:00 CEST
    second = next_run(hourly, start, start)
    assert second == utc(2026, 10, 25, 1, 0)  # 02:00 CET: a real, elapsed hour later


def test_cron_missed_window_runs_once() -> None:
    cron = CronCadence(kind="cron", expression="*/15 * * * *", timezone="UTC")
    due = utc(2026, 5, 1, 10, 0)
    assert next_run(cron, due, utc(2026, 5, 2, 10, 7)) == utc(2026, 5, 2, 10, 15)


@pytest.mark.parametrize(
    ("spec", "tz", "expected"),
    [
        ("manual", None, {"kind": "manual"}),
        ("interval:45", None, {"kind": "interval", "everyMinutes": 45}),
        ("every:10m", None, {"kind": "interval", "everyMinutes": 10}),
        (
            "daily:07:05",
            "Asia/Tokyo",
            {"kind": "daily", "hour": 7, "minute": 5, "timezone": "Asia/Tokyo"},
        ),
        (
            "weekly:Friday:18:00",
            None,
            {"kind": "weekly", "day": "fri", "hour": 18, "minute": 0, "timezone": "UTC"},
        ),
        (
            "cron:0 9 * * 1-5",
            "Europe/Berlin",
            {"kind": "cron", "expression": "0 9 * * 1-5", "timezone": "Europe/Berlin"},
        ),
    ],
)
def test_cli_text_form(spec: str, tz: str | None, expected: dict[str, object]) -> None:
    cadence = parse_cadence(spec, tz)
    assert cadence_to_json(cadence) == expected
    assert cadence_from_json(cadence_to_json(cadence)) == cadence
    assert describe(cadence)


@pytest.mark.parametrize(
    ("spec", "tz", "message"),
    [
        ("hourly", None, "unknown cadence"),
        ("interval:0", None, "everyMinutes"),
        ("daily:25:00", None, "not a time of day"),
        ("weekly:someday:09:00", None, "DAY one of"),
        ("cron:0 9 * *", None, "five fields"),
        ("cron:99 9 * * *", None, "invalid cron"),
        ("daily:09:00", "Mars/Olympus", "unknown time zone"),
    ],
)
def test_bad_cadences_are_rejected_clearly(spec: str, tz: str | None, message: str) -> None:
    with pytest.raises(ValidationFailed, match=message):
        parse_cadence(spec, tz)


def test_naive_times_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        next_run(IntervalCadence(kind="interval", every_minutes=5), None, datetime(2026, 1, 1))


# -- cadences that never fire ----------------------------------------------------------------------

NEVER = ["0 0 30 2 *", "0 0 31 4,6,9,11 *", "15 10 30-31 2 *"]


@pytest.mark.parametrize("expression", NEVER)
def test_a_cron_expression_that_never_fires_is_refused(expression: str) -> None:
    with pytest.raises(ValidationFailed, match="never fires"):
        parse_cadence(f"cron:{expression}", "Europe/Berlin")
    with pytest.raises(ValidationFailed, match="never fires"):
        cadence_from_json({"kind": "cron", "expression": expression})


def test_rare_but_real_dates_are_accepted() -> None:
    leap = parse_cadence("cron:0 6 29 2 *")
    assert next_run(leap, None, utc(2026, 3, 1)) == utc(2028, 2, 29, 6, 0)
    # Day of month OR day of week (cron's rule): the 30th of February never comes, but the
    # Mondays of February do.
    either = parse_cadence("cron:0 6 30 2 mon")
    assert next_run(either, None, utc(2026, 3, 1)) == utc(2027, 2, 1, 6, 0)


def test_next_run_of_a_never_firing_expression_is_bounded_and_clear() -> None:
    # Built directly (skipping validation), as code could: the search ends with a clear error.
    never = CronCadence.model_construct(kind="cron", expression="0 0 30 2 *", timezone="UTC")
    with pytest.raises(ValidationFailed, match="never fires"):
        next_run(never, None, utc(2026, 1, 1))


def test_cli_refuses_a_never_firing_cron_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = str(tmp_path / "cli.db")
    assert main(["--db", db, "init"]) == 0
    assert main(["--db", db, "seed", "demo"]) == 0
    assert main(["--db", db, "agents", "create", "--as", "demo@mana.test", "--name", "x"]) == 0
    capsys.readouterr()
    code = main(
        ["--db", db, "missions", "create", "--as", "demo@mana.test", "--agent", "x",
         "--title", "t", "--objective", "o", "--cadence", "cron:0 0 30 2 *"]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert code == 1
    assert err.strip().splitlines() == [
        "mana: error: invalid cadence: cron expression '0 0 30 2 *' never fires: no date in "
        "the next 50 years matches it"
    ]


async def test_mcp_refuses_a_never_firing_cron_as_invalid_input_on_the_field(
    world: World,
) -> None:
    owner = await world.user()
    space = await world.personal(owner)
    await world.agent(owner, space, name="one")
    args = {
        "title": "t",
        "objective": "o",
        "cadence": {"kind": "cron", "expression": "0 0 30 2 *", "timezone": "Europe/Berlin"},
    }
    context = CallContext(user_id=owner.id, space=space.id, invoker="mcp")
    outcome = await world.pipeline.invoke("missions.create", args, context)
    assert outcome.status == "invalid-input" and outcome.error is not None
    assert outcome.error.reason == "invalid-input"
    assert [f.field for f in outcome.error.fields] == ["cadence"]
    assert "never fires" in outcome.error.fields[0].message
    assert await world.count("SELECT COUNT(*) FROM missions") == 0
