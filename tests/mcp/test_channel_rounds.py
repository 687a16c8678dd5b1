"""The signed request state of 2026-07-28 input-required rounds, on both backends: a state one
replica sealed opens on another (one shared secret, created once), answers carry over from
round to round, this request's responses are used only when asked for, and a state that is
altered, expired or bound to another call is rejected with a JSON-RPC -32602 error."""

from __future__ import annotations

import mcp_types as types
import pytest
from mcp.shared.exceptions import MCPError

from mana_cli.runtime import EXTRA_MIGRATIONS
from mcp_adapter.input_rounds import (
    STATE_REJECTED,
    STATE_TTL_SECONDS,
    CallBinding,
    InputRounds,
    RoundAnswers,
)
from tool_registry.store import open_database

CALL = CallBinding(user_id="usr_1", space="spc_1", tool="chantest.ask", args_hash="abc")
ANSWER = {"action": "accept", "content": {"name": "Ann"}}


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


async def test_state_crosses_replicas_and_expires(database_target: str) -> None:
    first_db = await open_database(database_target, EXTRA_MIGRATIONS)
    second_db = await open_database(database_target, EXTRA_MIGRATIONS)
    clock = Clock()
    try:
        one = InputRounds(first_db, now=clock)
        other = InputRounds(second_db, now=clock)
        state = await one.seal(CALL, RoundAnswers(asked={"name": "elicit"}))
        opened = await other.open(CALL, state, {"name": ANSWER, "extra": {"action": "cancel"}})
        assert opened.answers == {}  # nothing used yet
        assert opened.answer("name") == ANSWER
        # the next round carries the answer used along with the new question, not the extra
        opened.asked["colour"] = "elicit"
        second = await other.seal(CALL, opened)
        later = await one.open(CALL, second, {"colour": {"action": "decline"}})
        assert later.answer("colour") == {"action": "decline"}
        assert later.answers == {"name": ANSWER, "colour": {"action": "decline"}}
        # an earlier round's answer is settled: a new response under its key does not change it
        again = await one.open(CALL, second, {"name": {"action": "cancel"}})
        assert again.answer("name") == ANSWER
        # without a state (a first round) the responses are this request's input
        assert (await one.open(CALL, None, {"name": ANSWER})).answer("name") == ANSWER
        # another call (other arguments, user, space or tool) cannot use the state
        for foreign in (
            CallBinding("usr_1", "spc_1", "chantest.ask", "other-args"),
            CallBinding("usr_2", "spc_1", "chantest.ask", "abc"),
            CallBinding("usr_1", "spc_2", "chantest.ask", "abc"),
            CallBinding("usr_1", "spc_1", "chantest.sample", "abc"),
        ):
            await _rejected(one, foreign, state)
        version, payload, mac = state.split(".")
        for altered in (
            f"{version}.{payload}.{mac[:-2]}AA",
            f"{version}.{payload[:-2]}AA.{mac}",
            f"v0.{payload}.{mac}",
            "garbage",
        ):
            await _rejected(one, CALL, altered)
        clock.now += STATE_TTL_SECONDS + 1
        await _rejected(one, CALL, state)
        rows = await first_db.read(lambda c: c.execute("SELECT name FROM mcp_secrets").fetchall())
        assert [tuple(r) for r in rows] == [("request-state",)]
    finally:
        await first_db.close()
        await second_db.close()


async def _rejected(rounds: InputRounds, binding: CallBinding, state: str) -> None:
    with pytest.raises(MCPError) as caught:
        await rounds.open(binding, state, {"name": ANSWER})
    assert caught.value.error.code == types.INVALID_PARAMS
    assert caught.value.error.message == STATE_REJECTED  # which check failed stays in the log
