"""Shared helpers for the policy tests: small tool specs independent of the bundled modules, a
gate-request builder and an in-memory allowlist."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import Field

from policy.allowlist import DestructiveAllowlist
from policy.gate import PolicyGate
from policy.rules import PolicyContext
from policy.settings import PolicySettings
from tool_registry.clock import FixedClock
from tool_registry.context import CallContext, ToolContext
from tool_registry.gate import GateRequest
from tool_registry.models import ToolInput, ToolOutput
from tool_registry.modules import build_registry
from tool_registry.registry import Registry
from tool_registry.spec import PolicyHint, Scope, ToolSpec
from tool_registry.store.accounts import Space
from tool_registry.testing import ToolKit, tool_kit

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
NOW = T0.timestamp()


class FreeInput(ToolInput):
    text: str = ""
    items: list[Any] = Field(default_factory=list)
    meta: dict[str, Any] = Field(default_factory=dict)


class Done(ToolOutput):
    ok: bool = True


async def _done(inp: FreeInput, ctx: ToolContext) -> Done:
    return Done()


def make_spec(
    name: str = "notes.create", *, hint: PolicyHint = "write", scope: Scope = "user-space"
) -> ToolSpec[FreeInput, Done]:
    return ToolSpec(
        name=name,
        title=f"Test {name}",
        description=f"Test tool {name}.",
        module=name.split(".", 1)[0],
        scope=scope,
        policy_hint=hint,
        input=FreeInput,
        output=Done,
        handler=_done,
    )


WRITE = make_spec("notes.create")
READ = make_spec("notes.search", hint="read")
DESTRUCTIVE = make_spec("notes.delete", hint="destructive")
ADMIN = make_spec("users.setTier", scope="admin")
ADMIN_DESTRUCTIVE = make_spec("users.purge", hint="destructive", scope="admin")

CTX = PolicyContext(user_id="usr_a", space_id="spc_a")


def ctx(*allowed: str) -> PolicyContext:
    return PolicyContext(
        user_id="usr_a", space_id="spc_a", destructive_allowlist=frozenset(allowed)
    )


def inp(text: str = "", **kw: Any) -> FreeInput:
    return FreeInput(text=text, **kw)


SPACE = Space("spc_a", "alpha", "Alpha", "personal", "2026-01-01T00:00:00.000000Z")
SPACE_B = Space("spc_b", "beta", "Beta", "personal", "2026-01-01T00:00:00.000000Z")


def request(
    spec: ToolSpec[Any, Any] = WRITE,
    *,
    user: str = "usr_a",
    space: Space = SPACE,
    now: datetime = T0,
    parsed: FreeInput | None = None,
) -> GateRequest:
    return GateRequest(
        spec=spec,
        call=CallContext(user_id=user, space=space.id),
        space=space,
        role="owner",
        parsed_input=parsed if parsed is not None else FreeInput(),
        now=now,
    )


class MemoryAllowlist:
    """An `AllowlistSource` over a dict, counting reads."""

    def __init__(self, lists: dict[str, set[str]] | None = None) -> None:
        self.lists = lists or {}
        self.reads = 0

    async def tools(self, space_id: str) -> frozenset[str]:
        self.reads += 1
        return frozenset(self.lists.get(space_id, set()))


@asynccontextmanager
async def policy_kit(
    path: Path,
    settings: PolicySettings | None = None,
    *,
    clock: FixedClock | None = None,
    registry: Registry | None = None,
) -> AsyncIterator[PolicyKit]:
    """A `ToolKit` on a fresh SQLite file whose pipeline uses a `PolicyGate` reading the real
    database-backed allowlist."""
    registry = registry or build_registry()
    clock = clock or FixedClock(T0)
    gate = PolicyGate(settings or PolicySettings(), MemoryAllowlist(), registry=registry)
    async with tool_kit(path, registry=registry, gate=gate, clock=clock) as kit:
        allowlist = DestructiveAllowlist(kit.db, registry, accounts=kit.accounts, clock=clock)
        gate.allowlist = allowlist
        yield PolicyKit(kit, gate, allowlist, clock)


@dataclass
class PolicyKit:
    kit: ToolKit
    gate: PolicyGate
    allowlist: DestructiveAllowlist
    clock: FixedClock

    async def table(self, name: str) -> list[tuple[Any, ...]]:
        """Every row of one of the policy tables, in a stable order."""
        assert name in (
            "space_destructive_allowlist",
            "space_destructive_mode",
            "space_policy_audit",
        )
        rows = await self.kit.db.read(
            lambda c: c.execute(f"SELECT * FROM {name} ORDER BY 1, 2").fetchall()  # noqa: S608
        )
        return [tuple(r) for r in rows]
