"""The question a person confirms before a destructive call runs, in the tool's own words.

A destructive `ToolSpec` may declare `confirmation`: given the parsed input and a context whose
store is read-only, it names what the call is about to do ("Delete the habit 'Walk'? It cannot
be undone."), or returns None when it cannot (the record is gone, the input names none). The
pipeline then asks `generic_question`. Asking never writes: the text is built before any write
transaction starts (see `Pipeline.invoke`).
"""

from __future__ import annotations

import string
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

if TYPE_CHECKING:
    from tool_registry.context import ToolContext
    from tool_registry.spec import ToolSpec

ConfirmText = Callable[[Any, "ToolContext"], Awaitable[str | None]]

# The form of every confirmation: one required boolean the user ticks (clients also show
# accept / decline buttons; only an accepted form with `confirm: true` lets the call run).
CONFIRM_FIELD = "confirm"
MAX_SHOWN_CHARS = 80
UNDO_NOTE = "It cannot be undone."


def confirm_schema() -> dict[str, Any]:
    """The elicitation form of a confirmation: one yes/no field, no by default."""
    return {
        "type": "object",
        "properties": {
            CONFIRM_FIELD: {
                "type": "boolean",
                "title": "Go ahead",
                "description": "Yes to go ahead; no (or decline) leaves everything as it is",
                "default": False,
            }
        },
        "required": [CONFIRM_FIELD],
    }


def shown(value: Any) -> str:
    """A record's value as shown in a question: one line, at most `MAX_SHOWN_CHARS`."""
    text = " ".join(str(value).split())
    if len(text) > MAX_SHOWN_CHARS:
        text = text[: MAX_SHOWN_CHARS - 1] + "…"
    return text


def _fields_of(template: str) -> list[str]:
    return [name for _, name, _, _ in string.Formatter().parse(template) if name]


def deletes(collection: str, what: str) -> ConfirmText:
    """The confirmation of a tool that deletes the record `input.id` of `collection`. `what`
    names it from the record's data, e.g. "the habit '{name}'" or "the journal entry of
    {date}": "Delete the habit 'Walk'? It cannot be undone." A missing record or empty field
    gives None (the generic question)."""
    needed = _fields_of(what)

    async def text(inp: BaseModel, ctx: ToolContext) -> str | None:
        record_id = getattr(inp, "id", None)
        if not isinstance(record_id, str):
            return None
        record = await ctx.store.get(collection, record_id)
        if record is None:
            return None
        data: Mapping[str, Any] = record.data
        values = {name: data.get(name) for name in needed}
        if any(v is None or not str(v).strip() for v in values.values()):
            return None
        return f"Delete {what.format_map({k: shown(v) for k, v in values.items()})}? {UNDO_NOTE}"

    return text


def generic_question(spec: ToolSpec[Any, Any]) -> str:
    """The question when the tool cannot name its record."""
    return f"Run {spec.title} ({spec.name})? It deletes data. {UNDO_NOTE}"
