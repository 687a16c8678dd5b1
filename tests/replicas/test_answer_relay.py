"""The answer relay of two processes on one database (`mana_http.answers`), on both backends:
an answer for another process is kept and announced, taken only by the process it names and
only for its own session, deleted as it is taken; answers nobody waits for, of ended sessions,
past their time or beyond a session's cap leave nothing behind."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest_asyncio
from mcp_types import ErrorData, JSONRPCError, JSONRPCResponse

from mana_cli.runtime import EXTRA_MIGRATIONS
from mana_http import store
from mana_http.answers import ANSWER, Answer, AnswerRelay, named_request_id, sender_of
from mana_http.metrics import Metrics
from mana_http.store import SessionRow
from tool_registry.store import open_database
from tool_registry.store.connection import Conn
from tool_registry.store.database import Database

ASKER = "a" * 32
RECEIVER = "b" * 32


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Process:
    """One process's relay, its bus events and what it handed to waiting requests."""

    relay: AnswerRelay
    metrics: Metrics
    published: list[tuple[str, str, str]] = field(default_factory=list)
    waiting: set[tuple[str, str]] = field(default_factory=set)  # (session, request id)
    delivered: list[tuple[str, Answer]] = field(default_factory=list)

    def counted(self, route: str) -> float:
        value = self.metrics.registry.get_sample_value(
            "mana_mcp_client_answers_total", {"route": route}
        )
        return value or 0.0


def _process(db: Database, instance: str, clock: Clock, per_session: int = 3) -> Process:
    metrics = Metrics()
    published: list[tuple[str, str, str]] = []
    waiting: set[tuple[str, str]] = set()
    delivered: list[tuple[str, Answer]] = []

    async def publish(kind: str, session_id: str, detail: str) -> None:
        published.append((kind, session_id, detail))

    def deliver(session_id: str, answer: Answer) -> bool:
        key = (session_id, str(answer.id))
        if key not in waiting:
            return False
        waiting.discard(key)
        delivered.append((session_id, answer))
        return True

    relay = AnswerRelay(
        db,
        publish,
        deliver,
        instance=instance,
        metrics=metrics,
        ttl_seconds=60.0,
        per_session=per_session,
        clock=clock,
    )
    return Process(relay, metrics, published, waiting, delivered)


@pytest_asyncio.fixture
async def db(database_target: str) -> AsyncIterator[Database]:
    database = await open_database(database_target, EXTRA_MIGRATIONS)
    try:
        rows = [SessionRow(s, "usr_1", "2025-11-25", None, 1.0, 1.0) for s in ("s1", "s2")]

        def insert(conn: Conn) -> None:
            for row in rows:
                store.insert_session(conn, row)

        await database.write(insert)
        yield database
    finally:
        await database.close()


def _response(request_id: str, text: str = "yes") -> bytes:
    return (
        JSONRPCResponse(
            jsonrpc="2.0", id=request_id, result={"action": "accept", "content": {"t": text}}
        )
        .model_dump_json(by_alias=True)
        .encode()
    )


async def _rows(db: Database) -> list[tuple[str, str]]:
    return await db.read(
        lambda c: [
            (str(r[0]), str(r[1]))
            for r in c.execute("SELECT session_id, instance FROM mcp_answers").fetchall()
        ]
    )


async def _relay(sender: Process, session_id: str, body: bytes) -> None:
    """What the receiving guard does with a POSTed answer (`McpGuard._claim_and_forward`)."""
    found = sender.relay.elsewhere(body)
    assert found is not None
    await sender.relay.forward(session_id, *found)


def test_request_ids_name_their_process() -> None:
    assert sender_of(named_request_id(ASKER, 7)) == ASKER
    for foreign in (7, "7", "x", ":", f"{ASKER}:", f"{ASKER}:x", None):
        assert sender_of(foreign) is None


async def test_an_answer_reaches_the_process_that_asked_and_only_it(db: Database) -> None:
    clock = Clock()
    asker, receiver = _process(db, ASKER, clock), _process(db, RECEIVER, clock)
    request_id = named_request_id(ASKER, 1)
    asker.waiting.add(("s1", request_id))
    # the asker's own answers, requests and other bodies are not relayed
    assert asker.relay.elsewhere(_response(request_id)) is None
    assert receiver.relay.elsewhere(b'{"jsonrpc":"2.0","id":"x:1","method":"ping"}') is None
    assert receiver.relay.elsewhere(b"not json") is None

    await _relay(receiver, "s1", _response(request_id, "for the asker"))
    assert await _rows(db) == [("s1", ASKER)]
    [(kind, session_id, detail)] = receiver.published
    assert (kind, session_id) == (ANSWER, "s1")
    # the receiver hears its own event and leaves the answer; another session gets nothing
    await receiver.relay.on_event(session_id, detail)
    await asker.relay.on_event("s2", detail)
    assert await _rows(db) == [("s1", ASKER)] and asker.delivered == []

    await asker.relay.on_event(session_id, detail)
    [(delivered_to, answer)] = asker.delivered
    assert delivered_to == "s1" and isinstance(answer, JSONRPCResponse)
    assert answer.id == request_id and answer.result["content"] == {"t": "for the asker"}
    assert await _rows(db) == []
    assert (receiver.counted("forwarded"), asker.counted("delivered")) == (1.0, 1.0)
    # the event again (or a late copy) finds nothing
    await asker.relay.on_event(session_id, detail)
    assert len(asker.delivered) == 1


async def test_errors_are_relayed_and_late_answers_are_dropped(db: Database) -> None:
    clock = Clock()
    asker, receiver = _process(db, ASKER, clock), _process(db, RECEIVER, clock)
    waited, late = named_request_id(ASKER, 1), named_request_id(ASKER, 2)
    asker.waiting.add(("s1", waited))
    error = JSONRPCError(jsonrpc="2.0", id=waited, error=ErrorData(code=-1, message="declined"))
    await _relay(receiver, "s1", error.model_dump_json(by_alias=True).encode())
    await _relay(receiver, "s1", _response(late))  # nobody waits for it any more
    for _, session_id, detail in receiver.published:
        await asker.relay.on_event(session_id, detail)
    [(_, answer)] = asker.delivered
    assert isinstance(answer, JSONRPCError) and answer.error.message == "declined"
    assert asker.counted("dropped") == 1.0
    assert await _rows(db) == []


async def test_nothing_stays_behind(db: Database) -> None:
    clock = Clock()
    receiver = _process(db, RECEIVER, clock, per_session=2)
    gone = "c" * 32  # a process that ended before its answers came
    for n in range(3):
        await _relay(receiver, "s1", _response(named_request_id(gone, n)))
    # at most `per_session` wait in one session; the third was dropped
    assert len(await _rows(db)) == 2 and receiver.counted("dropped") == 1.0
    # an answer for a session that has ended is not kept
    await _relay(receiver, "no-such-session", _response(named_request_id(gone, 9)))
    assert len(await _rows(db)) == 2
    # answers go with their session
    await _relay(receiver, "s2", _response(named_request_id(gone, 10)))
    await db.write(lambda c: store.delete_sessions(c, ["s1"]))
    assert await _rows(db) == [("s2", gone)]
    # and nobody's answers expire
    clock.now += 59
    await receiver.relay.expire()
    assert await _rows(db) == [("s2", gone)]
    clock.now += 2
    await receiver.relay.expire()
    assert await _rows(db) == []


async def test_a_process_that_missed_events_collects_its_answers(db: Database) -> None:
    clock = Clock()
    asker, receiver = _process(db, ASKER, clock), _process(db, RECEIVER, clock)
    first, second = named_request_id(ASKER, 1), named_request_id(ASKER, 2)
    asker.waiting |= {("s1", first), ("s2", second)}
    await _relay(receiver, "s1", _response(first))
    await _relay(receiver, "s2", _response(second))
    await _relay(receiver, "s2", _response(named_request_id("c" * 32, 1)))
    await asker.relay.collect()  # the events themselves never arrived
    assert sorted((s, str(a.id)) for s, a in asker.delivered) == [("s1", first), ("s2", second)]
    assert await _rows(db) == [("s2", "c" * 32)]
