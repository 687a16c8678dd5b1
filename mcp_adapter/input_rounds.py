"""The 2026-07-28 input-required round trip of a `tools/call` or `prompts/get`: the signed
`requestState` that carries a call's earlier answers from one round to its retry.

A server of that era cannot send a request mid-call. When a tool asks (elicitation, sampling,
roots), the call ends with an `InputRequiredResult` carrying the questions under their keys and
a `requestState`; the client answers and retries the same call with `inputResponses` and the
state; the handler runs again from the start and this time `elicit(key, ...)` returns the
answer. A tool may ask in several rounds, so the state carries the answers of every earlier
round.

The rules (the spec's "Server Requirements" of multi round-trip requests):
- `inputResponses` are the client's input for this round, like the arguments: a response is
  used when the handler asks its key now (and the client declared the capability the question
  needs); keys nobody asks are ignored.
- `requestState` is attacker-controlled input. It is signed (HMAC-SHA256 under a secret every
  replica on the database shares, `mcp_adapter.schema`) over everything it is bound to: the user,
  the space, the tool, the hash of the arguments, the answers so far and an expiry. A state that
  fails verification (altered, forged, expired, or minted for another user or call) is rejected
  with a JSON-RPC `-32602` error, whose text does not say which check failed (the log does).
  No state at all is a first round: there are no earlier answers.
The state is signed, not encrypted: it holds only what this client itself answered.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import mcp_types as types
import orjson
import structlog
from mcp.shared.exceptions import MCPError
from pydantic import BaseModel, ValidationError

from mcp_adapter.schema import shared_secret
from tool_registry.store.database import Database

log = structlog.get_logger("mana.mcp")

STATE_TTL_SECONDS = 600.0
SECRET_NAME = "request-state"  # noqa: S105 - the name of a row, not a secret
_VERSION = "v1"
_MAC_LABEL = b"mana/request-state/v1."

# The one text of every rejected state: which check failed is for the log, not the client.
STATE_REJECTED = (
    "requestState is not valid for this request (altered, expired, or issued for another call); "
    "call again without requestState and inputResponses"
)

QuestionKind = Literal["elicit", "sample", "roots"]


@dataclass(frozen=True)
class CallBinding:
    """What one call's state is bound to: who calls, where, which tool with which arguments."""

    user_id: str
    space: str
    tool: str
    args_hash: str


@dataclass
class RoundAnswers:
    """What a call may use in this round. `answers`: the answers of earlier rounds (from a
    verified state) plus those this round has used; `responses`: this request's
    `inputResponses`, each used only when the handler asks its key; `asked`: the questions
    raised in this round (several when a handler asks them together)."""

    answers: dict[str, dict[str, Any]] = field(default_factory=dict)
    responses: dict[str, dict[str, Any]] = field(default_factory=dict)
    asked: dict[str, QuestionKind] = field(default_factory=dict)
    # The keys the previous round asked (from its verified state): what `asked_first`
    # questions accept a response for.
    asked_before: frozenset[str] = frozenset()

    def answer(self, key: str, *, asked_first: bool = False) -> dict[str, Any] | None:
        """The answer under `key`: an earlier round's, else this request's response (which then
        travels on in the state of the next round). With `asked_first`, a response counts only
        when the previous round asked `key`."""
        if key in self.answers:
            return self.answers[key]
        if asked_first and key not in self.asked_before:
            return None
        response = self.responses.get(key)
        if response is not None:
            self.answers[key] = response
        return response


def kind_of(request: BaseModel) -> QuestionKind:
    if isinstance(request, types.CreateMessageRequest):
        return "sample"
    if isinstance(request, types.ListRootsRequest):
        return "roots"
    if isinstance(request, types.ElicitRequest):
        return "elicit"
    raise TypeError(f"no input-required round for a {type(request).__name__}")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if _b64(raw) != text:
        raise ValueError("non-canonical base64url")
    return raw


def _dump(response: Any) -> dict[str, Any] | None:
    if isinstance(response, BaseModel):
        dumped: dict[str, Any] = response.model_dump(by_alias=True, mode="json", exclude_none=True)
        return dumped
    return dict(response) if isinstance(response, Mapping) else None


class InputRounds:
    """Seals and opens the `requestState` of input-required rounds (one per server; the key
    is read from the database once, on first use)."""

    def __init__(
        self,
        db: Database,
        *,
        ttl_seconds: float = STATE_TTL_SECONDS,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.db = db
        self.ttl_seconds = ttl_seconds
        self._now = now
        self._key: bytes | None = None

    async def _secret(self) -> bytes:
        if self._key is None:
            self._key = await shared_secret(self.db, SECRET_NAME)
        return self._key

    def _mac(self, key: bytes, payload: str) -> str:
        return _b64(hmac.new(key, _MAC_LABEL + payload.encode(), hashlib.sha256).digest())

    async def seal(self, binding: CallBinding, rounds: RoundAnswers) -> str:
        """The state for the next round: this call's binding, the keys asked now and every
        answer so far, valid for `ttl_seconds`."""
        claims = {
            "u": binding.user_id,
            "s": binding.space,
            "t": binding.tool,
            "a": binding.args_hash,
            "k": dict(sorted(rounds.asked.items())),
            "r": rounds.answers,
            "e": self._now() + self.ttl_seconds,
        }
        payload = _b64(orjson.dumps(claims, option=orjson.OPT_SORT_KEYS))
        return f"{_VERSION}.{payload}.{self._mac(await self._secret(), payload)}"

    async def open(
        self,
        binding: CallBinding,
        state: str | None,
        responses: Mapping[str, Any] | None,
    ) -> RoundAnswers:
        """The answers this round may use: this request's responses, plus the earlier answers
        a state carries. Raises `MCPError` (-32602) for a state that is not valid for this very
        call; without a state this is a first round."""
        received = {
            key: dumped
            for key, response in (responses or {}).items()
            if (dumped := _dump(response)) is not None
        }
        if state is None:
            return RoundAnswers(responses=received)
        claims = await self._verify(binding, state)
        return RoundAnswers(
            answers=dict(claims["r"]), responses=received, asked_before=frozenset(claims["k"])
        )

    async def _verify(self, binding: CallBinding, state: str) -> dict[str, Any]:
        reason = None
        claims: Any = None
        try:
            version, payload, mac = state.split(".")
            if version != _VERSION:
                raise ValueError("unknown version")
            if not hmac.compare_digest(mac, self._mac(await self._secret(), payload)):
                reason = "signature"
            else:
                claims = orjson.loads(_unb64(payload))
        except (ValueError, orjson.JSONDecodeError):
            reason = "malformed"
        if reason is None:
            expected = (binding.user_id, binding.space, binding.tool, binding.args_hash)
            if not isinstance(claims, dict):
                reason = "malformed"
            elif (claims.get("u"), claims.get("s"), claims.get("t"), claims.get("a")) != expected:
                reason = "another call"
            elif not isinstance(claims.get("e"), int | float) or not self._now() < claims["e"]:
                reason = "expired"
            elif not isinstance(claims.get("k"), dict) or not isinstance(claims.get("r"), dict):
                reason = "malformed"
        if reason is not None:
            log.warning("request state rejected", tool=binding.tool, reason=reason)
            raise MCPError(code=types.INVALID_PARAMS, message=STATE_REJECTED)
        checked: dict[str, Any] = claims
        return checked


_ANSWER_MODELS: dict[QuestionKind, type[BaseModel]] = {
    "elicit": types.ElicitResult,
    "sample": types.CreateMessageResult,
    "roots": types.ListRootsResult,
}


def parse_answer(kind: QuestionKind, raw: Mapping[str, Any]) -> BaseModel | None:
    """A stored or received answer as the result model of its question kind (None: it is not
    one; the question is then asked again)."""
    try:
        return _ANSWER_MODELS[kind].model_validate(raw, by_name=False)
    except ValidationError:
        return None
