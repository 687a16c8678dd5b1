"""Prompts built from the active space's data: "weekly review", "plan my day" and "journal
reflection", with argument completion (habit names, contact names, note titles).

Each prompt belongs to the module its space-type rule follows (`habits`, `calendar`, `journal`)
and includes data of other modules only when the space may use them (`ViewContext.allows`), so
a family space's "plan my day" never mentions habits. Everything is read through the view's
read-only store, bound to the caller and the active space.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime, time, timedelta

from tool_registry.clock import iso
from tool_registry.modules.calendar import EVENTS
from tool_registry.modules.contacts import CONTACTS
from tool_registry.modules.habits import HABITS, LOGS
from tool_registry.modules.journal import ENTRIES as JOURNAL
from tool_registry.modules.mood import ENTRIES as MOODS
from tool_registry.modules.notes import NOTES
from tool_registry.modules.todo import TODOS
from tool_registry.prompts import PromptArgument, PromptMessage, PromptSpec
from tool_registry.store.records import Filter
from tool_registry.views import ViewContext, ViewError, candidates, unique

EXCERPT_CHARS = 300
MAX_ITEMS = 50


def _day(args: Mapping[str, str], name: str, ctx: ViewContext) -> date:
    """The date argument `name` (YYYY-MM-DD), today (UTC) when absent."""
    raw = args.get(name)
    if not raw:
        return ctx.tool.now().date()
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise ViewError(
            f"{name} must be a date written YYYY-MM-DD, got {raw!r}",
            reason="invalid-input",
            status="invalid-input",
        ) from None


def _start(day: date) -> str:
    """The first instant of `day` (UTC) as stored timestamps are written."""
    return iso(datetime.combine(day, time.min, tzinfo=UTC))


def _excerpt(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= EXCERPT_CHARS else text[: EXCERPT_CHARS - 1] + "…"


def _section(title: str, lines: list[str]) -> str:
    body = "\n".join(f"- {line}" for line in lines[:MAX_ITEMS]) if lines else "- (none)"
    return f"## {title}\n{body}"


async def _names(ctx: ViewContext, collection: str, field: str, prefix: str) -> list[str]:
    records = await candidates(ctx, collection, field, prefix)
    return unique([str(r.data[field]) for r in records if r.data.get(field)])


async def complete_habit(prefix: str, ctx: ViewContext) -> list[str]:
    return await _names(ctx, HABITS, "name", prefix) if ctx.allows("habits") else []


async def complete_contact(prefix: str, ctx: ViewContext) -> list[str]:
    return await _names(ctx, CONTACTS, "name", prefix) if ctx.allows("contacts") else []


async def complete_note_title(prefix: str, ctx: ViewContext) -> list[str]:
    return await _names(ctx, NOTES, "title", prefix) if ctx.allows("notes") else []


# -- weekly review -----------------------------------------------------------------------------


async def render_weekly_review(args: Mapping[str, str], ctx: ViewContext) -> list[PromptMessage]:
    end = _day(args, "weekEnding", ctx)
    first = end - timedelta(days=6)
    since, until = _start(first), _start(end + timedelta(days=1))
    store = ctx.tool.store
    sections = []
    if ctx.allows("habits"):
        habits = await store.list(HABITS, filters=[Filter("archived", "eq", False)])
        logs = await store.list(
            LOGS, filters=[Filter("at", "ge", since), Filter("at", "lt", until)]
        )
        done: dict[str, int] = {}
        for log in logs:
            done[log.data["habitId"]] = done.get(log.data["habitId"], 0) + 1
        sections.append(
            _section(
                "Habits (times logged this week)",
                [f"{h.data['name']}: {done.get(h.id, 0)}" for h in habits],
            )
        )
    if ctx.allows("todo"):
        completed = await store.list(
            TODOS, filters=[Filter("completedAt", "ge", since), Filter("completedAt", "lt", until)]
        )
        still_open = await store.list(TODOS, filters=[Filter("done", "eq", False)])
        sections.append(_section("Todos completed", [t.data["title"] for t in completed]))
        sections.append(
            _section(
                "Todos still open",
                [
                    t.data["title"]
                    + (f" (due {t.data['dueDate']})" if t.data.get("dueDate") else "")
                    for t in still_open
                ],
            )
        )
    if ctx.allows("journal"):
        entries = await store.list(
            JOURNAL,
            filters=[
                Filter("date", "ge", first.isoformat()),
                Filter("date", "le", end.isoformat()),
            ],
            order_by="date",
        )
        sections.append(
            _section("Journal", [f"{e.data['date']}: {_excerpt(e.data['text'])}" for e in entries])
        )
    if ctx.allows("mood"):
        moods = await store.list(
            MOODS, filters=[Filter("at", "ge", since), Filter("at", "lt", until)]
        )
        scores = [int(m.data["score"]) for m in moods]
        summary = (
            f"{len(scores)} entries, average {sum(scores) / len(scores):.1f}" if scores else ""
        )
        sections.append(_section("Mood", [summary] if summary else []))
    focus = args.get("focusHabit")
    ask = (
        f"Please write my weekly review for {first.isoformat()} to {end.isoformat()}: what went "
        "well, what slipped, and two or three concrete intentions for next week."
    )
    if focus:
        ask += f" Pay special attention to my habit {focus!r}."
    return [PromptMessage(role="user", text=ask + "\n\n" + "\n\n".join(sections))]


WEEKLY_REVIEW = PromptSpec(
    name="weekly-review",
    title="Weekly review",
    description=(
        "Review the last seven days of this space: habits logged, todos done and open, journal "
        "entries and mood, and ask for intentions for next week."
    ),
    module="habits",
    arguments=(
        PromptArgument("weekEnding", "Last day of the week to review, YYYY-MM-DD (default today)."),
        PromptArgument("focusHabit", "A habit to look at closely.", complete=complete_habit),
    ),
    render=render_weekly_review,
)


# -- plan my day -------------------------------------------------------------------------------


async def render_plan_my_day(args: Mapping[str, str], ctx: ViewContext) -> list[PromptMessage]:
    day = _day(args, "date", ctx)
    since, until = _start(day), _start(day + timedelta(days=1))
    store = ctx.tool.store
    events = await store.list(
        EVENTS,
        filters=[Filter("start", "lt", until), Filter("end", "gt", since)],
        order_by="start",
    )
    sections = [
        _section(
            "Calendar",
            [
                f"{e.data['start']}–{e.data['end']}: {e.data['title']}"
                + (f" at {e.data['location']}" if e.data.get("location") else "")
                for e in events
            ],
        )
    ]
    if ctx.allows("todo"):
        todos = await store.list(
            TODOS,
            filters=[Filter("done", "eq", False), Filter("dueDate", "le", day.isoformat())],
            order_by="dueDate",
        )
        sections.append(
            _section("Todos due", [f"{t.data['title']} (due {t.data['dueDate']})" for t in todos])
        )
    if ctx.allows("habits"):
        habits = await store.list(HABITS, filters=[Filter("archived", "eq", False)])
        sections.append(_section("Habits", [h.data["name"] for h in habits]))
    who = args.get("meetingWith")
    if who and ctx.allows("contacts"):
        people = await store.list(CONTACTS, filters=[Filter("name", "eq", who)], limit=1)
        sections.append(
            _section(
                f"About {who}",
                [_excerpt(p.data.get("notes") or "no notes") for p in people]
                or ["not in contacts"],
            )
        )
    ask = (
        f"Help me plan {day.isoformat()}: order my day around the calendar, fit in what is due, "
        "and keep it realistic."
    )
    if who:
        ask += f" I am meeting {who}; help me prepare."
    return [PromptMessage(role="user", text=ask + "\n\n" + "\n\n".join(sections))]


PLAN_MY_DAY = PromptSpec(
    name="plan-my-day",
    title="Plan my day",
    description=(
        "Plan one day from this space's calendar and what is due (todos and habits where the "
        "space has them), optionally preparing a meeting with a contact."
    ),
    module="calendar",
    arguments=(
        PromptArgument("date", "The day to plan, YYYY-MM-DD (default today)."),
        PromptArgument("meetingWith", "A contact you meet that day.", complete=complete_contact),
    ),
    render=render_plan_my_day,
)


# -- journal reflection ------------------------------------------------------------------------


async def render_journal_reflection(
    args: Mapping[str, str], ctx: ViewContext
) -> list[PromptMessage]:
    raw_days = args.get("days") or "7"
    if not raw_days.isdigit() or not 1 <= int(raw_days) <= 90:
        raise ViewError(
            f"days must be a whole number from 1 to 90, got {raw_days!r}",
            reason="invalid-input",
            status="invalid-input",
        )
    today = ctx.tool.now().date()
    first = today - timedelta(days=int(raw_days) - 1)
    store = ctx.tool.store
    entries = await store.list(
        JOURNAL, filters=[Filter("date", "ge", first.isoformat())], order_by="date"
    )
    sections = [
        _section(
            "Journal entries",
            [
                f"{e.data['date']}"
                + (f" [{e.data['moodTag']}]" if e.data.get("moodTag") else "")
                + f": {_excerpt(e.data['text'])}"
                for e in entries
            ],
        )
    ]
    if ctx.allows("mood"):
        moods = await store.list(MOODS, filters=[Filter("at", "ge", _start(first))], order_by="at")
        sections.append(
            _section("Mood scores", [f"{m.data['at']}: {m.data['score']}" for m in moods])
        )
    note_title = args.get("note")
    if note_title and ctx.allows("notes"):
        notes = await store.list(NOTES, filters=[Filter("title", "eq", note_title)], limit=1)
        sections.append(
            _section(f"Note: {note_title}", [_excerpt(n.data.get("body") or "") for n in notes])
        )
    ask = (
        f"Reflect with me on my journal from {first.isoformat()} to {today.isoformat()}: recurring "
        "themes, what seems to lift or lower my mood, and one gentle question to write about next."
    )
    return [PromptMessage(role="user", text=ask + "\n\n" + "\n\n".join(sections))]


JOURNAL_REFLECTION = PromptSpec(
    name="journal-reflection",
    title="Journal reflection",
    description=(
        "Reflect on the recent journal entries (and mood scores) of this space, optionally "
        "together with one note."
    ),
    module="journal",
    arguments=(
        PromptArgument("days", "How many days back to read, 1-90 (default 7)."),
        PromptArgument("note", "Title of a note to reflect on too.", complete=complete_note_title),
    ),
    render=render_journal_reflection,
)

PROMPTS = (WEEKLY_REVIEW, PLAN_MY_DAY, JOURNAL_REFLECTION)
