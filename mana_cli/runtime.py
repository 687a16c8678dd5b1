"""Wiring: open the database and build registry, accounts, gate and pipeline for one process."""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from mana_cli.config import Settings
from mana_http.schema import HTTP_MIGRATIONS
from mana_oauth.schema import OAUTH_MIGRATIONS
from mcp_adapter.schema import CHANNEL_MIGRATIONS
from missions.proposals import ProposalService
from missions.review import PROPOSAL_REVIEW
from missions.schema import MISSIONS_MIGRATIONS
from missions.service import MissionsService
from missions.settings import MissionSettings
from missions.tools import TOOLS as MISSIONS_TOOLS
from missions.view import MISSIONS
from personas.schema import PERSONAS_MIGRATIONS
from policy.agent_policy import InvokerToolRule
from policy.allowlist import DestructiveAllowlist
from policy.gate import PolicyGate
from policy.rate_limit import SharedRateLimitLog
from policy.schema import POLICY_MIGRATIONS
from policy.settings import PolicySettings
from tool_registry.clock import Clock, SystemClock
from tool_registry.context import Backends
from tool_registry.errors import ManaError, ValidationFailed
from tool_registry.modules import build_registry
from tool_registry.pipeline import Pipeline
from tool_registry.registry import Registry
from tool_registry.space_types import SpaceTypeCatalog
from tool_registry.spec import ToolSpec
from tool_registry.store import Accounts, Database, Migration, open_database

# Schema components of other packages (policy, missions, personas) are appended here.
EXTRA_MIGRATIONS: tuple[Migration, ...] = ()
EXTRA_MIGRATIONS += PERSONAS_MIGRATIONS
EXTRA_MIGRATIONS += MISSIONS_MIGRATIONS
EXTRA_MIGRATIONS += HTTP_MIGRATIONS
EXTRA_MIGRATIONS += POLICY_MIGRATIONS
EXTRA_MIGRATIONS += OAUTH_MIGRATIONS
EXTRA_MIGRATIONS += CHANNEL_MIGRATIONS


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
    """The policy gate, configured from `MANA_POLICY_MODE`, `MANA_RATE_LIMIT(S)`, ...; its
    rate-limit log is the database's, shared with every other process on it."""
    policy = PolicySettings.from_env(settings.environ)
    allowlist = DestructiveAllowlist(db, registry, clock=clock)
    return PolicyGate(
        policy,
        allowlist,
        modes=allowlist,
        registry=registry,
        rate_log=SharedRateLimitLog(
            db, window_seconds=policy.window_seconds, max_events=policy.max_limit
        ),
    )


def build_backends(settings: Settings) -> Backends:
    return Backends()


def load_extra_tools(environ: Mapping[str, str]) -> list[ToolSpec[Any, Any]]:
    """Plugin tools named by `MANA_EXTRA_TOOLS`: comma-separated `module:attribute`, each an
    iterable of `ToolSpec`s (e.g. a test module that registers a tool which blocks on a file)."""
    specs: list[ToolSpec[Any, Any]] = []
    for ref in (r.strip() for r in environ.get("MANA_EXTRA_TOOLS", "").split(",")):
        if not ref:
            continue
        module_name, _, attr = ref.partition(":")
        try:
            found = getattr(importlib.import_module(module_name), attr or "TOOLS")
        except (ImportError, AttributeError) as exc:
            raise ValidationFailed(f"MANA_EXTRA_TOOLS: cannot load {ref!r}: {exc}") from None
        items = list(found)
        if not all(isinstance(item, ToolSpec) for item in items):
            raise ValidationFailed(f"MANA_EXTRA_TOOLS: {ref!r} is not a list of ToolSpec")
        specs.extend(items)
    return specs


# `MANA_TEST_FIXTURES` values: test-only specs a test run may add (never set in production).
TEST_FIXTURES = ("conformance",)


def add_test_fixtures(registry: Registry, environ: Mapping[str, str]) -> None:
    """Register the test-only fixtures `MANA_TEST_FIXTURES` names: `conformance` adds the MCP
    conformance suite's fixture tools, resources and prompts. Unset (production): nothing."""
    flag = environ.get("MANA_TEST_FIXTURES", "").strip()
    if not flag:
        return
    if flag not in TEST_FIXTURES:
        raise ValidationFailed(
            f"MANA_TEST_FIXTURES: unknown fixtures {flag!r} (known: {', '.join(TEST_FIXTURES)})"
        )
    from tool_registry.testing import conformance_fixtures  # test-only: imported on demand

    conformance_fixtures.register(registry)


def build_runtime_registry(environ: Mapping[str, str] | None = None) -> Registry:
    """The one registry builder of every `mana` command: the bundled modules, the missions
    tools, the plugin tools of `MANA_EXTRA_TOOLS` and the test fixtures of `MANA_TEST_FIXTURES`
    in `environ` (none when None)."""
    registry = build_registry(extra=[*MISSIONS_TOOLS, *load_extra_tools(environ or {})])
    add_test_fixtures(registry, environ or {})
    return registry


def configure_proposal_review(backends: Backends, pipeline: Pipeline) -> None:
    """The `proposal-review` backend of `proposals.review`: the same `ProposalService` as
    `mana proposals approve|reject`, on the missions backend's store and this pipeline."""
    missions = backends.get(MISSIONS)
    backends.set(PROPOSAL_REVIEW, ProposalService(missions.store, missions.accounts, pipeline))


def configure_missions(
    settings: Settings, backends: Backends, db: Database, accounts: Accounts, clock: Clock
) -> None:
    """The `missions` backend of the `missions.*` and `proposals.list` tools."""
    backends.set(
        MISSIONS,
        MissionsService(
            db, accounts, clock=clock, settings=MissionSettings.from_env(settings.environ)
        ),
    )


class DatabaseMissing(ManaError):
    """A command that works on existing data was pointed at a path with no database."""

    reason = "database-missing"


def require_database(settings: Settings) -> None:
    """Refuse to go on when `settings.db_path` does not exist, naming the path and the two ways
    out, so a typo in `--data-dir` never leaves an empty database behind."""
    if settings.database_url is not None:
        return  # PostgreSQL: `open_database(create=False)` refuses an uninitialised database
    if not settings.db_path.is_file():
        raise DatabaseMissing(
            f"no database at {settings.db_path}: run `mana init` to create one, or point "
            "--data-dir (env MANA_DATA_DIR) or --db (env MANA_DB) at an existing one"
        )


@asynccontextmanager
async def open_runtime(
    settings: Settings, *, clock: Clock | None = None, create: bool = False
) -> AsyncIterator[Runtime]:
    """Open the database and wire one process. Only `create=True` (`mana init`, `mana run`,
    test fixtures) may create the database and its directory; otherwise it must exist."""
    clock = clock or SystemClock()
    registry = build_runtime_registry(settings.environ)
    if create and settings.database_url is None:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    elif not create:
        require_database(settings)
    db = await open_database(settings.database, EXTRA_MIGRATIONS, create=create)
    backends = build_backends(settings)
    accounts = Accounts(db, clock)
    try:
        configure_missions(settings, backends, db, accounts, clock)
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
        offer=InvokerToolRule(),
    )
    configure_proposal_review(backends, pipeline)
    try:
        yield Runtime(settings, db, accounts, registry, pipeline, clock, backends, gate)
    finally:
        await pipeline.aclose()
        await db.close()
