"""A client's answer to a request the server sent (2025-11-25 sessions), delivered to the
replica that sent it.

A tool that asks the client (`elicitation/create`, `sampling/createMessage`) waits for the
answer in the process that sent the request, while the client POSTs its answer (a JSON-RPC
response or error) to whichever replica its load balancer picks. So that the receiving replica
knows where an answer belongs, every request a process sends on a session carries an id that
names the process: `<instance>:<n>` (`named_request_id`; `n` never repeats in the process, so a
late answer cannot meet a newer request of the same id).

- An answer naming this process (or naming none) goes to the SDK as usual.
- An answer naming another process is written to `mcp_answers` (a message can exceed the 8000
  bytes a PostgreSQL NOTIFY carries) and announced on the session bus (`ANSWER`, detail:
  "<instance> <answer id>"); the POSTing client gets the usual 202 Accepted. The named process
  takes the row (deleted as it is read, only for that session and that process) and hands the
  message to that session's waiting request (`BodyFirstSessionManager.deliver`).
- Only a session's own user can answer: the guard checked the POST's credential against the
  session's row, and the answer reaches only that session's requests on the named process.
- Nothing stays behind: an answer nobody takes (its process gone, its request over) expires
  after `ttl_seconds`, goes with its session, and a session holds at most `per_session` waiting
  answers (more are dropped). After missing bus events, a process takes every answer waiting
  for it (`collect`).

On SQLite one process serves the sessions (`mana serve --workers N` needs PostgreSQL), so every
answer names the process it reaches.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from uuid import uuid4

import pydantic_core
import structlog
from mcp_types import JSONRPCError, JSONRPCResponse, RequestId, jsonrpc_message_adapter
from pydantic import ValidationError

from mana_http import store
from mana_http.metrics import Metrics
from tool_registry.store.database import Database

log = structlog.get_logger("mana.http")

ANSWER = "answer"
# How long an answer waits for the process it names (a process that lost its bus connection
# takes its answers when it reconnects, within a few seconds).
ANSWER_TTL_SECONDS = 120.0
# Answers one session may have waiting at once (a client answers its questions one by one).
ANSWERS_PER_SESSION = 32
_SEPARATOR = ":"

Answer = JSONRPCResponse | JSONRPCError
Publish = Callable[[str, str, str], Awaitable[None]]
# (session id, answer) -> whether a request of that session was waiting for it
Deliver = Callable[[str, Answer], bool]


def named_request_id(instance: str, n: int) -> str:
    """The id of request `n` this process sends: names the process (see the module)."""
    return f"{instance}{_SEPARATOR}{n}"


def sender_of(request_id: RequestId | None) -> str | None:
    """The process a request id names, or None for an id this server did not name."""
    if not isinstance(request_id, str):
        return None
    instance, separator, n = request_id.rpartition(_SEPARATOR)
    if not separator or not instance or not n.isdigit():
        return None
    return instance


def parse_answer(body: bytes | str) -> Answer | None:
    """The JSON-RPC response or error a POST body (or a kept message) is, else None."""
    try:
        message = jsonrpc_message_adapter.validate_python(
            pydantic_core.from_json(body), by_name=False
        )
    except (ValueError, ValidationError):
        return None
    return message if isinstance(message, JSONRPCResponse | JSONRPCError) else None


class AnswerRelay:
    """This process's end of the relay (see the module docstring)."""

    def __init__(
        self,
        db: Database,
        publish: Publish,
        deliver: Deliver,
        *,
        instance: str,
        metrics: Metrics,
        ttl_seconds: float = ANSWER_TTL_SECONDS,
        per_session: int = ANSWERS_PER_SESSION,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if ttl_seconds <= 0 or per_session <= 0:
            raise ValueError("ttl_seconds and per_session must be positive")
        self.db = db
        self.publish = publish
        self.deliver = deliver
        self.instance = instance
        self.metrics = metrics
        self.ttl_seconds = ttl_seconds
        self.per_session = per_session
        self._clock = clock

    def elsewhere(self, body: bytes) -> tuple[str, Answer] | None:
        """(the process it names, the answer) when `body` is an answer for another process."""
        answer = parse_answer(body)
        if answer is None:
            return None
        sender = sender_of(answer.id)
        if sender is None or sender == self.instance:
            return None
        return sender, answer

    async def forward(self, session_id: str, target: str, answer: Answer) -> None:
        """Keep `answer` for process `target` and tell it (on the bus); dropped when the session
        is gone or has too many answers waiting."""
        answer_id = uuid4().hex
        message = answer.model_dump_json(by_alias=True, exclude_unset=True)
        now = self._clock()
        kept = await self.db.write(
            lambda c: store.add_answer(
                c, answer_id, session_id, target, message, now, self.per_session
            ),
            serialised=False,
        )
        if not kept:
            self.metrics.client_answer("dropped")
            log.info("answer for another replica dropped", session=session_id[:8])
            return
        self.metrics.client_answer("forwarded")
        await self.publish(ANSWER, session_id, f"{target} {answer_id}")

    async def on_event(self, session_id: str, detail: str) -> None:
        """An `ANSWER` event from the bus: take the answer if it is for this process."""
        target, _, answer_id = detail.partition(" ")
        if target != self.instance or not answer_id:
            return
        message = await self.db.write(
            lambda c: store.take_answer(c, answer_id, session_id, self.instance),
            serialised=False,
        )
        if message is not None:
            self._hand_over(session_id, message)

    async def collect(self) -> None:
        """Take every answer waiting for this process (after bus events may have been lost)."""
        waiting = await self.db.write(
            lambda c: store.take_answers_for(c, self.instance), serialised=False
        )
        for session_id, message in waiting:
            self._hand_over(session_id, message)

    async def expire(self) -> None:
        """Delete the answers nobody took within `ttl_seconds`."""
        cutoff = self._clock() - self.ttl_seconds
        gone = await self.db.write(lambda c: store.expire_answers(c, cutoff), serialised=False)
        if gone:
            log.info("expired answers nobody took", count=gone)

    def _hand_over(self, session_id: str, message: str) -> None:
        answer = parse_answer(message)
        mine = answer is not None and sender_of(answer.id) == self.instance
        if mine and answer is not None and self.deliver(session_id, answer):
            self.metrics.client_answer("delivered")
            return
        self.metrics.client_answer("dropped")
        log.debug("forwarded answer found no waiting request", session=session_id[:8])
