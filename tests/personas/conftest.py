"""Fixtures for persona tests: a database with the personas schema, the shipped catalog."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from personas.catalog import PERSONAS_CATALOG, PersonaCatalog, load_catalog, parse_catalog
from personas.passwords import DEVELOPMENT_SECRET, PersonaSecret
from personas.schema import PERSONAS_MIGRATIONS
from personas.seed import Seeder
from personas.store import PersonaStore
from tests.personas.inprocess import serving
from tests.personas.world import TRIO, World
from tool_registry.clock import FixedClock
from tool_registry.modules import build_registry
from tool_registry.pipeline import Pipeline
from tool_registry.registry import Registry
from tool_registry.store import Accounts, Database, open_database

# A Monday, so `weekdays` personas are due.
MONDAY = datetime(2026, 11, 23, 9, 30, tzinfo=UTC)


@pytest.fixture(scope="session")
def registry() -> Registry:
    return build_registry()


@pytest.fixture(scope="session")
def catalog(registry: Registry) -> PersonaCatalog:
    return load_catalog(registry)


@pytest.fixture
def raw_catalog() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(PERSONAS_CATALOG.read_text(encoding="utf-8"))
    return data


def small_catalog(raw: dict[str, Any], registry: Registry, emails: list[str]) -> PersonaCatalog:
    """The shipped catalog cut down to some personas and the shared spaces among them only."""
    keep = set(emails)
    data = dict(raw)
    data["personas"] = [p for p in raw["personas"] if p["email"] in keep]
    data["sharedSpaces"] = [
        s for s in raw["sharedSpaces"] if all(m["email"] in keep for m in s["members"])
    ]
    return parse_catalog(data, registry)


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(MONDAY)


@pytest.fixture
def secret() -> PersonaSecret:
    return PersonaSecret(DEVELOPMENT_SECRET.encode(), "built-in development secret")


@pytest_asyncio.fixture
async def db(database_target: str) -> AsyncIterator[Database]:
    """The personas schema on this test's backend (SQLite file or fresh PostgreSQL database)."""
    database = await open_database(database_target, PERSONAS_MIGRATIONS)
    try:
        yield database
    finally:
        await database.close()


@pytest.fixture
def accounts(db: Database, clock: FixedClock) -> Accounts:
    return Accounts(db, clock)


@pytest.fixture
def seeder(db: Database, accounts: Accounts, secret: PersonaSecret, clock: FixedClock) -> Seeder:
    return Seeder(db, accounts, secret, clock)


@pytest_asyncio.fixture
async def world(
    db: Database,
    accounts: Accounts,
    seeder: Seeder,
    raw_catalog: dict[str, Any],
    registry: Registry,
    clock: FixedClock,
    secret: PersonaSecret,
    tmp_path: Path,
) -> AsyncIterator[World]:
    """Maya, Jonas and Lena seeded, the real HTTP app in-process, a Monday morning clock."""
    catalog = small_catalog(raw_catalog, registry, TRIO)
    await seeder.seed(catalog)
    pipeline = Pipeline(registry, db, accounts=accounts, clock=clock)
    async with serving(pipeline, tmp_path) as connector:
        yield World(
            db, accounts, PersonaStore(db, clock), pipeline, connector, catalog, clock, secret
        )
    await pipeline.aclose()
