"""The 2026-07-28 input-required round trip of a `tools/call`: the signed `requestState` that
carries a call's questions and earlier answers from one round to its retry.

A server of that era cannot send a request mid-call. When a tool asks (elicitation, sampling),
the call ends with an `InputRequiredResult` carrying the question under its key and a
`requestState`; the client answers and retries the same call with `inputResponses` and the
state; the handler runs again from the start and this time `elicit(key, ...)` returns the
answer. A tool may ask several questions in sequence, so the state carries the answers of every
earlier round.

The state is a claim the client hands back, so it is signed (HMAC-SHA256 under a secret every
replica on the database shares, `mcp_adapter.schema`) over everything it is bound to: the user,
the space, the tool, the hash of the arguments, the keys asked (with their kind), the answers so
far and an expiry. Answers arriving without a valid state for this exact call are ignored, so
the question is simply asked again: a forged, stale, replayed-elsewhere or altered state can
never make a tool run on answers the user did not give to this call. The state is signed, not
encrypted: it holds only what this client itself answered.
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
from pydantic import BaseModel, ValidationError

from mcp_adapter.schema import shared_secret
from tool_registry.store.database import Database

log = structlog.get_logger("mana.mcp")

STATE_TTL_SECONDS = 600.0
SECRET_NAME = "request-state"  # noqa: S105 - the name of a row, not a secret
_VERSION = "v1"
_MAC_LABEL = b"mana/request-state/v1."

QuestionKind = Literal["elicit", "sample"]


@dataclass(frozen=True)
class CallBinding:
    """What one call's state is bound to: who calls, where, which tool with which arguments."""

    user_id: str
    space: str
    tool: str
    args_hash: str


@dataclass
class RoundAnswers:
    """The answers a call may use in this round: those of earlier rounds (from a valid state)
    plus this round's responses to the keys that state asked. `asked` collects the questions
    raised in this round (normally one: a handler stops at its first unanswered question)."""

    answers: dict[str, dict[str, Any]] = field(default_factory=dict)
    asked: dict[str, QuestionKind] = field(default_factory=dict)


def kind_of(request: BaseModel) -> QuestionKind:
    if isinstance(request, types.CreateMessageRequest):
        return "sample"
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
        """The answers this round may use. Without a state (a first call) there are none; with
        a state that is not valid for this very call (forged, altered, expired, minted for
        another call) the responses are ignored and logged, so the tool asks again."""
        if state is None:
            if responses:
                log.info("input responses without a request state ignored", tool=binding.tool)
            return RoundAnswers()
        claims = await self._verify(binding, state)
        if claims is None:
            return RoundAnswers()
        answers: dict[str, dict[str, Any]] = dict(claims["r"])
        for key in claims["k"]:
            dumped = _dump((responses or {}).get(key))
            if dumped is not None:
                answers[key] = dumped
        return RoundAnswers(answers=answers)

    async def _verify(self, binding: CallBinding, state: str) -> dict[str, Any] | None:
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
            log.warning("request state refused; asking again", tool=binding.tool, reason=reason)
            return None
        checked: dict[str, Any] = claims
        return checked


def parse_answer(kind: QuestionKind, raw: Mapping[str, Any]) -> BaseModel | None:
    """A stored or received answer as the result model of its question kind (None: it is not
    one; the question is then asked again)."""
    model: type[BaseModel] = types.ElicitResult if kind == "elicit" else types.CreateMessageResult
    try:
        return model.model_validate(raw, by_name=False)
    except ValidationError:
        return None
