"""Habits: recurring things the user wants to do, and logs of each time they did them."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Literal

from pydantic import Field

from tool_registry.clock import iso
from tool_registry.confirm import deletes
from tool_registry.context import ToolContext
from tool_registry.listing import Listing
from tool_registry.models import (
    Clear,
    Deleted,
    HexColor,
    IsoDateTime,
    RecordId,
    ToolInput,
    ToolOutput,
    UpdateInput,
)
from tool_registry.spec import ToolSpec
from tool_registry.store.records import Filter, Record

MODULE = "habits"
HABITS = "habits"
LOGS = "habit_logs"

Frequency = Literal["daily", "weekly"]
Name = Annotated[str, Field(min_length=1, max_length=80, description="Short habit name.")]


class Habit(ToolOutput):
    id: str
    name: str
    description: str | None = None
    frequency: Frequency
    target_per_period: int
    color: str | None = None
    archived: bool
    created_at: str
    updated_at: str

    @classmethod
    def of(cls, rec: Record) -> Habit:
        return cls.model_validate(rec.as_dict())


class HabitLog(ToolOutput):
    id: str
    habit_id: str
    at: str
    note: str | None = None


# -- habits.create -----------------------------------------------------------------------------


class CreateHabitInput(ToolInput):
    name: Name
    description: str | None = Field(default=None, max_length=500)
    frequency: Frequency = Field(default="daily", description="How often the habit repeats.")
    target_per_period: int = Field(
        default=1, ge=1, le=50, description="Completions wanted per day or week."
    )
    color: HexColor | None = None


async def create_habit(inp: CreateHabitInput, ctx: ToolContext) -> Habit:
    rec = await ctx.store.insert(HABITS, {**inp.model_dump(by_alias=True), "archived": False})
    return Habit.of(rec)


CREATE = ToolSpec(
    name="habits.create",
    title="Create habit",
    description=(
        "Create a new habit to track in the active space (e.g. 'Drink water', 8 times daily). "
        "Use habits.log to record a completion later. Returns the created habit with its id."
    ),
    module=MODULE,
    scope="user-space",
    policy_hint="write",
    input=CreateHabitInput,
    output=Habit,
    handler=create_habit,
)


# -- habits.list -------------------------------------------------------------------------------


class ListHabitsInput(ToolInput):
    include_archived: bool = Field(default=False, description="Also return archived habits.")


class HabitList(ToolOutput):
    habits: list[Habit]


async def list_habits(inp: ListHabitsInput, ctx: ToolContext) -> HabitList:
    filters = [] if inp.include_archived else [Filter("archived", "eq", False)]
    listing = Listing(ctx, "habit", "habits")
    records = await listing.read(HABITS, filters=filters)
    await listing.finish()
    # One validation call for the whole list: much cheaper than one per row.
    return HabitList.model_validate({"habits": [r.as_dict() for r in records]})


LIST = ToolSpec(
    name="habits.list",
    title="List habits",
    description=(
        "List the habits in the active space, oldest first. Archived habits are left out unless "
        "includeArchived is true. Use this to find a habit's id before logging or updating it."
    ),
    module=MODULE,
    scope="user-space",
    policy_hint="read",
    input=ListHabitsInput,
    output=HabitList,
    handler=list_habits,
)


# -- habits.update -----------------------------------------------------------------------------


class UpdateHabitInput(UpdateInput):
    id: RecordId
    name: Name | None = None
    description: str | None = Field(default=None, max_length=500)
    frequency: Frequency | None = None
    target_per_period: int | None = Field(default=None, ge=1, le=50)
    color: HexColor | None = None
    clear: Clear[Literal["description", "color"]] = None


async def update_habit(inp: UpdateHabitInput, ctx: ToolContext) -> Habit:
    await ctx.store.require(HABITS, inp.id, label="habit")
    return Habit.of(await ctx.store.update(HABITS, inp.id, inp.changes()))


UPDATE = ToolSpec(
    name="habits.update",
    title="Update habit",
    description=(
        "Change a habit's name, description, frequency, target or colour. Only the fields you "
        "pass change; omitted or null fields keep their value. To remove the description or "
        'the colour, list them in clear, e.g. clear: ["color"]. Returns the updated habit.'
    ),
    module=MODULE,
    scope="user-space",
    policy_hint="write",
    idempotent=True,
    input=UpdateHabitInput,
    output=Habit,
    handler=update_habit,
)


# -- habits.archive / habits.unarchive ---------------------------------------------------------


class HabitIdInput(ToolInput):
    id: RecordId


async def archive_habit(inp: HabitIdInput, ctx: ToolContext) -> Habit:
    await ctx.store.require(HABITS, inp.id, label="habit")
    return Habit.of(await ctx.store.update(HABITS, inp.id, {"archived": True}))


async def unarchive_habit(inp: HabitIdInput, ctx: ToolContext) -> Habit:
    await ctx.store.require(HABITS, inp.id, label="habit")
    return Habit.of(await ctx.store.update(HABITS, inp.id, {"archived": False}))


ARCHIVE = ToolSpec(
    name="habits.archive",
    title="Archive habit",
    description=(
        "Hide a habit from the default list without losing its history. Prefer this over "
        "habits.delete; habits.unarchive brings it back."
    ),
    module=MODULE,
    scope="user-space",
    policy_hint="write",
    idempotent=True,
    input=HabitIdInput,
    output=Habit,
    handler=archive_habit,
)

UNARCHIVE = ToolSpec(
    name="habits.unarchive",
    title="Unarchive habit",
    description="Bring an archived habit back into the default list.",
    module=MODULE,
    scope="user-space",
    policy_hint="write",
    idempotent=True,
    input=HabitIdInput,
    output=Habit,
    handler=unarchive_habit,
)


# -- habits.log --------------------------------------------------------------------------------


class LogHabitInput(ToolInput):
    habit_id: RecordId
    at: IsoDateTime | None = Field(default=None, description="When it was done; default now.")
    note: str | None = Field(default=None, max_length=500)


async def log_habit(inp: LogHabitInput, ctx: ToolContext) -> HabitLog:
    habit = await ctx.store.require(HABITS, inp.habit_id, label="habit")
    at = iso(inp.at or ctx.now())
    rec = await ctx.store.insert(LOGS, {"habitId": habit.id, "at": at, "note": inp.note})
    return HabitLog(id=rec.id, habit_id=habit.id, at=at, note=inp.note)


LOG = ToolSpec(
    name="habits.log",
    title="Log habit completion",
    description=(
        "Record that the user did a habit, at a given time (default now). Needs the habit's id "
        "from habits.list. Returns the log entry."
    ),
    module=MODULE,
    scope="user-space",
    policy_hint="write",
    input=LogHabitInput,
    output=HabitLog,
    handler=log_habit,
)


# -- habits.recentLogs -------------------------------------------------------------------------


class RecentLogsInput(ToolInput):
    days: int = Field(default=7, ge=1, le=365, description="How many days back to look.")
    habit_id: RecordId | None = Field(default=None, description="Only this habit's logs.")


class RecentLogs(ToolOutput):
    since: str
    logs: list[HabitLog]


async def recent_logs(inp: RecentLogsInput, ctx: ToolContext) -> RecentLogs:
    since = iso(ctx.now() - timedelta(days=inp.days))
    filters = [Filter("at", "ge", since)]
    if inp.habit_id:
        filters.append(Filter("habitId", "eq", inp.habit_id))
    listing = Listing(ctx, "habit log", "habit logs")
    records = await listing.read(LOGS, filters=filters, order_by="at", descending=True)
    await listing.finish()
    return RecentLogs(
        since=since,
        logs=[
            HabitLog(id=r.id, habit_id=r.data["habitId"], at=r.data["at"], note=r.data.get("note"))
            for r in records
        ],
    )


RECENT_LOGS = ToolSpec(
    name="habits.recentLogs",
    title="Recent habit logs",
    description=(
        "Completions logged in the last N days (default 7), newest first, optionally for one "
        "habit. Use it to answer 'how am I doing on my habits?'."
    ),
    module=MODULE,
    scope="user-space",
    policy_hint="read",
    input=RecentLogsInput,
    output=RecentLogs,
    handler=recent_logs,
)


# -- habits.delete -----------------------------------------------------------------------------


async def delete_habit(inp: HabitIdInput, ctx: ToolContext) -> Deleted:
    return Deleted.of(await ctx.store.soft_delete(HABITS, inp.id))


DELETE = ToolSpec(
    name="habits.delete",
    title="Delete habit",
    description=(
        "Delete a habit (soft delete: it disappears from every list). Destructive: only "
        "available where the space owner allowed it; prefer habits.archive."
    ),
    module=MODULE,
    scope="user-space",
    policy_hint="destructive",
    idempotent=True,
    input=HabitIdInput,
    output=Deleted,
    handler=delete_habit,
    confirmation=deletes(HABITS, "the habit '{name}'"),
)

TOOLS = (CREATE, LIST, UPDATE, ARCHIVE, UNARCHIVE, LOG, RECENT_LOGS, DELETE)
