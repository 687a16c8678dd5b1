"""The in-process persona world used by the runner tests: seeded personas, the real HTTP app
served without a network, a fixed clock, and a runner factory."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from personas.catalog import PersonaCatalog
from personas.passwords import PersonaSecret
from personas.runner import PersonaRunner, RunnerConfig
from personas.store import PersonaRow, PersonaStore
from tests.personas.inprocess import InProcessConnector
from tool_registry.clock import FixedClock
from tool_registry.pipeline import Pipeline
from tool_registry.space_types import SpaceTypeCatalog
from tool_registry.store import Accounts, Database

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
TRIO = ["maya.chen@mana.test", "jonas.weber@mana.test", "lena.weber@mana.test"]


def script(name: str) -> list[dict[str, Any]]:
    turns: list[dict[str, Any]] = json.loads((EXAMPLES / name).read_text(encoding="utf-8"))
    return turns


@dataclass
class World:
    db: Database
    accounts: Accounts
    store: PersonaStore
    pipeline: Pipeline
    connector: InProcessConnector
    catalog: PersonaCatalog
    clock: FixedClock
    secret: PersonaSecret

    def runner(self, llm: Any, **config: Any) -> PersonaRunner:
        return PersonaRunner(
            accounts=self.accounts,
            store=self.store,
            space_types=SpaceTypeCatalog.load(),
            secret=self.secret,
            connector=self.connector,
            llm=llm,
            config=RunnerConfig(**config),
            clock=self.clock,
        )

    async def persona(self, email: str) -> PersonaRow:
        row = await self.store.persona(email)
        assert row is not None
        return row
