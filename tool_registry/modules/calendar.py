"""Calendar: events with a start and an end time, listed by the time range they overlap."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Literal

from pydantic import Field

from tool_registry.clock import iso
from tool_registry.confirm import deletes
from tool_registry.context import ToolContext
from tool_registry.errors import ToolError
from tool_registry.listing import Listing
from tool_registry.models import (
    Clear,
    Deleted,
    IsoDateTime,
    RecordId,
    ToolInput,
    ToolOutput,
    UpdateInput,
)
from tool_registry.spec import ToolSpec
from tool_registry.store.records import Filter, Record

MODULE = "calendar"
EVENTS = "calendar_events"
DEFAULT_WINDOW = timedelta(days=30)


Title = Annotated[str, Field(min_length=1, max_length=200, description="What the event is.")]
Location = Annotated[str, Field(max_length=200, description="Where it takes place.")]
Notes = Annotated[str, Field(max_length=5000, description="Free-text details.")]


class Event(ToolOutput):
    id: str
    title: str
    start: str = Field(description="Start, UTC, ISO 8601.")
    end: str = Field(description="End, UTC, ISO 8601.")
    location: str | None = None
    notes: str | None = None
    created_at: str
    updated_at: str

    @classmethod
    def of(cls, rec: Record) -> Event:
        return cls.model_validate(rec.as_dict())


def _check_order(start: str, end: str) -> None:
    """Both in the canonical UTC text form, where text order equals time order."""
    if end < start:
        raise ToolError(
            f"the event would end ({end}) before it starts ({start})", reason="invalid-range"
        )


# -- calendar.create ---------------------------------------------------------------------------


class CreateEventInput(ToolInput):
    title: Title
    start: IsoDateTime = Field(description="Start, ISO 8601 with offset.")
    end: IsoDateTime = Field(description="End, ISO 8601 with offset; not before start.")
    location: Location | None = None
    notes: Notes | None = None


async def create_event(inp: CreateEventInput, ctx: ToolContext) -> Event:
    start, end = iso(inp.start), iso(inp.end)
    _check_order(start, end)
    data = {**inp.model_dump(by_alias=True), "start": start, "end": end}
    return Event.of(await ctx.store.insert(EVENTS, data))


CREATE = ToolSpec(
    name="calendar.create",
    title="Create calendar event",
    description=(
        "Put an event in the active space's calendar. start and end are ISO 8601 date-times "
        "with a timezone offset (e.g. 2026-11-21T09:30:00+01:00); end may equal start but not "
        "precede it. For a task without a fixed time use todo.create. Returns the event, with "
        "times converted to UTC."
    ),
    module=MODULE,
    scope="user-space",
    policy_hint="write",
    input=CreateEventInput,
    output=Event,
    handler=create_event,
)


# -- calendar.list -----------------------------------------------------------------------------


class ListEventsInput(ToolInput):
    from_: IsoDateTime | None = Field(
        default=None, alias="from", description="Range start, ISO 8601 with offset; default now."
    )
    to: IsoDateTime | None = Field(
        default=None,
        description="Range end (exclusive), ISO 8601 with offset; default from + 30 days.",
    )
    limit: int = Field(default=100, ge=1, le=500, description="Maximum number of events.")


class EventList(ToolOutput):
    from_: str = Field(alias="from")
    to: str
    events: list[Event]


async def list_events(inp: ListEventsInput, ctx: ToolContext) -> EventList:
    lower = inp.from_ or ctx.now()
    frm, to = iso(lower), iso(inp.to or lower + DEFAULT_WINDOW)
    if to < frm:
        raise ToolError(f"'to' ({to}) is before 'from' ({frm})", reason="invalid-range")
    # Events already running at `from`, then events starting inside [from, to): both by start.
    listing = Listing(ctx, "event", "events", limit=inp.limit)
    running = await listing.read(
        EVENTS,
        filters=[Filter("start", "lt", frm), Filter("end", "gt", frm)],
        order_by="start",
        limit=inp.limit,
    )
    starting = await listing.read(
        EVENTS,
        filters=[Filter("start", "ge", frm), Filter("start", "lt", to)],
        order_by="start",
        limit=inp.limit - len(running),
    )
    await listing.finish()
    return EventList(from_=frm, to=to, events=[Event.of(r) for r in [*running, *starting]])


LIST = ToolSpec(
    name="calendar.list",
    title="List calendar events",
    description=(
        "Events in the active space that overlap a time range (from inclusive, to exclusive; "
        "default the next 30 days from now), ordered by start. An event that began before "
        "'from' but is still running is included. Returns the range used (UTC) and the events "
        "with their ids, for calendar.update or calendar.delete."
    ),
    module=MODULE,
    scope="user-space",
    policy_hint="read",
    input=ListEventsInput,
    output=EventList,
    handler=list_events,
)


# -- calendar.update ---------------------------------------------------------------------------


class UpdateEventInput(UpdateInput):
    id: RecordId
    title: Title | None = None
    start: IsoDateTime | None = Field(default=None, description="New start, with offset.")
    end: IsoDateTime | None = Field(default=None, description="New end, with offset.")
    location: Location | None = None
    notes: Notes | None = None
    clear: Clear[Literal["location", "notes"]] = None


async def update_event(inp: UpdateEventInput, ctx: ToolContext) -> Event:
    current = await ctx.store.require(EVENTS, inp.id, label="event")
    changes = inp.changes()
    if inp.start is not None:
        changes["start"] = iso(inp.start)
    if inp.end is not None:
        changes["end"] = iso(inp.end)
    _check_order(
        changes.get("start", current.data["start"]), changes.get("end", current.data["end"])
    )
    return Event.of(await ctx.store.update(EVENTS, inp.id, changes))


UPDATE = ToolSpec(
    name="calendar.update",
    title="Update calendar event",
    description=(
        "Change an event's title, start, end, location or notes. Only the fields you pass "
        "change; omitted or null fields keep their value. To remove the location or the "
        'notes, list them in clear, e.g. clear: ["location"]. Moving only the start or only '
        "the end is checked against the stored other end (the event may not end before it "
        "starts). Returns the updated event."
    ),
    module=MODULE,
    scope="user-space",
    policy_hint="write",
    idempotent=True,
    input=UpdateEventInput,
    output=Event,
    handler=update_event,
)


# -- calendar.delete ---------------------------------------------------------------------------


class EventIdInput(ToolInput):
    id: RecordId


async def delete_event(inp: EventIdInput, ctx: ToolContext) -> Deleted:
    return Deleted.of(await ctx.store.soft_delete(EVENTS, inp.id))


DELETE = ToolSpec(
    name="calendar.delete",
    title="Delete calendar event",
    description=(
        "Delete an event (soft delete: it disappears from calendar.list). Destructive: only "
        "available where the space owner allowed it; to reschedule use calendar.update."
    ),
    module=MODULE,
    scope="user-space",
    policy_hint="destructive",
    idempotent=True,
    input=EventIdInput,
    output=Deleted,
    handler=delete_event,
    confirmation=deletes(EVENTS, "the event '{title}'"),
)

TOOLS = (CREATE, LIST, UPDATE, DELETE)
