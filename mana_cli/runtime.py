"""Wiring: open the database and build registry, accounts, gate and pipeline for one process."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from mana_cli.config import Settings
from policy.allowlist import DestructiveAllowlist
from policy.gate import PolicyGate
from policy.settings import PolicySettings
from tool_registry.clock import Clock, SystemClock
from tool_registry.context import Backends
from tool_registry.modules import build_registry
from tool_registry.pipeline import Pipeline
from tool_registry.registry import Registry
from tool_registry.space_types import SpaceTypeCatalog
from tool_registry.store import Accounts, Database, Migration, open_database

# Schema components of other packages (policy, missions, personas) are appended here.
EXTRA_MIGRATIONS: tuple[Migration, ...] = ()


@dataclass
class Runtime:
    settings: Settings
    db: Database
    accounts: Accounts
    registry: Registry
    pipeline: Pipeline
    clock: Clock
    backends: Backends
    policy: PolicyGate | None = None


def build_gate(settings: Settings, db: Database, registry: Registry, clock: Clock) -> PolicyGate:
    """The policy gate, configured from `MANA_POLICY_MODE`, `MANA_RATE_LIMIT(S)`, ..."""
    return PolicyGate(
        PolicySettings.from_env(settings.environ),
        DestructiveAllowlist(db, registry, clock=clock),
        registry=registry,
    )


def build_backends(settings: Settings) -> Backends:
    return Backends()


@asynccontextmanager
async def open_runtime(settings: Settings, *, clock: Clock | None = None) -> AsyncIterator[Runtime]:
    clock = clock or SystemClock()
    db = await open_database(settings.db_path, EXTRA_MIGRATIONS)
    registry = build_registry()
    backends = build_backends(settings)
    accounts = Accounts(db, clock)
    try:
        gate = build_gate(settings, db, registry, clock)
    except BaseException:
        await db.close()
        raise
    pipeline = Pipeline(
        registry,
        db,
        accounts=accounts,
        space_types=SpaceTypeCatalog.load(),
        gate=gate,
        backends=backends,
        clock=clock,
    )
    try:
        yield Runtime(settings, db, accounts, registry, pipeline, clock, backends, gate)
    finally:
        await pipeline.aclose()
        await db.close()
