"""`ScriptedClient`: replays a JSON script of model turns and records every request it got.

For tests and offline demos (`mana agent run --llm scripted:PATH`). The script format is a
public contract:

    [
      {"text": "Let me look.", "tool_calls": [{"name": "habits.list", "arguments": {}}],
       "usage": {"input_tokens": 120, "output_tokens": 20}},
      {"text": "You have two habits.", "tool_calls": []}
    ]

A JSON list of turns; each turn has `text` (string or null), optional `tool_calls` (each with a
`module.verb` `name` and an `arguments` object) and optional `usage` (`input_tokens`,
`output_tokens`). Turns are returned in order, one per request (a compaction summary request
takes a turn too); asking for more turns than the script has raises `ScriptExhausted`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agent_loop.llm import LLMRequest, LLMResponse, ScriptExhausted, ToolCall, Usage
from tool_registry.errors import ValidationFailed


class ScriptedToolCall(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    arguments: dict[str, Any] = Field(default_factory=dict)


class ScriptedUsage(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    input_tokens: int = Field(default=0, ge=0)
    output_tokens: int = Field(default=0, ge=0)


class ScriptedTurn(BaseModel):
    """One model turn of a script."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    text: str | None
    tool_calls: list[ScriptedToolCall] = Field(default_factory=list)
    usage: ScriptedUsage | None = None


class _Script(BaseModel):
    turns: list[ScriptedTurn]


def parse_script(data: Any, *, source: str = "script") -> list[ScriptedTurn]:
    """Validate a decoded script; errors name the turn and field."""
    if not isinstance(data, list):
        raise ValidationFailed(f"{source}: a script must be a JSON list of turns")
    try:
        return _Script.model_validate({"turns": data}).turns
    except ValidationError as exc:
        problems = []
        for err in exc.errors(include_url=False):
            loc = list(err["loc"])[1:]
            where = f"turn {loc[0]}" if loc else "script"
            field = ".".join(str(p) for p in loc[1:])
            problems.append(f"{where}{' ' + field if field else ''}: {err['msg']}")
        raise ValidationFailed(f"{source}: invalid script: " + "; ".join(problems)) from None


class ScriptedClient:
    """An `LLMClient` that answers from a script. `requests` holds every request received, in
    order (each is an immutable snapshot, reminders included), for assertions."""

    def __init__(
        self, turns: Sequence[ScriptedTurn | dict[str, Any]], *, model: str = "scripted"
    ) -> None:
        self.turns: list[ScriptedTurn] = [
            t if isinstance(t, ScriptedTurn) else ScriptedTurn.model_validate(t) for t in turns
        ]
        self._model = model
        self.requests: list[LLMRequest] = []
        self._next = 0

    @classmethod
    def from_file(cls, path: str | Path) -> ScriptedClient:
        path = Path(path)
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ValidationFailed(f"cannot read script {path}: {exc.strerror}") from None
        except json.JSONDecodeError as exc:
            raise ValidationFailed(
                f"script {path} is not valid JSON: {exc.msg} at line {exc.lineno}"
            ) from None
        return cls(parse_script(raw, source=str(path)))

    @classmethod
    def from_json(cls, data: Any) -> ScriptedClient:
        return cls(parse_script(data))

    @property
    def model(self) -> str:
        return self._model

    @property
    def remaining(self) -> int:
        return len(self.turns) - self._next

    async def complete(self, request: LLMRequest) -> LLMResponse:
        self.requests.append(request)
        index = self._next
        if index >= len(self.turns):
            raise ScriptExhausted(
                f"the script has {len(self.turns)} turns and the loop asked for turn "
                f"{index + 1}; add turns or lower --max-rounds"
            )
        self._next += 1
        turn = self.turns[index]
        calls = tuple(
            ToolCall(f"toolu_s{index:03d}_{i}", c.name, dict(c.arguments))
            for i, c in enumerate(turn.tool_calls)
        )
        usage = Usage(turn.usage.input_tokens, turn.usage.output_tokens) if turn.usage else Usage()
        return LLMResponse(
            text=turn.text,
            tool_calls=calls,
            stop_reason="tool_use" if calls else "end_turn",
            usage=usage,
            model=request.model or self._model,
        )
