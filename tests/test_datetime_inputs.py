"""Every date and date-time input of every tool, fed values over the whole `datetime` range.

The registry is walked for input fields whose JSON Schema says `format: date-time` or `date`;
each such tool is called through the real pipeline with aware date-times from `datetime.min` to
`datetime.max` at offsets -14:00..+14:00. Whatever the value, the outcome is success or
`invalid-input` naming exactly the fields out of the range (1900-2200), never a handler error;
accepted values are stored and answered in the fixed-width UTC form, and listings follow time
order.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any, Literal

import orjson
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from missions.tools import TOOLS as MISSIONS_TOOLS
from tool_registry.clock import iso
from tool_registry.modules import build_registry
from tool_registry.registry import Registry
from tool_registry.store import User
from tool_registry.store.postgres import is_postgres_url
from tool_registry.testing import ToolKit, tool_kit

Kind = Literal["date-time", "date"]

OFFSETS = st.integers(min_value=-14 * 60, max_value=14 * 60).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)


def _around(year: int, month: int, day: int) -> st.SearchStrategy[datetime]:
    """Naive date-times within two days of a range edge, where off-by-one errors live."""
    edge = datetime(year, month, day)
    return st.datetimes(min_value=edge - timedelta(days=2), max_value=edge + timedelta(days=2))


INSTANTS = st.one_of(
    st.datetimes(min_value=datetime.min, max_value=datetime.max, timezones=OFFSETS),
    _around(1900, 1, 1).flatmap(lambda d: OFFSETS.map(lambda tz: d.replace(tzinfo=tz))),
    _around(2201, 1, 1).flatmap(lambda d: OFFSETS.map(lambda tz: d.replace(tzinfo=tz))),
)
"""Aware date-times over the whole `datetime` range, weighted towards the 1900/2200 edges."""

FIXED: dict[Kind, str] = {"date-time": "2026-06-01T12:00:00Z", "date": "2026-06-01"}
"""The value of a required date field that a probe leaves alone."""

FIRST = datetime(1900, 1, 1, tzinfo=UTC)
AFTER_LAST = datetime(2201, 1, 1, tzinfo=UTC)


def registry() -> Registry:
    """The registry production serves: bundled modules plus the missions tools."""
    return build_registry(extra=MISSIONS_TOOLS)


def _kind(schema: dict[str, Any]) -> Kind | None:
    for branch in [schema, *schema.get("anyOf", [])]:
        if branch.get("format") in ("date-time", "date"):
            kind: Kind = branch["format"]
            return kind
    return None


def dated_fields(reg: Registry) -> dict[str, dict[str, Kind]]:
    """tool name -> {wire name of each date or date-time input field: its format}."""
    found: dict[str, dict[str, Kind]] = {}
    for spec in reg:
        props = spec.input_schema().get("properties", {})
        fields = {name: kind for name, p in props.items() if (kind := _kind(p)) is not None}
        if fields:
            found[spec.name] = fields
    return found


@dataclass(frozen=True)
class Base:
    """The other arguments a dated tool needs; `record` names a seed whose id goes in `id_field`."""

    args: dict[str, Any]
    record: str | None = None
    id_field: str = "id"


SEEDS: dict[str, tuple[str, dict[str, Any]]] = {
    "event": (
        "calendar.create",
        {"title": "Seed", "start": "2026-01-01T10:00:00Z", "end": "2026-01-01T11:00:00Z"},
    ),
    "contact": ("contacts.create", {"name": "Seed Person"}),
    "entry": ("journal.add", {"text": "Seed entry"}),
    "todo": ("todo.create", {"title": "Seed todo"}),
    "habit": ("habits.create", {"name": "Seed habit"}),
}

BASES: dict[str, Base] = {
    "calendar.create": Base({"title": "Probe"}),
    "calendar.list": Base({}),
    "calendar.update": Base({}, record="event"),
    "contacts.create": Base({"name": "Probe Person"}),
    "contacts.update": Base({}, record="contact"),
    "habits.log": Base({}, record="habit", id_field="habitId"),
    "journal.add": Base({"text": "Probe entry"}),
    "journal.list": Base({}),
    "journal.update": Base({}, record="entry"),
    "mood.log": Base({"score": 3}),
    "mood.list": Base({}),
    "todo.create": Base({"title": "Probe todo"}),
    "todo.list": Base({"status": "all"}),
    "todo.update": Base({}, record="todo"),
}
"""Every tool with a date field; `test_every_dated_tool_is_probed` keeps this list complete."""


def canonical(value: datetime) -> str:
    """The stored UTC form, written out field by field (independently of the store's code)."""
    u = value.astimezone(UTC)
    return (
        f"{u.year:04d}-{u.month:02d}-{u.day:02d}T{u.hour:02d}:{u.minute:02d}:{u.second:02d}"
        f".{u.microsecond:06d}Z"
    )


def in_range(value: datetime | date, kind: Kind) -> bool:
    if kind == "date":
        return 1900 <= value.year <= 2200
    assert isinstance(value, datetime)
    return FIRST <= value < AFTER_LAST


@contextmanager
def running_kit(target: str) -> Iterator[tuple[asyncio.Runner, ToolKit, User]]:
    """One kit (and event loop) on `target` shared by every example of a property, for speed."""
    with asyncio.Runner() as runner:
        cm = tool_kit(target, registry=registry())
        kit = runner.run(cm.__aenter__())
        try:
            user = runner.run(kit.user())
            yield runner, kit, user
        finally:
            runner.run(cm.__aexit__(None, None, None))


async def _stored(kit: ToolKit, record_id: str) -> dict[str, Any]:
    row = await kit.db.read(
        lambda c: c.execute("SELECT data FROM records WHERE id = ?", (record_id,)).fetchone()
    )
    assert row is not None
    data: dict[str, Any] = orjson.loads(row["data"])
    return data


def test_every_dated_tool_is_probed() -> None:
    dated = dated_fields(registry())
    assert set(dated) == set(BASES), "add the new dated tool to BASES"
    # The walk sees both kinds, so it is reading the schemas it means to read.
    kinds = {k for fields in dated.values() for k in fields.values()}
    assert kinds == {"date", "date-time"}


def test_dates_and_times_over_the_whole_range(database_target: str) -> None:
    dated = dated_fields(registry())
    with running_kit(database_target) as (runner, kit, user):
        ids = {
            name: runner.run(kit.call_ok(user, None, tool, args))["id"]
            for name, (tool, args) in SEEDS.items()
        }

        async def probe(value: datetime) -> None:
            for tool, fields in sorted(dated.items()):
                # All the tool's date fields at once (they agree, so every window is valid),
                # then each alone, the others left out or, if required, at a fixed day.
                variants = [list(fields)] + ([[n] for n in fields] if len(fields) > 1 else [])
                for names in variants:
                    await probe_call(tool, {n: fields[n] for n in names}, value, len(names) > 1)

        async def probe_call(
            tool: str, fields: dict[str, Kind], value: datetime, together: bool
        ) -> None:
            spec = kit.registry.get(tool)
            assert spec is not None
            base = BASES[tool]
            args = dict(base.args)
            if base.record is not None:
                args[base.id_field] = ids[base.record]
            for name in spec.input_schema().get("required", []):
                kind = dated[tool].get(name)
                if kind is not None and name not in fields:
                    args[name] = FIXED[kind]
            given: dict[str, datetime | date] = {}
            for name, kind in fields.items():
                given[name] = value if kind == "date-time" else value.date()
                args[name] = given[name].isoformat()
            outcome = await kit.call_as(user, None, tool, args)
            refused = {n for n, kind in fields.items() if not in_range(given[n], kind)}
            if refused:
                assert outcome.status == "invalid-input", (tool, args, outcome.public())
                assert outcome.error is not None
                assert {f.field for f in outcome.error.fields} == refused, outcome.public()
                return
            if not together and outcome.error is not None:
                # One end of a window alone may fall on the wrong side of the other one.
                assert outcome.error.reason == "invalid-range", (tool, args, outcome.public())
                return
            assert outcome.ok, (tool, args, outcome.public())
            assert outcome.result is not None
            expected = {
                n: canonical(v) if isinstance(v, datetime) else v.isoformat()
                for n, v in given.items()
            }
            echoed = {n: outcome.result[n] for n in expected if n in outcome.result}
            assert echoed == {n: expected[n] for n in echoed}, (tool, args)
            if not spec.read_only:
                stored = await _stored(kit, outcome.result["id"])
                assert {n: stored[n] for n in expected} == expected, (tool, args)

        @settings(
            # Fewer on PostgreSQL, where each of the ~30 calls an example makes costs a few
            # round trips; the explicit examples run on both.
            max_examples=60 if is_postgres_url(database_target) else 150,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
        )
        @example(datetime(999, 6, 1, tzinfo=UTC))
        @example(datetime.max.replace(tzinfo=timezone(-timedelta(hours=14))))
        @example(datetime(9999, 12, 31, 23, 59, 59, tzinfo=timezone(-timedelta(hours=14))))
        @example(datetime.min.replace(tzinfo=timezone(timedelta(hours=14))))
        @example(datetime(1900, 1, 1, tzinfo=UTC))
        @example(datetime(1900, 1, 1, tzinfo=timezone(timedelta(hours=1))))
        @example(datetime(2200, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC))
        @example(datetime(2201, 1, 1, tzinfo=UTC))
        @example(datetime(2201, 1, 1, 10, tzinfo=timezone(timedelta(hours=14))))
        @given(INSTANTS)
        def check(value: datetime) -> None:
            runner.run(probe(value))

        check()


IN_RANGE = st.datetimes(
    min_value=datetime(1900, 1, 2), max_value=datetime(2200, 12, 30), timezones=OFFSETS
)


def test_listings_follow_time_order(database_target: str) -> None:
    """Events and mood entries at random instants (any offset, any year in range) list in time
    order, because the stored text form sorts like the instants it names."""
    with running_kit(database_target) as (runner, kit, _):

        async def check_order(values: list[datetime]) -> None:
            user = await kit.user()
            for n, value in enumerate(values):
                at = value.isoformat()
                await kit.call_ok(
                    user, None, "calendar.create", {"title": f"E{n}", "start": at, "end": at}
                )
                await kit.call_ok(user, None, "mood.log", {"score": 3, "at": at})
            events = await kit.call_ok(
                user,
                None,
                "calendar.list",
                {"from": "1900-01-01T00:00:00Z", "to": "2200-12-31T23:59:59Z", "limit": 500},
            )
            starts = [e["start"] for e in events["events"]]
            instants = sorted(v.astimezone(UTC) for v in values)
            assert [datetime.fromisoformat(s) for s in starts] == instants
            moods = await kit.call_ok(
                user, None, "mood.list", {"from": "1900-01-01", "to": "2200-12-31", "limit": 500}
            )
            ats = [datetime.fromisoformat(m["at"]) for m in moods["entries"]]
            assert ats == sorted(instants, reverse=True)

        @settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
        @example([datetime(2026, 1, 1, tzinfo=UTC), datetime(1901, 6, 1, tzinfo=UTC)])
        @given(st.lists(IN_RANGE, min_size=1, max_size=12))
        def check(values: list[datetime]) -> None:
            runner.run(check_order(values))

        check()


async def test_event_ending_before_1900_is_refused_and_never_listed(mana_kit: ToolKit) -> None:
    """The report: an end of 0999-06-01 was stored as `999-...` and then matched every listing."""
    user = await mana_kit.user()
    outcome = await mana_kit.call_as(
        user,
        None,
        "calendar.create",
        {"title": "Old", "start": "2026-06-01T10:00:00Z", "end": "0999-06-01T00:00:00Z"},
    )
    assert outcome.status == "invalid-input"
    assert outcome.error is not None
    assert [f.field for f in outcome.error.fields] == ["end"]
    listed = await mana_kit.call_ok(user, None, "calendar.list", {})
    assert listed["events"] == []


async def test_far_offset_at_the_end_of_time_is_invalid_input(mana_kit: ToolKit) -> None:
    """The report: `9999-12-31T23:59:59-14:00` crashed the handlers converting it to UTC."""
    user = await mana_kit.user()
    value = "9999-12-31T23:59:59-14:00"
    habit = await mana_kit.call_ok(user, None, "habits.create", {"name": "Walk"})
    calls: list[tuple[str, dict[str, Any], str]] = [
        ("calendar.create", {"title": "x", "start": value, "end": value}, "start"),
        ("calendar.list", {"from": value}, "from"),
        ("mood.log", {"score": 3, "at": value}, "at"),
        ("habits.log", {"habitId": habit["id"], "at": value}, "at"),
    ]
    for tool, args, field in calls:
        outcome = await mana_kit.call_as(user, None, tool, args)
        assert outcome.status == "invalid-input", (tool, outcome.public())
        assert outcome.error is not None
        assert field in {f.field for f in outcome.error.fields}, (tool, outcome.public())


CONVERTIBLE = st.datetimes(
    min_value=datetime.min + timedelta(days=1),
    max_value=datetime.max - timedelta(days=1),
    timezones=OFFSETS,
)
"""Aware date-times whose UTC form exists (every year 1..9999)."""


@settings(max_examples=200)
@given(st.lists(CONVERTIBLE, min_size=2, max_size=6))
def test_stored_form_sorts_like_time(values: list[datetime]) -> None:
    """`iso` is the one writer of stored times: fixed width for every year, in text order."""
    texts = [iso(v) for v in values]
    assert texts == [canonical(v) for v in values]
    assert sorted(texts) == [iso(v) for v in sorted(values)]


async def test_numbers_are_not_dates(mana_kit: ToolKit) -> None:
    """A number in a date field is refused, not read as Unix seconds or milliseconds (by its
    magnitude, 253402300799 would have been a day in 1978)."""
    user = await mana_kit.user()
    for tool, fields in sorted(dated_fields(mana_kit.registry).items()):
        for name in fields:
            for number in (0, 253402300799, -1.5):
                outcome = await mana_kit.call_as(user, None, tool, {name: number})
                assert outcome.status == "invalid-input", (tool, name, outcome.public())
                assert outcome.error is not None
                messages = {f.field: f.message for f in outcome.error.fields}
                assert "ISO 8601" in messages.get(name, ""), (tool, name, messages)
