"""Cross-space isolation as a property: for random users, spaces, memberships and records,
every read tool returns only the active space's rows, and a non-member always gets the
membership error."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mana_cli.demo import _image_data
from tool_registry.modules.me import REFERENCE_IMAGES
from tool_registry.store import ScopedStore, Space, User
from tool_registry.testing import ToolKit, iter_ids, tool_kit
from tool_registry.testing.plugin import new_database

SHARED_TYPES = ["brand", "club", "family", "team", "practice"]

# One write per record kind, with the module it needs.
WRITES: dict[str, tuple[str, dict[str, Any]]] = {
    "habit": ("habits.create", {"name": "Stretch"}),
    "todo": ("todo.create", {"title": "Call the bank"}),
    "note": ("notes.create", {"title": "Alpha note", "body": "alpha body"}),
    "journal": ("journal.add", {"text": "A calm day"}),
    "mood": ("mood.log", {"score": 3}),
    "event": (
        "calendar.create",
        {
            "title": "Alpha sync",
            "start": "2026-11-20T10:00:00+00:00",
            "end": "2026-11-20T11:00:00+00:00",
        },
    ),
    "contact": ("contacts.create", {"name": "Alpha Person"}),
    "image": ("", {}),
}

# Read tools that need arguments to return rows; every other read tool is called with {}.
READ_ARGS: dict[str, dict[str, Any]] = {
    "notes.search": {"query": "alpha"},
    "contacts.search": {"query": "alpha"},
    "calendar.list": {"from": "2026-11-01T00:00:00+00:00", "to": "2026-12-01T00:00:00+00:00"},
}

world = st.fixed_dictionaries(
    {
        "users": st.integers(min_value=2, max_value=4),
        "shared": st.lists(st.tuples(st.integers(0, 3), st.sampled_from(SHARED_TYPES)), max_size=3),
        "members": st.lists(
            st.tuples(st.integers(0, 2), st.integers(0, 3), st.sampled_from(["admin", "member"])),
            max_size=5,
        ),
        "records": st.lists(
            st.tuples(st.integers(0, 3), st.integers(-1, 2), st.sampled_from(sorted(WRITES))),
            min_size=1,
            max_size=14,
        ),
    }
)


async def _add_image(kit: ToolKit, user: User, space: Space, n: int, opted_in: bool) -> None:
    access = await kit.accounts.access(user.id, space.id)
    assert access is not None
    async with kit.db.transaction() as tx:
        store = ScopedStore(
            tx, user_id=user.id, access=access, clock=kit.pipeline.clock, writable=True
        )
        await store.insert(
            REFERENCE_IMAGES,
            _image_data(
                f"ref_p{n}",
                {"kind": "face", "label": "x", "primaryFor": None, "aiReference": opted_in},
            ),
        )


async def _check_world(target: str, spec: dict[str, Any]) -> None:
    async with tool_kit(target) as kit:
        users = [await kit.user() for _ in range(spec["users"])]
        spaces: list[Space] = [await kit.personal(u) for u in users]
        for owner_ix, type_ in spec["shared"]:
            spaces.append(await kit.space(users[owner_ix % len(users)], type_))
        shared = spaces[len(users) :]
        for space_ix, user_ix, role in spec["members"]:
            if shared:
                space = shared[space_ix % len(shared)]
                user = users[user_ix % len(users)]
                access = await kit.accounts.access(user.id, space.id)
                if access is None or access.role is None:
                    await kit.add_member(space, user, role)
        for n, (author_ix, where, kind) in enumerate(spec["records"]):
            author = users[author_ix % len(users)]
            memberships = [a.space for a in await kit.accounts.spaces_of(author.id)]
            space = memberships[where % len(memberships)] if where >= 0 else memberships[0]
            if kind == "image":
                await _add_image(kit, author, space, n, opted_in=n % 2 == 0)
                continue
            tool, args = WRITES[kind]
            await kit.call_as(author, space, tool, args)  # may be refused by space type

        for user in users:
            for space in spaces:
                access = await kit.accounts.access(user.id, space.id)
                member = access is not None and access.role is not None
                for tool_spec in kit.pipeline.visible_tools(space.type):
                    if not tool_spec.read_only:
                        continue
                    args = READ_ARGS.get(tool_spec.name, {})
                    out = await kit.call_as(user, space, tool_spec.name, args)
                    if not member:
                        assert out.status == "denied", out.public()
                        assert out.error is not None
                        assert out.error.reason == "not-a-member"
                        continue
                    assert out.ok, out.public()
                    for rid in iter_ids(out.result):
                        home = await kit.record_space(rid)
                        if home is not None:
                            assert home == space.id, (tool_spec.name, rid, home, space.id)


# Examples per backend: each builds a world on a database of its own. A PostgreSQL call costs
# a few round trips more than SQLite's in-process ones, so that leg draws fewer worlds.
EXAMPLES = {"sqlite": 20, "postgres": 10}


def test_reads_never_cross_spaces(database_backend: str, request: pytest.FixtureRequest) -> None:
    @settings(
        max_examples=EXAMPLES[database_backend],
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(world)
    def check(spec: dict[str, Any]) -> None:
        with (
            tempfile.TemporaryDirectory() as tmp,
            new_database(request, database_backend, Path(tmp) / "iso.db") as target,
        ):
            asyncio.run(_check_world(target, spec))

    check()
