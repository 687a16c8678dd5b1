"""Mood: quick 1-5 ratings of how the user feels, with an optional note, and their average."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Literal

from pydantic import Field

from tool_registry.clock import iso
from tool_registry.confirm import deletes
from tool_registry.context import ToolContext
from tool_registry.listing import Listing
from tool_registry.models import (
    Clear,
    Deleted,
    IsoDate,
    IsoDateTime,
    RecordId,
    ToolInput,
    ToolOutput,
    UpdateInput,
    check_day_range,
)
from tool_registry.spec import ToolSpec
from tool_registry.store.records import Filter, Record

MODULE = "mood"
ENTRIES = "mood_entries"

Score = Annotated[int, Field(ge=1, le=5, description="1 = very bad, 3 = okay, 5 = very good.")]
Note = Annotated[str, Field(max_length=500, description="What is behind it.")]


class MoodEntry(ToolOutput):
    id: str
    score: int
    note: str | None = None
    at: str
    created_at: str
    updated_at: str

    @classmethod
    def of(cls, rec: Record) -> MoodEntry:
        return cls.model_validate(rec.as_dict())


# -- mood.log ----------------------------------------------------------------------------------


class LogMoodInput(ToolInput):
    score: Score
    note: str | None = Field(default=None, max_length=500, description="What is behind it.")
    at: IsoDateTime | None = Field(
        default=None, description="When the user felt this, ISO 8601 with offset; default now."
    )


async def log_mood(inp: LogMoodInput, ctx: ToolContext) -> MoodEntry:
    data = {"score": inp.score, "note": inp.note, "at": iso(inp.at or ctx.now())}
    return MoodEntry.of(await ctx.store.insert(ENTRIES, data))


LOG = ToolSpec(
    name="mood.log",
    title="Log mood",
    description=(
        "Record how the user feels as a score from 1 (very bad) to 5 (very good), with an "
        "optional short note, at a given time (default now). For a written diary entry use "
        "journal.add. Returns the logged entry."
    ),
    module=MODULE,
    scope="user-space",
    policy_hint="write",
    input=LogMoodInput,
    output=MoodEntry,
    handler=log_mood,
)


# -- mood.list ---------------------------------------------------------------------------------


class ListMoodInput(ToolInput):
    from_: IsoDate | None = Field(
        default=None, alias="from", description="First day to include (UTC), YYYY-MM-DD."
    )
    to: IsoDate | None = Field(default=None, description="Last day to include (UTC), YYYY-MM-DD.")
    limit: int = Field(default=50, ge=1, le=500, description="Maximum number of entries.")


class MoodEntries(ToolOutput):
    entries: list[MoodEntry]
    average: float | None = Field(
        description="Mean score of the returned entries, 2 decimals; null when there are none."
    )


def _day_start(day: date) -> str:
    """Midnight UTC at the start of `day`, in the stored text form."""
    return iso(datetime.combine(day, time(0), tzinfo=UTC))


async def list_mood(inp: ListMoodInput, ctx: ToolContext) -> MoodEntries:
    check_day_range(inp.from_, inp.to)
    filters: list[Filter] = []
    if inp.from_ is not None:
        filters.append(Filter("at", "ge", _day_start(inp.from_)))
    if inp.to is not None:
        filters.append(Filter("at", "lt", _day_start(inp.to + timedelta(days=1))))
    listing = Listing(ctx, "mood entry", "mood entries", limit=inp.limit)
    records = await listing.read(
        ENTRIES, filters=filters, order_by="at", descending=True, limit=inp.limit
    )
    await listing.finish()
    entries = [MoodEntry.of(r) for r in records]
    average = round(sum(e.score for e in entries) / len(entries), 2) if entries else None
    return MoodEntries(entries=entries, average=average)


LIST = ToolSpec(
    name="mood.list",
    title="List mood entries",
    description=(
        "Mood entries of the active space, newest first, optionally between two days (from and "
        "to, inclusive, UTC), plus the average score of the returned entries (null if none). "
        "Use it to answer 'how have I been feeling lately?', or to find an entry's id for "
        "mood.update or mood.delete."
    ),
    module=MODULE,
    scope="user-space",
    policy_hint="read",
    input=ListMoodInput,
    output=MoodEntries,
    handler=list_mood,
)


# -- mood.update -------------------------------------------------------------------------------


class UpdateMoodInput(UpdateInput):
    id: RecordId
    score: Score | None = None
    note: Note | None = Field(default=None, description="New note; replaces the old one.")
    clear: Clear[Literal["note"]] = None


async def update_mood(inp: UpdateMoodInput, ctx: ToolContext) -> MoodEntry:
    await ctx.store.require(ENTRIES, inp.id, label="mood entry")
    return MoodEntry.of(await ctx.store.update(ENTRIES, inp.id, inp.changes()))


UPDATE = ToolSpec(
    name="mood.update",
    title="Update mood entry",
    description=(
        "Correct a logged mood entry: its score (1 very bad to 5 very good) or its note. Only "
        "the fields you pass change; omitted or null fields keep their value. To remove the "
        'note, pass clear: ["note"]. Find the id with mood.list. Returns the updated entry.'
    ),
    module=MODULE,
    scope="user-space",
    policy_hint="write",
    idempotent=True,
    input=UpdateMoodInput,
    output=MoodEntry,
    handler=update_mood,
)


# -- mood.delete -------------------------------------------------------------------------------


class MoodIdInput(ToolInput):
    id: RecordId


async def delete_mood(inp: MoodIdInput, ctx: ToolContext) -> Deleted:
    return Deleted.of(await ctx.store.soft_delete(ENTRIES, inp.id))


DELETE = ToolSpec(
    name="mood.delete",
    title="Delete mood entry",
    description=(
        "Delete a mood entry (soft delete: it no longer shows up in mood.list or its average). "
        "Destructive: only available where the space owner allowed it; to correct a score or "
        "note use mood.update."
    ),
    module=MODULE,
    scope="user-space",
    policy_hint="destructive",
    idempotent=True,
    input=MoodIdInput,
    output=Deleted,
    handler=delete_mood,
    confirmation=deletes(ENTRIES, "the mood entry of {at}"),
)

TOOLS = (LOG, LIST, UPDATE, DELETE)
