"""Base classes for tool input and output models: camelCase on the wire, unknown fields rejected
on input (so a typo is reported instead of silently ignored)."""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from tool_registry.errors import ToolError
from tool_registry.store.records import Record


class ToolInput(BaseModel):
    """Inputs accept their camelCase wire names only: what the JSON Schema documents."""

    model_config = ConfigDict(
        extra="forbid",
        alias_generator=to_camel,
        validate_by_alias=True,
        validate_by_name=False,
        str_strip_whitespace=True,
    )


class ToolOutput(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, serialize_by_alias=True
    )


class Deleted(ToolOutput):
    """What every delete tool returns: deletes are soft, so the record keeps its id."""

    id: str
    deleted_at: str

    @classmethod
    def of(cls, rec: Record) -> Deleted:
        return cls(id=rec.id, deleted_at=rec.deleted_at or rec.updated_at)


HEX_COLOR = re.compile(r"^#[0-9a-fA-F]{6}$")

RecordId = Annotated[
    str,
    Field(
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9_-]+$",
        description="Id of a record in the active space.",
    ),
]
HexColor = Annotated[
    str, Field(pattern=r"^#[0-9a-fA-F]{6}$", description="Colour as #RRGGBB.", examples=["#4f46e5"])
]
ShortText = Annotated[str, Field(min_length=1, max_length=200)]
LongText = Annotated[str, Field(max_length=20_000)]


def _not_far_future(value: date) -> date:
    if value.year > 2200 or value.year < 1900:
        raise ValueError("date must be between 1900 and 2200")
    return value


IsoDate = Annotated[
    date, AfterValidator(_not_far_future), Field(description="Calendar date, YYYY-MM-DD.")
]


def _aware(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(
            "needs a timezone offset, e.g. 2026-11-21T09:30:00+01:00 or 2026-11-21T08:30:00Z"
        )
    return value


IsoDateTime = Annotated[
    datetime,
    AfterValidator(_aware),
    Field(description="Date and time, ISO 8601 with offset, e.g. 2026-11-21T09:30:00+01:00."),
]


def check_day_range(first: date | None, last: date | None) -> None:
    """Refuse a reversed `from`/`to` day range with a `invalid-range` tool error."""
    if first is not None and last is not None and first > last:
        raise ToolError(
            f"'from' ({first.isoformat()}) is after 'to' ({last.isoformat()}); "
            "swap them or widen the range",
            reason="invalid-range",
        )
