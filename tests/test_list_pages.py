"""Paged reads and list progress on both backends (`database_target`): `ScopedStore.pages`
returns exactly the rows of one `list` query whatever the page size, order, direction, ties,
missing values or mixed JSON types of the order field; a row deleted or added between two
pages repeats nothing; and the list tools report progress through the call's channel (after
every page another follows, then the real count as total) with the same result as without."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Mapping, Sequence
from typing import Any

import pytest

from tool_registry.client_channel import NoChannel
from tool_registry.context import CallContext
from tool_registry.errors import ValidationFailed
from tool_registry.membership import require_member
from tool_registry.store.accounts import User
from tool_registry.store.records import Filter, Page, ReadRunner, Record, ScopedStore
from tool_registry.testing import ToolKit

Progress = tuple[float, float | None, str | None]


class RecordingChannel(NoChannel):
    """A client that asked for progress: keeps every report."""

    def __init__(self) -> None:
        self.reported: list[Progress] = []

    async def progress(
        self, progress: float, total: float | None = None, message: str | None = None
    ) -> None:
        self.reported.append((progress, total, message))


async def _insert(
    kit: ToolKit, user: User, collection: str, rows: Sequence[Mapping[str, Any]]
) -> None:
    access = await require_member(kit.accounts, user.id, None)
    async with kit.db.transaction() as tx:
        store = ScopedStore(
            tx, user_id=user.id, access=access, clock=kit.pipeline.clock, writable=True
        )
        for data in rows:
            await store.insert(collection, data)


async def _reader(kit: ToolKit, user: User) -> ScopedStore:
    access = await require_member(kit.accounts, user.id, None)
    return ScopedStore(
        ReadRunner(kit.db),
        user_id=user.id,
        access=access,
        clock=kit.pipeline.clock,
        writable=False,
    )


def _mixed(i: int) -> dict[str, Any]:
    """Order values of every kind SQL sees: missing, JSON null, numbers, booleans, strings,
    with ties, nested under `k.v` too."""
    kinds: list[Any] = [None, "missing", 3, 1.5, True, False, "b", "a", "B", "é", 3, "b"]
    value = kinds[i % len(kinds)]
    data: dict[str, Any] = {"n": i, "even": i % 2 == 0}
    if value != "missing":
        data["k"] = value
        data["nest"] = {"v": value}
    return data


async def test_pages_concatenate_to_the_list(mana_kit: ToolKit) -> None:
    user = await mana_kit.user()
    await _insert(mana_kit, user, "things", [_mixed(i) for i in range(37)])
    store = await _reader(mana_kit, user)
    for order_by in ("k", "nest.v", "created_at", "n"):
        for descending in (False, True):
            for filters in ([], [Filter("even", "eq", True)]):
                for limit in (None, 1, 10, 36, 50):
                    whole = await store.list(
                        "things",
                        filters=filters,
                        order_by=order_by,
                        descending=descending,
                        limit=limit,
                    )
                    assert whole, (order_by, descending, limit)
                    for size in (1, 4, 100):
                        pages = [
                            page
                            async for page in store.pages(
                                "things",
                                filters=filters,
                                order_by=order_by,
                                descending=descending,
                                limit=limit,
                                page_size=size,
                            )
                        ]
                        got = [r.id for page in pages for r in page.records]
                        case = (order_by, descending, filters, limit, size)
                        assert got == [r.id for r in whole], case
                        assert [p.more for p in pages] == [True] * (len(pages) - 1) + [False]
                        assert all(len(p.records) == size for p in pages[:-1]), case


async def test_a_row_deleted_or_added_between_pages_repeats_nothing(mana_kit: ToolKit) -> None:
    user = await mana_kit.user()
    await _insert(mana_kit, user, "things", [{"n": i} for i in range(10)])
    store = await _reader(mana_kit, user)
    access = await require_member(mana_kit.accounts, user.id, None)
    seen: list[Record] = []
    async for page in store.pages("things", order_by="n", page_size=4):
        if not seen:
            async with mana_kit.db.transaction() as tx:
                writer = ScopedStore(
                    tx, user_id=user.id, access=access, clock=mana_kit.pipeline.clock, writable=True
                )
                await writer.soft_delete("things", page.records[0].id)
                await writer.insert("things", {"n": -1})  # sorts before the position reached
        seen.extend(page.records)
    assert [r.data["n"] for r in seen] == list(range(10))


async def test_an_object_in_the_order_field_cannot_be_paged(mana_kit: ToolKit) -> None:
    user = await mana_kit.user()
    await _insert(mana_kit, user, "things", [{"k": {"a": 1}}, {"k": {"a": 2}}])
    store = await _reader(mana_kit, user)
    with pytest.raises(ValidationFailed, match="holds an object or a list"):
        async for _ in store.pages("things", order_by="k", page_size=1):
            pass


async def _call(
    kit: ToolKit, user: User, tool: str, args: dict[str, Any], channel: NoChannel
) -> dict[str, Any]:
    call = CallContext(user_id=user.id, invoker="mcp", channel=channel)
    outcome = await kit.pipeline.invoke(tool, args, call)
    assert outcome.ok, outcome.public()
    assert outcome.result is not None
    return outcome.result


async def _progress(kit: ToolKit, user: User, tool: str, args: dict[str, Any]) -> list[Progress]:
    """The progress `tool` reports, checking its result equals the one without a client."""
    channel = RecordingChannel()
    with_progress = await _call(kit, user, tool, args, channel)
    assert with_progress == await _call(kit, user, tool, args, NoChannel())
    return channel.reported


def _mood(i: int) -> dict[str, Any]:
    return {"score": 1 + i % 5, "note": None, "at": f"2026-10-{1 + i % 28:02d}T{i % 24:02d}:00:00Z"}


async def test_list_tools_report_progress_per_page(mana_kit: ToolKit) -> None:
    user = await mana_kit.user()
    await _insert(mana_kit, user, "mood_entries", [_mood(i) for i in range(250)])
    reported = await _progress(mana_kit, user, "mood.list", {"limit": 500})
    assert reported == [
        (100, 500, "Listed 100 of up to 500 mood entries"),
        (200, 500, "Listed 200 of up to 500 mood entries"),
        (250, 250, "Listed 250 mood entries"),
    ]
    # Exactly the limit: the last page is full and nothing follows it.
    assert [p[:2] for p in await _progress(mana_kit, user, "mood.list", {"limit": 200})] == [
        (100, 200),
        (200, 200),
    ]
    # A short list reports once, at its end.
    assert await _progress(mana_kit, user, "mood.list", {"limit": 1}) == [
        (1, 1, "Listed 1 mood entry")
    ]


async def test_two_queries_count_as_one_list(mana_kit: ToolKit) -> None:
    user = await mana_kit.user()
    dated = [
        {
            "title": f"d{i}",
            "priority": "normal",
            "done": False,
            "dueDate": f"2026-12-{1 + i % 28:02d}",
        }
        for i in range(150)
    ]
    undated = [{"title": f"u{i}", "priority": "normal", "done": False} for i in range(40)]
    await _insert(mana_kit, user, "todos", [*dated, *undated])
    reported = await _progress(mana_kit, user, "todo.list", {"limit": 200})
    assert [p[:2] for p in reported] == [(100, 200), (190, 190)]
    result = await _call(mana_kit, user, "todo.list", {"limit": 200}, NoChannel())
    assert len(result["todos"]) == 190


async def test_lists_without_a_limit_and_searches_report_their_end(mana_kit: ToolKit) -> None:
    user = await mana_kit.user()
    habits = [
        {"name": f"h{i}", "frequency": "daily", "targetPerPeriod": 1, "archived": False}
        for i in range(120)
    ]
    await _insert(mana_kit, user, "habits", habits)
    reported = await _progress(mana_kit, user, "habits.list", {})
    assert reported == [(100, None, "Listed 100 habits so far"), (120, 120, "Listed 120 habits")]
    await _insert(mana_kit, user, "notes", [{"title": "Walk", "body": "", "tags": []}])
    assert await _progress(mana_kit, user, "notes.search", {"query": "walk"}) == [
        (1, 1, "Listed 1 note")
    ]
    assert await _progress(mana_kit, user, "contacts.search", {}) == [(0, 0, "Listed 0 contacts")]


class StalledChannel(NoChannel):
    """A client whose first progress report never completes (a slow or gone client)."""

    def __init__(self) -> None:
        self.reporting = asyncio.Event()

    async def progress(
        self, progress: float, total: float | None = None, message: str | None = None
    ) -> None:
        self.reporting.set()
        await asyncio.Event().wait()


async def test_a_call_cancelled_between_pages_closes_its_read_at_once(
    mana_kit: ToolKit, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = await mana_kit.user()
    await _insert(mana_kit, user, "mood_entries", [_mood(i) for i in range(150)])
    closed: list[bool] = []
    pages = ScopedStore.pages

    async def watched(self: ScopedStore, *args: Any, **kwargs: Any) -> AsyncGenerator[Page, None]:
        try:
            async for page in pages(self, *args, **kwargs):
                yield page
        finally:
            closed.append(True)

    monkeypatch.setattr(ScopedStore, "pages", watched)
    channel = StalledChannel()
    call = CallContext(user_id=user.id, invoker="mcp", channel=channel)
    task = asyncio.create_task(mana_kit.pipeline.invoke("mood.list", {"limit": 500}, call))
    await channel.reporting.wait()
    assert closed == []
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert closed == [True]
