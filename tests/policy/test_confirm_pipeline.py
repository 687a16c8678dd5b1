"""The pipeline's confirmation of destructive calls in a `confirm` space, with a scripted client
channel: accept, decline, cancel, a client that cannot ask, and the 2026-07-28 round that ends
with `InputRequired` (no outcome, no audit row, not counted by the rate limit)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pytest

from policy.allowlist import DestructiveAllowlist
from policy.gate import PolicyGate
from policy.rules import DESTRUCTIVE_DECLINED, DESTRUCTIVE_NOT_ALLOWED
from policy.settings import PolicySettings
from tests.policy.policy_helpers import T0
from tests.policy.scripted_channel import ScriptedChannel
from tool_registry.client_channel import (
    NO_CHANNEL,
    ClientCannotAsk,
    ElicitAnswer,
    InputRequired,
)
from tool_registry.clock import FixedClock
from tool_registry.context import CallContext, Invoker
from tool_registry.modules import build_registry
from tool_registry.pipeline import CONFIRM_KEY, Outcome
from tool_registry.store.accounts import Space, User
from tool_registry.testing import ToolKit, tool_kit

YES = ElicitAnswer("accept", {"confirm": True})


@dataclass
class Confirming:
    kit: ToolKit
    allowlist: DestructiveAllowlist
    owner: User
    space: Space

    async def call(
        self,
        tool: str,
        args: dict[str, Any],
        channel: ScriptedChannel | None = None,
        invoker: Invoker = "mcp",
        key: str | None = None,
    ) -> Outcome:
        call = CallContext(
            user_id=self.owner.id,
            space=self.space.id,
            invoker=invoker,
            idempotency_key=key,
            channel=channel if channel is not None else NO_CHANNEL,
        )
        return await self.kit.pipeline.invoke(tool, args, call)

    async def habit(self, name: str) -> str:
        result = await self.kit.call_ok(self.owner, self.space, "habits.create", {"name": name})
        return str(result["id"])

    async def alive(self, habit_id: str) -> bool:
        result = await self.kit.call_ok(self.owner, self.space, "habits.list", {})
        return habit_id in {h["id"] for h in result["habits"]}

    async def audit_rows(self, tool: str) -> list[dict[str, Any]]:
        return await self.kit.audit(tool=tool, space_id=self.space.id)


@asynccontextmanager
async def confirming(
    target: str, mode: str = "confirm", settings: PolicySettings | None = None
) -> AsyncIterator[Confirming]:
    registry = build_registry()
    clock = FixedClock(T0)
    gate = PolicyGate(settings or PolicySettings(), _Unset(), registry=registry)
    async with tool_kit(target, registry=registry, gate=gate, clock=clock) as kit:
        allowlist = DestructiveAllowlist(kit.db, registry, accounts=kit.accounts, clock=clock)
        gate.allowlist = allowlist
        gate.modes = allowlist
        owner = await kit.user()
        space = await kit.personal(owner)
        await allowlist.set_mode(owner.id, space.id, mode, acknowledge=True)
        yield Confirming(kit, allowlist, owner, space)


class _Unset:
    async def tools(self, space_id: str) -> frozenset[str]:
        raise AssertionError("replaced by the database's allowlist")


async def test_accept_runs_the_delete_after_naming_the_record(database_target: str) -> None:
    async with confirming(database_target) as c:
        walk = await c.habit("Walk")
        channel = ScriptedChannel([YES])
        outcome = await c.call("habits.delete", {"id": walk}, channel)
        assert outcome.ok, outcome.public()
        assert not await c.alive(walk)
        [question] = channel.asked
        assert question.key == CONFIRM_KEY
        assert question.message == "Delete the habit 'Walk'? It cannot be undone."
        assert question.schema["required"] == ["confirm"]
        assert question.schema["properties"]["confirm"]["type"] == "boolean"
        [row] = await c.audit_rows("habits.delete")
        assert (row["outcome"], row["confirmation"]) == ("ok", "accept")


@pytest.mark.parametrize(
    ("answer", "stored"),
    [
        (ElicitAnswer("decline"), "decline"),
        (ElicitAnswer("cancel"), "cancel"),
        (ElicitAnswer("accept", {"confirm": False}), "decline"),
    ],
)
async def test_decline_or_cancel_denies_and_keeps_the_record(
    database_target: str, answer: ElicitAnswer, stored: str
) -> None:
    async with confirming(database_target) as c:
        walk = await c.habit("Walk")
        outcome = await c.call("habits.delete", {"id": walk}, ScriptedChannel([answer]))
        assert outcome.status == "denied" and outcome.reason == DESTRUCTIVE_DECLINED
        assert outcome.reminder is not None and "nothing was deleted" in outcome.reminder
        assert await c.alive(walk)
        [row] = await c.audit_rows("habits.delete")
        assert (row["outcome"], row["reason"], row["confirmation"]) == (
            "denied",
            DESTRUCTIVE_DECLINED,
            stored,
        )


async def test_a_client_that_cannot_ask_gets_the_denial_with_a_reminder(
    database_target: str,
) -> None:
    async with confirming(database_target) as c:
        walk = await c.habit("Walk")
        why = "the client did not declare the elicitation capability"
        outcome = await c.call(
            "habits.delete", {"id": walk}, ScriptedChannel([ClientCannotAsk(why)])
        )
        assert outcome.status == "denied" and outcome.reason == DESTRUCTIVE_NOT_ALLOWED
        assert outcome.reminder is not None
        assert "asks the user to confirm habits.delete" in outcome.reminder
        assert why in outcome.reminder
        # The CLI has no channel at all (NO_CHANNEL): the same denial.
        outcome = await c.call("habits.delete", {"id": walk}, invoker="cli")
        assert outcome.reason == DESTRUCTIVE_NOT_ALLOWED
        assert outcome.reminder is not None and "cannot show the question" in outcome.reminder
        assert await c.alive(walk)
        rows = await c.audit_rows("habits.delete")
        assert [r["confirmation"] for r in rows] == ["unavailable", "unavailable"]


async def test_input_required_passes_through_and_the_retry_runs_once(
    database_target: str,
) -> None:
    # One call per minute: a round that counted would leave the retry rate-limited.
    settings = PolicySettings(rate_limit=1)
    async with confirming(database_target, settings=settings) as c:
        walk = await c.habit("Walk")
        round_one = ScriptedChannel([InputRequired({CONFIRM_KEY: {"method": "elicitation"}})])
        with pytest.raises(InputRequired) as raised:
            await c.call("habits.delete", {"id": walk}, round_one)
        assert CONFIRM_KEY in raised.value.requests
        assert await c.alive(walk)
        assert await c.audit_rows("habits.delete") == []

        outcome = await c.call("habits.delete", {"id": walk}, ScriptedChannel([YES]))
        assert outcome.ok, outcome.public()
        rows = await c.audit_rows("habits.delete")
        assert [(r["outcome"], r["confirmation"]) for r in rows] == [("ok", "accept")]


async def test_a_record_the_tool_cannot_name_gets_the_generic_question(
    database_target: str,
) -> None:
    async with confirming(database_target) as c:
        channel = ScriptedChannel([ElicitAnswer("decline")])
        await c.call("habits.delete", {"id": "hab_doesnotexist"}, channel)
        [question] = channel.asked
        assert question.message == (
            "Run Delete habit (habits.delete)? It deletes data. It cannot be undone."
        )


async def test_agents_are_denied_without_a_question(database_target: str) -> None:
    async with confirming(database_target) as c:
        walk = await c.habit("Walk")
        for invoker in ("mission-runner", "persona-runner"):
            channel = ScriptedChannel([YES])
            outcome = await c.call("habits.delete", {"id": walk}, channel, invoker=invoker)
            assert outcome.reason == DESTRUCTIVE_NOT_ALLOWED
            assert channel.asked == []
        assert await c.alive(walk)
        rows = await c.audit_rows("habits.delete")
        assert [r["confirmation"] for r in rows] == [None, None]


async def test_allowlisted_tools_and_allow_mode_run_without_a_question(
    database_target: str,
) -> None:
    async with confirming(database_target) as c:
        await c.allowlist.allow(c.owner.id, c.space.id, ["habits.delete"], acknowledge=True)
        walk = await c.habit("Walk")
        channel = ScriptedChannel([])
        assert (await c.call("habits.delete", {"id": walk}, channel)).ok
        assert channel.asked == []
        await c.allowlist.revoke(c.owner.id, c.space.id, ["habits.delete"])
        await c.allowlist.set_mode(c.owner.id, c.space.id, "allow", acknowledge=True)
        run = await c.habit("Run")
        outcome = await c.call("habits.delete", {"id": run}, channel, invoker="mission-runner")
        assert outcome.ok and channel.asked == []


async def test_deny_mode_never_asks(database_target: str) -> None:
    async with confirming(database_target, mode="deny") as c:
        walk = await c.habit("Walk")
        channel = ScriptedChannel([YES])
        outcome = await c.call("habits.delete", {"id": walk}, channel)
        assert outcome.reason == DESTRUCTIVE_NOT_ALLOWED and channel.asked == []


async def test_members_and_agents_read_the_mode_with_spaces_get_policy(
    database_target: str,
) -> None:
    async with confirming(database_target) as c:
        policy = await c.kit.call_ok(c.owner, c.space, "spaces.getPolicy", {})
        assert policy["destructiveMode"] == "confirm"
        await c.allowlist.set_mode(c.owner.id, c.space.id, "deny", acknowledge=False)
        policy = await c.kit.call_ok(c.owner, c.space, "spaces.getPolicy", {})
        assert policy["destructiveMode"] == "deny"


async def test_a_retry_of_a_confirmed_delete_replays_without_asking_again(
    database_target: str,
) -> None:
    async with confirming(database_target) as c:
        walk = await c.habit("Walk")
        first = await c.call("habits.delete", {"id": walk}, ScriptedChannel([YES]), key="del-1")
        assert first.ok
        retry_channel = ScriptedChannel([])
        retry = await c.call("habits.delete", {"id": walk}, retry_channel, key="del-1")
        assert retry.ok and retry.replayed and retry.result == first.result
        assert retry_channel.asked == []
        # The key answers only the same call: another record with it is refused, unasked.
        run = await c.habit("Run")
        other = await c.call("habits.delete", {"id": run}, retry_channel, key="del-1")
        assert other.status == "error" and other.reason == "idempotency-key-reused"
        assert retry_channel.asked == [] and await c.alive(run)
