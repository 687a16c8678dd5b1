"""notes module, through the real pipeline and SQLite store."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest_asyncio

from tool_registry.clock import FixedClock
from tool_registry.modules.notes import snippet
from tool_registry.store import Space, User
from tool_registry.testing import ToolKit, assert_space_isolated, tool_kit


@pytest_asyncio.fixture
async def clocked(tmp_path: Path) -> AsyncIterator[tuple[ToolKit, FixedClock]]:
    """A kit whose clock only moves when the test moves it."""
    clock = FixedClock(datetime(2030, 5, 1, 12, 0, tzinfo=UTC))
    async with tool_kit(tmp_path / "clocked.db", clock=clock) as kit:
        yield kit, clock


async def _seed(kit: ToolKit, user: User, space: Space) -> None:
    await kit.call_ok(user, space, "notes.create", {"title": "Packing list", "body": "socks"})


async def _invalid_fields(kit: ToolKit, user: User, tool: str, args: dict[str, Any]) -> list[str]:
    outcome = await kit.call_as(user, None, tool, args)
    assert outcome.status == "invalid-input", outcome.public()
    assert outcome.error is not None
    return [f.field for f in outcome.error.fields]


async def _search_ids(
    kit: ToolKit, user: User, args: dict[str, Any], space: Space | None = None
) -> list[str]:
    found = await kit.call_ok(user, space, "notes.search", args)
    return [n["id"] for n in found["notes"]]


async def test_create_and_search(mana_kit: ToolKit) -> None:
    alice = await mana_kit.user()
    note = await mana_kit.call_ok(
        alice,
        None,
        "notes.create",
        {"title": "Pasta recipe", "body": "Boil WATER, add salt.", "tags": ["food", "Food", "it"]},
    )
    assert note["title"] == "Pasta recipe"
    assert note["tags"] == ["food", "it"]
    bare = await mana_kit.call_ok(alice, None, "notes.create", {"title": "Empty"})
    assert bare["body"] == ""
    assert bare["tags"] == []

    found = await mana_kit.call_ok(alice, None, "notes.search", {"query": "water"})
    assert found["notes"] == [
        {
            "id": note["id"],
            "title": "Pasta recipe",
            "snippet": "Boil WATER, add salt.",
            "tags": ["food", "it"],
            "updatedAt": note["updatedAt"],
        }
    ]
    assert await _search_ids(mana_kit, alice, {"query": "nothing like this"}) == []


async def test_title_matches_rank_above_body_matches(mana_kit: ToolKit) -> None:
    alice = await mana_kit.user()
    # Created best match first, so the newest-first tie-break cannot produce the expected order.
    in_title = await mana_kit.call_ok(
        alice, None, "notes.create", {"title": "Our garden plan", "body": "tomatoes"}
    )
    in_body = await mana_kit.call_ok(
        alice, None, "notes.create", {"title": "Trip", "body": "remember the garden keys"}
    )
    assert await _search_ids(mana_kit, alice, {"query": "GARDEN"}) == [
        in_title["id"],
        in_body["id"],
    ]
    assert await _search_ids(mana_kit, alice, {"query": "garden", "limit": 1}) == [in_title["id"]]


async def test_search_without_query_is_most_recently_updated(
    clocked: tuple[ToolKit, FixedClock],
) -> None:
    kit, clock = clocked
    alice = await kit.user()
    older = await kit.call_ok(alice, None, "notes.create", {"title": "Older"})
    clock.advance(minutes=1)
    newer = await kit.call_ok(alice, None, "notes.create", {"title": "Newer"})
    assert await _search_ids(kit, alice, {}) == [newer["id"], older["id"]]
    clock.advance(minutes=1)
    await kit.call_ok(alice, None, "notes.update", {"id": older["id"], "body": "edited"})
    assert await _search_ids(kit, alice, {}) == [older["id"], newer["id"]]
    assert await _search_ids(kit, alice, {"limit": 1}) == [older["id"]]


async def test_snippet_is_short_and_shows_the_match(mana_kit: ToolKit) -> None:
    alice = await mana_kit.user()
    body = "a" * 500 + " the secret word " + "b" * 500
    await mana_kit.call_ok(alice, None, "notes.create", {"title": "Long", "body": body})
    found = await mana_kit.call_ok(alice, None, "notes.search", {"query": "secret"})
    text = found["notes"][0]["snippet"]
    assert len(text) <= 200
    assert "secret word" in text
    assert text.startswith("…")
    assert text.endswith("…")
    listed = await mana_kit.call_ok(alice, None, "notes.search", {})
    assert listed["notes"][0]["snippet"] == "a" * 199 + "…"
    assert snippet("x" * 300 + "needle", "needle").endswith("needle")
    assert len(snippet("x" * 300 + "needle", "needle")) == 200


async def test_update_changes_only_given_fields(mana_kit: ToolKit) -> None:
    alice = await mana_kit.user()
    note = await mana_kit.call_ok(
        alice, None, "notes.create", {"title": "Books", "body": "Dune", "tags": ["reading"]}
    )
    updated = await mana_kit.call_ok(
        alice, None, "notes.update", {"id": note["id"], "body": "Dune, Emma"}
    )
    assert updated["body"] == "Dune, Emma"
    assert updated["title"] == "Books"
    assert updated["tags"] == ["reading"]
    cleared = await mana_kit.call_ok(alice, None, "notes.update", {"id": note["id"], "tags": []})
    assert cleared["tags"] == []
    assert cleared["body"] == "Dune, Emma"


async def test_validation_errors_name_the_field(mana_kit: ToolKit) -> None:
    alice = await mana_kit.user()
    assert await _invalid_fields(mana_kit, alice, "notes.create", {"title": ""}) == ["title"]
    assert await _invalid_fields(
        mana_kit, alice, "notes.create", {"title": "t", "body": "b" * 20_001}
    ) == ["body"]
    assert await _invalid_fields(
        mana_kit, alice, "notes.create", {"title": "t", "tags": [f"t{i}" for i in range(21)]}
    ) == ["tags"]
    assert await _invalid_fields(
        mana_kit, alice, "notes.create", {"title": "t", "tags": ["x" * 41]}
    ) == ["tags.0"]
    assert await _invalid_fields(mana_kit, alice, "notes.search", {"query": ""}) == ["query"]
    assert await _invalid_fields(mana_kit, alice, "notes.search", {"query": "q" * 201}) == ["query"]
    assert await _invalid_fields(mana_kit, alice, "notes.search", {"limit": 51}) == ["limit"]
    assert await _invalid_fields(
        mana_kit, alice, "notes.update", {"id": "not_ok!", "title": "t"}
    ) == ["id"]


async def test_unknown_id_is_not_found(mana_kit: ToolKit) -> None:
    alice = await mana_kit.user()
    for tool, args in [
        ("notes.update", {"id": "not_missing", "title": "x"}),
        ("notes.delete", {"id": "not_missing"}),
    ]:
        outcome = await mana_kit.call_as(alice, None, tool, args)
        assert outcome.status == "error", outcome.public()
        assert outcome.error is not None
        assert outcome.error.reason == "not-found"


async def test_deleted_note_vanishes_from_search(mana_kit: ToolKit) -> None:
    alice = await mana_kit.user()
    keep = await mana_kit.call_ok(alice, None, "notes.create", {"title": "Keep me", "body": "x"})
    drop = await mana_kit.call_ok(alice, None, "notes.create", {"title": "Drop me", "body": "x"})
    deleted = await mana_kit.call_ok(alice, None, "notes.delete", {"id": drop["id"]})
    assert deleted["id"] == drop["id"]
    assert await _search_ids(mana_kit, alice, {"query": "me"}) == [keep["id"]]
    assert await _search_ids(mana_kit, alice, {}) == [keep["id"]]
    again = await mana_kit.call_as(alice, None, "notes.update", {"id": drop["id"], "body": "y"})
    assert again.error is not None
    assert again.error.reason == "not-found"


async def test_search_is_space_isolated(mana_kit: ToolKit) -> None:
    await assert_space_isolated(mana_kit, "notes.search", {}, _seed)
    await assert_space_isolated(mana_kit, "notes.search", {"query": "packing"}, _seed)
    await assert_space_isolated(
        mana_kit, "notes.search", {"query": "socks"}, _seed, space_type="family"
    )


async def test_notes_are_shared_in_a_family_space(mana_kit: ToolKit) -> None:
    alice, bob = await mana_kit.user(), await mana_kit.user()
    family = await mana_kit.space(alice, "family")
    await mana_kit.add_member(family, bob)
    note = await mana_kit.call_ok(
        alice, family, "notes.create", {"title": "Wifi password", "body": "hunter2"}
    )
    assert await mana_kit.record_space(note["id"]) == family.id
    assert await _search_ids(mana_kit, bob, {"query": "wifi"}, family) == [note["id"]]
    await mana_kit.call_ok(bob, family, "notes.update", {"id": note["id"], "body": "hunter3"})
    assert await _search_ids(mana_kit, alice, {"query": "hunter3"}, family) == [note["id"]]
    assert await _search_ids(mana_kit, alice, {"query": "wifi"}) == []
