"""The gate hook of the invocation pipeline. `policy` implements it; the default allows all."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from pydantic import BaseModel

from tool_registry.context import CallContext
from tool_registry.spec import ToolSpec
from tool_registry.store.accounts import Space


@dataclass(frozen=True)
class Decision:
    """`reason` is a stable machine string; `reminder` is text for the model; `flagged` marks an
    allowed call that deserves attention (e.g. an injection marker in its arguments)."""

    allow: bool
    reason: str
    reminder: str | None = None
    flagged: bool = False


ALLOW = Decision(allow=True, reason="allowed")


@dataclass(frozen=True)
class GateRequest:
    spec: ToolSpec[Any, Any]
    call: CallContext
    space: Space
    role: str
    parsed_input: BaseModel
    now: datetime


class Gate(Protocol):
    async def check(self, request: GateRequest) -> Decision: ...


class AllowAllGate:
    async def check(self, request: GateRequest) -> Decision:
        return ALLOW
