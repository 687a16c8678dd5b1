"""The gate hook of the invocation pipeline. `policy` implements it; the default allows all."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Protocol

from pydantic import BaseModel

from tool_registry.context import CallContext
from tool_registry.spec import ToolSpec
from tool_registry.store.accounts import Space


@dataclass(frozen=True)
class Decision:
    """`reason` is a stable machine string; `reminder` is text for the model; `flagged` marks an
    allowed call that deserves attention (e.g. an injection marker in its arguments).

    `confirm` marks a refusal that the calling person may lift: the pipeline asks the user
    (through the call's client channel) and asks the gate again with the answer in
    `GateRequest.confirmation`. It comes with `allow=False`, so a consumer that does not know
    about confirmations fails closed."""

    allow: bool
    reason: str
    reminder: str | None = None
    flagged: bool = False
    confirm: bool = False


ALLOW = Decision(allow=True, reason="allowed")

# The person's answer to a confirmation (`unavailable`: their client cannot be asked). Stored in
# the call's audit row.
Confirmation = Literal["accept", "decline", "cancel", "unavailable"]


@dataclass(frozen=True)
class GateRequest:
    spec: ToolSpec[Any, Any]
    call: CallContext
    space: Space
    role: str
    parsed_input: BaseModel
    now: datetime
    # The answer to the confirmation a `confirm` decision asked for (None: not asked yet), and
    # for `unavailable`, why the client cannot be asked.
    confirmation: Confirmation | None = None
    cannot_ask: str | None = None


class Gate(Protocol):
    async def check(self, request: GateRequest) -> Decision: ...


class AllowAllGate:
    async def check(self, request: GateRequest) -> Decision:
        return ALLOW
