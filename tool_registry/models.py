"""Base classes for tool input and output models: camelCase on the wire, unknown fields rejected
on input (so a typo is reported instead of silently ignored), and NUL characters refused in every
text value of every input (`ToolInput`), because SQLite's text functions stop at a NUL and search
would silently miss what follows it.

Dates (`IsoDate`) and date-times (`IsoDateTime`) share one range, years 1900 through 2200, so a
stored time always has the fixed-width form of `tool_registry.clock.iso` (text order is time
order) and arithmetic on an input (a default window, a day range) cannot overflow.

Update tools share one convention (`UpdateInput`): an omitted or null field is left unchanged,
and an optional field is removed only by naming it in `clear`.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from typing import Annotated, Any, ClassVar, Literal, TypeVar, get_args, get_origin

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic_core import InitErrorDetails, PydanticCustomError

from tool_registry.errors import ToolError
from tool_registry.store.records import Record

NUL = "\x00"


def _has_nul(value: Any) -> bool:
    """Whether a raw input value holds a NUL in any string, dict key included, at any depth
    (walked with a stack, so a hostile nesting depth cannot exhaust the recursion limit)."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if NUL in item:
                return True
        elif isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list | tuple):
            pending.extend(item)
    return False


class ToolInput(BaseModel):
    """Inputs accept their camelCase wire names only: what the JSON Schema documents.

    Text anywhere in an input (a field, a list item, a nested object's field or key) may not
    contain NUL: such a call is refused as invalid input naming the field, never stored with the
    NUL removed, so what is stored is exactly what was sent and search finds all of it.
    """

    model_config = ConfigDict(
        extra="forbid",
        alias_generator=to_camel,
        validate_by_alias=True,
        validate_by_name=False,
        str_strip_whitespace=True,
    )

    @field_validator("*", mode="before")
    @classmethod
    def _refuse_nul(cls, value: Any) -> Any:
        if _has_nul(value):
            raise ValueError("contains a NUL character (\\u0000); remove it")
        return value


ClearName = TypeVar("ClearName", bound=str)


def _distinct(names: list[str]) -> list[str]:
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(f"lists {', '.join(repeated)} more than once; name each field once")
    return names


Clear = Annotated[
    Annotated[
        list[ClearName], AfterValidator(_distinct), Field(json_schema_extra={"uniqueItems": True})
    ]
    | None,
    Field(description="Optional fields to remove (reset to null)."),
]
"""The `clear` field of an update tool: `clear: Clear[Literal["dueDate", "notes"]] = None`.

The Literal lists the record's optional fields by wire name; required fields never belong in it.
"""

CLEAR_DESCRIPTION = (
    "Optional fields to remove (reset to null), e.g. [{example}]. Omitted or null fields are "
    "left unchanged, so listing a field here is the only way to remove its value. A field "
    "cannot be given a value and be cleared in the same call."
)


def _literal_names(annotation: Any) -> tuple[str, ...]:
    """The string values of every `Literal` nested in a type annotation, in order."""
    if get_origin(annotation) is Literal:
        return tuple(str(v) for v in get_args(annotation))
    return tuple(name for arg in get_args(annotation) for name in _literal_names(arg))


def _clear_schema(schema: dict[str, Any], model: type[Any]) -> None:
    """Finish the `clear` property: an `enum` of the names even when there is only one (pydantic
    writes `const`, which some model APIs ignore) and a description with a tool's own example."""
    names: tuple[str, ...] = getattr(model, "clearable", ())
    prop = schema.get("properties", {}).get("clear")
    if not names or not isinstance(prop, dict):
        return
    prop["description"] = CLEAR_DESCRIPTION.format(example=f'"{names[0]}"')
    for branch in prop.get("anyOf", []):
        if branch.get("type") == "array":
            branch["items"] = {"enum": list(names), "type": "string"}


class UpdateInput(ToolInput):
    """Base of update tools: fields left out or null keep their stored value, and the fields a
    subclass declares in `clear: Clear[Literal[...]] = None` can be reset to null by name.

    `changes()` is the store's change set: the fields given a value plus `None` for each
    cleared one, so clearing is a normal field-level last-writer-wins write. Naming a field in
    `clear` that is also given a value is an invalid-input error on `clear`.
    """

    model_config = ConfigDict(json_schema_extra=_clear_schema)

    clearable: ClassVar[tuple[str, ...]] = ()
    """Wire names the tool may clear (derived from the `clear` field's Literal)."""

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        field = cls.model_fields.get("clear")
        if field is None:
            cls.clearable = ()
            return
        names = _literal_names(field.annotation)
        wire = {f.alias or n for n, f in cls.model_fields.items() if n not in ("id", "clear")}
        unknown = [n for n in names if n not in wire]
        if not names or unknown:
            raise TypeError(
                f"{cls.__name__}.clear must list fields of the model by wire name; "
                f"not fields: {unknown or 'none given'}"
            )
        cls.clearable = names

    @model_validator(mode="after")
    def _set_or_clear(self) -> UpdateInput:
        cleared: list[str] = getattr(self, "clear", None) or []
        given = self._given()
        conflicts = [name for name in cleared if name in given]
        if conflicts:
            # A ValidationError raised here keeps its own `loc` (pydantic merges its line
            # errors), so the pipeline reports the field as `clear`, not `(arguments)`.
            raise ValidationError.from_exception_data(
                type(self).__name__,
                [
                    InitErrorDetails(
                        type=PydanticCustomError(
                            "set-and-cleared",
                            "'{field}' is given a value and listed in clear; pass a value to "
                            "change it or list it in clear to remove it, not both",
                            {"field": name},
                        ),
                        loc=("clear",),
                        input=cleared,
                    )
                    for name in conflicts
                ],
            )
        return self

    def _given(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, exclude={"id", "clear"}, exclude_none=True)

    def changes(self) -> dict[str, Any]:
        """Fields given a value, plus `None` for every field named in `clear` (by wire name)."""
        cleared: list[str] = getattr(self, "clear", None) or []
        return {**self._given(), **dict.fromkeys(cleared)}


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


FIRST_YEAR = 1900
LAST_YEAR = 2200
EARLIEST = datetime(FIRST_YEAR, 1, 1, tzinfo=UTC)
"""The first instant a date-time input may name."""
AFTER_LAST = datetime(LAST_YEAR + 1, 1, 1, tzinfo=UTC)
"""The first instant after the range: date-time inputs are before it."""


def _iso_text(example: str) -> BeforeValidator:
    """Dates travel as ISO 8601 text: a number is refused rather than read as Unix seconds or
    milliseconds (pydantic picks by magnitude, so 253402300799 would be a day in 1978)."""

    def check(value: Any) -> Any:
        if isinstance(value, int | float):
            raise ValueError(f"must be ISO 8601 text like {example}, not a number")
        return value

    return BeforeValidator(check)


def _date_in_range(value: date) -> date:
    if not FIRST_YEAR <= value.year <= LAST_YEAR:
        raise ValueError(f"date must be between {FIRST_YEAR} and {LAST_YEAR}")
    return value


IsoDate = Annotated[
    date,
    _iso_text("2026-11-21"),
    AfterValidator(_date_in_range),
    Field(description="Calendar date, YYYY-MM-DD."),
]


def _aware_in_range(value: datetime) -> datetime:
    """An aware date-time whose instant lies in the range, converted to UTC.

    The local year is checked before the conversion: an offset is less than a day, so a value
    whose local year is outside FIRST_YEAR-1..LAST_YEAR+1 is out of range, and converting one
    near `datetime.min` or `datetime.max` would overflow.
    """
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(
            "needs a timezone offset, e.g. 2026-11-21T09:30:00+01:00 or 2026-11-21T08:30:00Z"
        )
    if not FIRST_YEAR - 1 <= value.year <= LAST_YEAR + 1 or not EARLIEST <= value < AFTER_LAST:
        raise ValueError(
            f"must be between {FIRST_YEAR}-01-01T00:00:00Z and {LAST_YEAR}-12-31T23:59:59Z"
        )
    return value.astimezone(UTC)


IsoDateTime = Annotated[
    datetime,
    _iso_text("2026-11-21T09:30:00+01:00"),
    AfterValidator(_aware_in_range),
    Field(description="Date and time, ISO 8601 with offset, e.g. 2026-11-21T09:30:00+01:00."),
]
"""An aware date-time in the range (read as UTC); store it with `tool_registry.clock.iso`."""


def check_day_range(first: date | None, last: date | None) -> None:
    """Refuse a reversed `from`/`to` day range with a `invalid-range` tool error."""
    if first is not None and last is not None and first > last:
        raise ToolError(
            f"'from' ({first.isoformat()}) is after 'to' ({last.isoformat()}); "
            "swap them or widen the range",
            reason="invalid-range",
        )
