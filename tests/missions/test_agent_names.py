"""Agent names are unique per space whatever their case, and found by any case, on both
backends (SQLite: the column's NOCASE collation; PostgreSQL: a unique index on lower(name))."""

from __future__ import annotations

import pytest

from tests.missions.helpers import World
from tool_registry.errors import ConflictError
from tool_registry.store.connection import Conn


async def test_agent_names_are_case_insensitive_per_space(world: World) -> None:
    owner = await world.user()
    space = await world.personal(owner)
    other = await world.pipeline.accounts.create_space(owner.id, type_="team", name="Team")
    scout = await world.agent(owner, space, "Scout")
    await world.agent(owner, space, "archer")

    with pytest.raises(ConflictError):
        await world.agent(owner, space, "sCOUT")
    assert (await world.agent(owner, other, "SCOUT")).space_id == other.id  # another space

    found = await world.store.find_agent(space.id, "SCOUT")
    assert found is not None and found.id == scout.id
    by_id = await world.store.find_agent(space.id, scout.id)
    assert by_id is not None and by_id.id == scout.id
    assert [a.name for a in await world.store.list_agents(space.id)] == ["archer", "Scout"]


async def test_the_schema_itself_refuses_a_name_differing_only_in_case(world: World) -> None:
    owner = await world.user()
    space = await world.personal(owner)
    scout = await world.agent(owner, space, "Scout")

    def insert(conn: Conn) -> None:
        conn.execute(
            "INSERT INTO agents (id, space_id, name, tool_policy, created_at, updated_at) "
            "SELECT 'agt_twin', space_id, 'SCOUT', tool_policy, created_at, updated_at "
            "FROM agents WHERE id = ?",
            (scout.id,),
        )

    with pytest.raises(Exception, match=r"(?i)unique"):
        await world.db.write(insert)
