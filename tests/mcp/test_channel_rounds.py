"""The signed request state of 2026-07-28 input-required rounds, on both backends: a state one
replica sealed opens on another (one shared secret, created once), answers carry over from
round to round, and a state past its expiry or bound to another call brings no answers."""

from __future__ import annotations

from mana_cli.runtime import EXTRA_MIGRATIONS
from mcp_adapter.input_rounds import STATE_TTL_SECONDS, CallBinding, InputRounds, RoundAnswers
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
        opened = await other.open(CALL, state, {"name": ANSWER})
        assert opened.answers == {"name": ANSWER}
        # the next round carries the first answer along with the new question
        opened.asked["colour"] = "elicit"
        second = await other.seal(CALL, opened)
        later = await one.open(CALL, second, {"colour": {"action": "decline"}})
        assert later.answers == {"name": ANSWER, "colour": {"action": "decline"}}
        # answers to keys the state did not ask are ignored
        assert (await one.open(CALL, state, {"other": ANSWER})).answers == {}
        # another call (other arguments, user, space or tool) gets nothing from it
        for foreign in (
            CallBinding("usr_1", "spc_1", "chantest.ask", "other-args"),
            CallBinding("usr_2", "spc_1", "chantest.ask", "abc"),
            CallBinding("usr_1", "spc_2", "chantest.ask", "abc"),
            CallBinding("usr_1", "spc_1", "chantest.sample", "abc"),
        ):
            assert (await one.open(foreign, state, {"name": ANSWER})).answers == {}
        clock.now += STATE_TTL_SECONDS + 1
        assert (await one.open(CALL, state, {"name": ANSWER})).answers == {}
        rows = await first_db.read(lambda c: c.execute("SELECT name FROM mcp_secrets").fetchall())
        assert [tuple(r) for r in rows] == [("request-state",)]
    finally:
        await first_db.close()
        await second_db.close()
