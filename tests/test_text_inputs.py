"""NUL in text input: refused as `invalid-input` naming the field, for every field of every tool.

SQLite's text functions stop at a NUL, so a note stored with one was invisible to search past
it. The rule lives in `ToolInput` (every tool input derives from it), so the registry walk below
covers every tool, including the missions tools and admin tools, and every string-bearing field:
plain strings, enums, ids, dates, lists of strings and nested objects.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from missions.tools import TOOLS as MISSIONS_TOOLS
from tool_registry.models import ToolInput
from tool_registry.modules import build_registry
from tool_registry.registry import Registry
from tool_registry.testing import ToolKit, tool_kit

NUL_TEXT = "before\x00after"


def registry() -> Registry:
    return build_registry(extra=MISSIONS_TOOLS)


def _branches(schema: dict[str, Any]) -> list[dict[str, Any]]:
    alternatives = [*schema.get("anyOf", []), *schema.get("oneOf", [])]
    return [b for b in [schema, *alternatives] if b.get("type") != "null"]


def nul_value(schema: dict[str, Any]) -> Any:
    """A value for a field of this schema carrying a NUL somewhere in its text, or None when the
    field holds no text (numbers, booleans)."""
    for branch in _branches(schema):
        kind = branch.get("type")
        if kind == "string" or "enum" in branch:
            return NUL_TEXT
        if kind == "array":
            inner = nul_value(branch.get("items", {}))
            if inner is not None:
                return [inner]
        if kind == "object" or "$ref" in branch:
            return {"kind": NUL_TEXT}
    return None


def text_fields() -> list[tuple[str, str, Any]]:
    """(tool, wire name, value with NUL) for every text-bearing input field of every tool."""
    return [
        (spec.name, name, value)
        for spec in registry()
        for name, prop in spec.input_schema().get("properties", {}).items()
        if (value := nul_value(prop)) is not None
    ]


@pytest.fixture
async def kit(database_target: str) -> Any:
    async with tool_kit(database_target, registry=registry()) as k:
        yield k


def test_every_tool_input_shares_the_rule() -> None:
    assert all(issubclass(spec.input, ToolInput) for spec in registry())
    # The walk finds the fields it is meant to find, of every shape.
    found = {(tool, name) for tool, name, _ in text_fields()}
    assert {
        ("notes.create", "body"),
        ("notes.create", "tags"),
        ("missions.create", "cadence"),
    } <= found
    assert {
        ("calendar.create", "start"),
        ("todo.list", "status"),
        ("users.setTier", "email"),
    } <= found


async def test_nul_in_any_text_field_is_invalid_input(kit: ToolKit) -> None:
    user = await kit.user()
    cases = text_fields()
    assert len(cases) > 50
    for tool, name, value in cases:
        outcome = await kit.call_as(user, None, tool, {name: value})
        assert outcome.status == "invalid-input", (tool, name, outcome.public())
        assert outcome.error is not None
        messages = {f.field: f.message for f in outcome.error.fields}
        assert name in messages, (tool, name, outcome.public())
        assert "NUL" in messages[name], (tool, name, messages[name])


VALID: dict[str, dict[str, Any]] = {
    "notes.create": {"title": "Groceries", "body": "milk and bread", "tags": ["home"]},
    "journal.add": {"text": "A quiet day by the lake"},
    "contacts.create": {"name": "Ada Lovelace", "notes": "met at the library"},
    "todo.create": {"title": "Call the bank", "notes": "about the card"},
    "calendar.create": {
        "title": "Dentist",
        "start": "2026-12-03T10:00:00Z",
        "end": "2026-12-03T11:00:00Z",
        "location": "Main street",
    },
}


async def test_nul_in_one_field_of_a_valid_call_names_only_that_field(kit: ToolKit) -> None:
    """Nothing is stored and the answer points at the one bad field, not at the arguments."""
    user = await kit.user()
    for tool, args in VALID.items():
        for name, good in args.items():
            bad = [f"{good[0]}\x00"] if isinstance(good, list) else f"{good[:3]}\x00{good[3:]}"
            outcome = await kit.call_as(user, None, tool, {**args, name: bad})
            assert outcome.status == "invalid-input", (tool, name, outcome.public())
            assert outcome.error is not None
            assert [f.field for f in outcome.error.fields] == [name], outcome.public()
    cadence = {"kind": "daily", "hour": 9, "minute": 0, "timezone": "Europe/Berlin\x00"}
    outcome = await kit.call_as(
        user, None, "missions.create", {"title": "T", "objective": "O", "cadence": cadence}
    )
    assert outcome.error is not None
    assert [f.field for f in outcome.error.fields] == ["cadence"], outcome.public()
    rows = await kit.db.read(lambda c: c.execute("SELECT count(*) FROM records").fetchone())
    assert rows[0] == 0


# Text as a client may send it: any code point JSON can carry (no lone surrogates), NUL included.
TEXT = st.text(alphabet=st.characters(exclude_categories=["Cs"]), min_size=1, max_size=120).filter(
    lambda t: t.strip() != ""
)


@settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@example(body="hello\x00world", start=6, length=5)
@given(body=TEXT, start=st.integers(0, 119), length=st.integers(1, 120))
async def test_search_finds_every_stored_substring(
    kit: ToolKit, body: str, start: int, length: int
) -> None:
    """A body is either refused (it has a NUL) or stored, and then every substring of it finds
    the note, in notes and in contacts."""
    user = await kit.user()
    needle = body[start % len(body) :][:length].strip()[:200]
    note = await kit.call_as(user, None, "notes.create", {"title": "T", "body": body})
    contact = await kit.call_as(user, None, "contacts.create", {"name": "N", "notes": body})
    if "\x00" in body:
        for outcome, field in ((note, "body"), (contact, "notes")):
            assert outcome.status == "invalid-input"
            assert outcome.error is not None
            assert [f.field for f in outcome.error.fields] == [field]
        return
    assert note.ok and contact.ok, (note.public(), contact.public())
    if not needle:
        return
    assert note.result is not None and contact.result is not None
    notes = await kit.call_ok(user, None, "notes.search", {"query": needle})
    assert note.result["id"] in [n["id"] for n in notes["notes"]], (body, needle)
    contacts = await kit.call_ok(user, None, "contacts.search", {"query": needle})
    assert contact.result["id"] in [c["id"] for c in contacts["contacts"]], (body, needle)
