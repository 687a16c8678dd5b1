"""`proposals.review` through the pipeline with a scripted client: one question per pending
proposal showing the exact fingerprinted call, approvals run exactly once through the same
proposal service as the CLI (invoker `user`), rejections, skips and a cancelled review; owners
and admins only; a client that cannot ask gets a clear error; the handler runs outside any
write transaction; with 2026-07-28 rounds nothing is decided until every answer is in."""

from __future__ import annotations

from typing import Any

import pytest

from missions.review import question_key
from tests.missions.helpers import World, call, scripted, turn
from tests.policy.scripted_channel import ScriptedChannel
from tool_registry.client_channel import ClientCannotAsk, ElicitAnswer, InputRequired
from tool_registry.context import CallContext
from tool_registry.pipeline import Outcome
from tool_registry.store import holds_write_transaction
from tool_registry.store.accounts import Space, User


def decide(choice: str, note: str | None = None) -> ElicitAnswer:
    content: dict[str, Any] = {"decision": choice}
    if note is not None:
        content["note"] = note
    return ElicitAnswer("accept", content)


async def staged(world: World, n: int, *, shared: bool = False) -> tuple[User, Space, list[str]]:
    """An owner whose mission proposed `n` notes (notes.create: the default `propose`), in
    their personal space or (`shared`) a team space they own."""
    owner = await world.user()
    if shared:
        space = await world.pipeline.accounts.create_space(owner.id, type_="team", name="Crew")
    else:
        space = await world.personal(owner)
    agent = await world.agent(owner, space)
    mission = await world.mission(owner, space, agent)
    calls = [call("notes.create", title=f"Idea {i}", body=f"Body {i}") for i in range(n)]
    llm = scripted([turn("Proposing notes.", *calls), turn("Done.")])
    await world.runner(llm).run_now(space.id, mission.id)
    proposals = await world.store.list_proposals(space.id)
    assert len(proposals) == n
    return owner, space, [p.id for p in reversed(proposals)]


async def review(
    world: World, user: User, space: Space, channel: ScriptedChannel, **args: Any
) -> Outcome:
    return await world.pipeline.invoke(
        "proposals.review",
        args,
        CallContext(user_id=user.id, space=space.id, invoker="mcp", channel=channel),
    )


async def test_each_proposal_is_asked_with_its_exact_call_and_decided(world: World) -> None:
    owner, space, ids = await staged(world, 3)
    channel = ScriptedChannel([decide("approve"), decide("reject", "not now"), decide("skip")])
    outcome = await review(world, owner, space, channel)
    assert outcome.ok, outcome.public()
    result = outcome.result
    assert result is not None
    assert [p["id"] for p in result["approved"]] == [ids[0]]
    assert result["approved"][0]["status"] == "executed"
    assert [p["id"] for p in result["rejected"]] == [ids[1]]
    assert [p["id"] for p in result["skipped"]] == [ids[2]]
    assert result["failed"] == [] and result["stopped"] is False

    proposals = {p.id: p for p in await world.store.list_proposals(space.id, status=None)}
    assert [q.key for q in channel.asked] == [question_key(i) for i in ids]
    for q, pid in zip(channel.asked, ids, strict=True):
        p = proposals[pid]
        assert f"call notes.create with arguments {p.arguments_json}" in q.message
        assert p.fingerprint in q.message
        assert q.schema["properties"]["decision"]["enum"] == ["approve", "reject", "skip"]
    assert proposals[ids[0]].status == "executed"
    assert proposals[ids[1]].status == "rejected"
    assert proposals[ids[1]].result == {"note": "not now"}
    assert proposals[ids[2]].status == "pending"
    notes = await world.records("notes", space)
    assert [n["title"] for n in notes] == ["Idea 0"]
    rows = await world.pipeline.audit.recent(tool="notes.create")
    assert [(r["invoker"], r["outcome"]) for r in rows] == [("user", "ok")]


async def test_a_second_review_asks_only_what_is_still_pending_and_runs_nothing_twice(
    world: World,
) -> None:
    owner, space, ids = await staged(world, 2)
    first = await review(world, owner, space, ScriptedChannel([decide("approve"), decide("skip")]))
    assert first.ok
    channel = ScriptedChannel([decide("approve")])
    second = await review(world, owner, space, channel)
    assert second.ok and second.result is not None
    assert [q.key for q in channel.asked] == [question_key(ids[1])]
    assert [p["id"] for p in second.result["approved"]] == [ids[1]]
    assert sorted(n["title"] for n in await world.records("notes", space)) == ["Idea 0", "Idea 1"]


async def test_decline_skips_and_cancel_stops_the_review(world: World) -> None:
    owner, space, ids = await staged(world, 3)
    channel = ScriptedChannel([ElicitAnswer("decline"), ElicitAnswer("cancel")])
    outcome = await review(world, owner, space, channel)
    assert outcome.ok and outcome.result is not None
    assert outcome.result["stopped"] is True
    assert [p["id"] for p in outcome.result["skipped"]] == ids
    assert len(channel.asked) == 2
    assert await world.records("notes", space) == []


async def test_members_cannot_review(world: World) -> None:
    _, space, _ = await staged(world, 1, shared=True)
    member = await world.user()
    await world.pipeline.accounts.add_member(space.id, member.id, "member")
    channel = ScriptedChannel([decide("approve")])
    outcome = await review(world, member, space, channel)
    assert outcome.status == "error" and outcome.error is not None
    assert outcome.error.reason == "permission-denied"
    assert channel.asked == []


async def test_a_client_that_cannot_ask_gets_a_clear_error(world: World) -> None:
    owner, space, _ = await staged(world, 1)
    why = "the client did not declare the elicitation capability"
    outcome = await review(world, owner, space, ScriptedChannel([ClientCannotAsk(why)]))
    assert outcome.status == "error" and outcome.error is not None
    assert outcome.error.reason == "client-cannot-ask"
    assert why in outcome.error.message and "mana proposals approve ID" in outcome.error.message


async def test_the_handler_asks_outside_any_write_transaction(world: World) -> None:
    owner, space, _ = await staged(world, 2)
    held: list[bool] = []

    class Watching(ScriptedChannel):
        async def elicit(self, key: str, message: str, schema: Any) -> ElicitAnswer:
            held.append(holds_write_transaction())
            return await super().elicit(key, message, schema)

    outcome = await review(world, owner, space, Watching([decide("approve"), decide("approve")]))
    assert outcome.ok and held == [False, False]


async def test_agents_are_never_offered_the_review(world: World) -> None:
    owner, space, _ = await staged(world, 1)
    outcome = await world.pipeline.invoke(
        "proposals.review",
        {},
        CallContext(user_id=owner.id, space=space.id, invoker="mission-runner"),
    )
    assert outcome.status == "denied" and outcome.reason == "not-offered"


class Rounds(ScriptedChannel):
    """A 2026-07-28 client: a question without an answer yet ends the round (`InputRequired`);
    the retry brings every answer given so far."""

    def __init__(self, answers: dict[str, ElicitAnswer]) -> None:
        super().__init__([])
        self.known = answers

    async def elicit(self, key: str, message: str, schema: Any) -> ElicitAnswer:
        if key not in self.known:
            raise InputRequired({key: {"message": message}})
        return self.known[key]


async def test_input_required_rounds_decide_nothing_until_every_answer_is_in(
    world: World,
) -> None:
    owner, space, ids = await staged(world, 2)
    answers: dict[str, ElicitAnswer] = {}
    for expected in ids:
        with pytest.raises(InputRequired) as raised:
            await review(world, owner, space, Rounds(dict(answers)))
        assert list(raised.value.requests) == [question_key(expected)]
        statuses = [p.status for p in await world.store.list_proposals(space.id, status=None)]
        assert statuses == ["pending", "pending"]
        answers[question_key(expected)] = decide("approve")
    outcome = await review(world, owner, space, Rounds(answers))
    assert outcome.ok and outcome.result is not None
    assert [p["id"] for p in outcome.result["approved"]] == ids
    assert sorted(n["title"] for n in await world.records("notes", space)) == ["Idea 0", "Idea 1"]
