"""Shared test configuration. `mana_kit`, `database_target` and the PostgreSQL fixtures come
from the tool_registry plugin."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from tool_registry.logging import configure_logging
from tool_registry.store import Migration

configure_logging("WARNING", json=True)


@pytest.fixture(scope="session")
def database_template_migrations() -> Sequence[Migration]:
    """Every PostgreSQL test database starts with the runtime's whole schema (core, personas,
    missions), as `mana init` leaves it."""
    from mana_cli.runtime import EXTRA_MIGRATIONS

    return EXTRA_MIGRATIONS
