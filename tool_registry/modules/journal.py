"""Journal: dated diary entries in the user's own words, optionally tagged with a mood."""

from __future__ import annotations

from datetime import UTC
from typing import Annotated, Literal

from pydantic import Field

from tool_registry.confirm import deletes
from tool_registry.context import ToolContext
from tool_registry.listing import Listing
from tool_registry.models import (
    Clear,
    Deleted,
    IsoDate,
    RecordId,
    ToolInput,
    ToolOutput,
    UpdateInput,
    check_day_range,
)
from tool_registry.spec import ToolSpec
from tool_registry.store.records import Filter, Record

MODULE = "journal"
ENTRIES = "journal_entries"

MoodTag = Literal["great", "good", "okay", "low", "bad"]
Text = Annotated[str, Field(min_length=1, max_length=20_000, description="The entry, as written.")]


class JournalEntry(ToolOutput):
    id: str
    date: str
    text: str
    mood_tag: MoodTag | None = None
    created_at: str
    updated_at: str

    @classmethod
    def of(cls, rec: Record) -> JournalEntry:
        return cls.model_validate(rec.as_dict())


# -- journal.add -------------------------------------------------------------------------------


class AddEntryInput(ToolInput):
    text: Text
    mood_tag: MoodTag | None = Field(
        default=None, description="Optional overall mood: great, good, okay, low or bad."
    )
    date: IsoDate | None = Field(
        default=None, description="Day the entry is about, YYYY-MM-DD; default today (UTC)."
    )


async def add_entry(inp: AddEntryInput, ctx: ToolContext) -> JournalEntry:
    day = inp.date or ctx.now().astimezone(UTC).date()
    data = {"date": day.isoformat(), "text": inp.text, "moodTag": inp.mood_tag}
    return JournalEntry.of(await ctx.store.insert(ENTRIES, data))


ADD = ToolSpec(
    name="journal.add",
    title="Add journal entry",
    description=(
        "Write a diary entry for a day (default today, UTC) with an optional mood tag "
        "(great, good, okay, low, bad). Several entries per day are fine. For a numeric "
        "mood rating use mood.log; for reference material use notes.create. Returns the entry."
    ),
    module=MODULE,
    scope="user-space",
    policy_hint="write",
    input=AddEntryInput,
    output=JournalEntry,
    handler=add_entry,
)


# -- journal.list ------------------------------------------------------------------------------


class ListEntriesInput(ToolInput):
    from_: IsoDate | None = Field(
        default=None, alias="from", description="First day to include, YYYY-MM-DD."
    )
    to: IsoDate | None = Field(default=None, description="Last day to include, YYYY-MM-DD.")
    limit: int = Field(default=30, ge=1, le=200, description="Maximum number of entries.")


class JournalEntries(ToolOutput):
    entries: list[JournalEntry]


async def list_entries(inp: ListEntriesInput, ctx: ToolContext) -> JournalEntries:
    check_day_range(inp.from_, inp.to)
    filters: list[Filter] = []
    if inp.from_ is not None:
        filters.append(Filter("date", "ge", inp.from_.isoformat()))
    if inp.to is not None:
        filters.append(Filter("date", "le", inp.to.isoformat()))
    listing = Listing(ctx, "journal entry", "journal entries", limit=inp.limit)
    records = await listing.read(
        ENTRIES, filters=filters, order_by="date", descending=True, limit=inp.limit
    )
    await listing.finish()
    return JournalEntries(entries=[JournalEntry.of(r) for r in records])


LIST = ToolSpec(
    name="journal.list",
    title="List journal entries",
    description=(
        "Read journal entries of the active space, newest day first, optionally between two "
        "dates (from and to, both inclusive, YYYY-MM-DD). Use it to recall what the user wrote "
        "about a period, or to find an entry's id for journal.update or journal.delete. Returns "
        "the entries with their id, text, date and mood tag."
    ),
    module=MODULE,
    scope="user-space",
    policy_hint="read",
    input=ListEntriesInput,
    output=JournalEntries,
    handler=list_entries,
)


# -- journal.update ----------------------------------------------------------------------------


class UpdateEntryInput(UpdateInput):
    id: RecordId
    text: Text | None = Field(default=None, description="New text; replaces the whole entry.")
    mood_tag: MoodTag | None = Field(
        default=None, description="New overall mood: great, good, okay, low or bad."
    )
    date: IsoDate | None = Field(default=None, description="New day the entry is about.")
    clear: Clear[Literal["moodTag"]] = None


async def update_entry(inp: UpdateEntryInput, ctx: ToolContext) -> JournalEntry:
    await ctx.store.require(ENTRIES, inp.id, label="journal entry")
    return JournalEntry.of(await ctx.store.update(ENTRIES, inp.id, inp.changes()))


UPDATE = ToolSpec(
    name="journal.update",
    title="Update journal entry",
    description=(
        "Change a journal entry's text, mood tag or date (YYYY-MM-DD). Only the fields you pass "
        "change; omitted or null fields keep their value, and a new text replaces the whole "
        'entry. To remove the mood tag, pass clear: ["moodTag"]. Find the id with '
        "journal.list. Returns the updated entry."
    ),
    module=MODULE,
    scope="user-space",
    policy_hint="write",
    idempotent=True,
    input=UpdateEntryInput,
    output=JournalEntry,
    handler=update_entry,
)


# -- journal.delete ----------------------------------------------------------------------------


class EntryIdInput(ToolInput):
    id: RecordId


async def delete_entry(inp: EntryIdInput, ctx: ToolContext) -> Deleted:
    return Deleted.of(await ctx.store.soft_delete(ENTRIES, inp.id))


DELETE = ToolSpec(
    name="journal.delete",
    title="Delete journal entry",
    description=(
        "Delete a journal entry (soft delete: it no longer shows up in journal.list). "
        "Destructive: only available where the space owner allowed it; to correct an entry "
        "use journal.update."
    ),
    module=MODULE,
    scope="user-space",
    policy_hint="destructive",
    idempotent=True,
    input=EntryIdInput,
    output=Deleted,
    handler=delete_entry,
    confirmation=deletes(ENTRIES, "the journal entry of {date}"),
)

TOOLS = (ADD, LIST, UPDATE, DELETE)
