"""Run state shared by the loop, its reminder producers and its observers.

`LoopState` is what a reminder producer sees: the round, every call so far with its outcome,
usage, the compactions done, the gate's feedback pending from the previous round and the taint.
Events (`LoopEvent`) are what an observer (`LoopOptions.on_event`: the CLI's progress output, a
mission's phase recording) gets as the run progresses.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias

from agent_loop.llm import LLMResponse, ToolCall, Usage
from agent_loop.taint import TaintSource
from agent_loop.tools import CallOutcome

StopReason = Literal["assistant-stop", "max-rounds", "budget-exhausted", "cancelled", "llm-error"]
STOP_REASONS: tuple[StopReason, ...] = (
    "assistant-stop",
    "max-rounds",
    "budget-exhausted",
    "cancelled",
    "llm-error",
)


@dataclass(frozen=True, slots=True)
class ExecutedCall:
    """One tool call of a run: the round it was asked for in, the call, what came of it, and how
    long it took (milliseconds, wall clock, including waiting for a parallel slot). `depth` is 1
    for calls made by a sub-agent."""

    round: int
    call: ToolCall
    outcome: CallOutcome
    latency_ms: float
    depth: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "round": self.round,
            "call": self.call.to_json(),
            "outcome": self.outcome.to_json(),
            "latency_ms": self.latency_ms,
            "depth": self.depth,
        }


@dataclass(frozen=True, slots=True)
class CompactionRecord:
    """Compaction done before the model call of `round`: how many messages were folded into the
    summary, how many were kept verbatim, and the summary itself."""

    round: int
    folded_messages: int
    kept_messages: int
    context_tokens: int
    summary: str
    usage: Usage

    def to_json(self) -> dict[str, Any]:
        return {
            "round": self.round,
            "folded_messages": self.folded_messages,
            "kept_messages": self.kept_messages,
            "context_tokens": self.context_tokens,
            "summary": self.summary,
            "usage": self.usage.to_json(),
        }


class CancelFlag:
    """Cooperative cancellation: set it from anywhere (a signal handler, a mission's pause
    command); the loop checks it between rounds and stops with `cancelled`. One flag may be shared
    by a parent run and its sub-agents."""

    __slots__ = ("_reason",)

    def __init__(self) -> None:
        self._reason: str | None = None

    def cancel(self, reason: str = "cancelled") -> None:
        if self._reason is None:
            self._reason = reason

    @property
    def cancelled(self) -> bool:
        return self._reason is not None

    @property
    def reason(self) -> str | None:
        return self._reason


@dataclass
class LoopState:
    """Mutable state of one run. Producers must treat it as read-only."""

    run_id: str
    max_rounds: int
    depth: int = 0
    round: int = 0
    calls: list[ExecutedCall] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)
    last_response: LLMResponse | None = None
    token_budget: int | None = None
    tokens_used_before: int = 0
    compactions: list[CompactionRecord] = field(default_factory=list)
    policy_feedback: list[str] = field(default_factory=list)
    taint: list[TaintSource] = field(default_factory=list)
    new_taint: list[TaintSource] = field(default_factory=list)
    can_propose: bool = False
    budget_exhausted_round: int | None = None

    @property
    def tokens_spent(self) -> int:
        """Tokens charged to the budget: what was used before this run plus this run's."""
        return self.tokens_used_before + self.usage.total_tokens

    @property
    def budget_fraction(self) -> float | None:
        if not self.token_budget:
            return None
        return self.tokens_spent / self.token_budget

    @property
    def tainted(self) -> bool:
        return bool(self.taint)

    @property
    def just_compacted(self) -> bool:
        return bool(self.compactions) and self.compactions[-1].round == self.round

    def calls_in_round(self, round_: int) -> list[ExecutedCall]:
        return [c for c in self.calls if c.round == round_ and c.depth == self.depth]

    @property
    def previous_round_calls(self) -> list[ExecutedCall]:
        return self.calls_in_round(self.round - 1)


# -- events -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RoundStarted:
    run_id: str
    round: int
    depth: int
    reminders: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ModelResponded:
    run_id: str
    round: int
    depth: int
    response: LLMResponse


@dataclass(frozen=True, slots=True)
class CallStarted:
    run_id: str
    round: int
    depth: int
    call: ToolCall


@dataclass(frozen=True, slots=True)
class CallFinished:
    run_id: str
    round: int
    depth: int
    executed: ExecutedCall


@dataclass(frozen=True, slots=True)
class Compacted:
    run_id: str
    round: int
    depth: int
    record: CompactionRecord


@dataclass(frozen=True, slots=True)
class RunFinished:
    run_id: str
    round: int
    depth: int
    stop_reason: StopReason
    final_text: str | None


LoopEvent: TypeAlias = (
    RoundStarted | ModelResponded | CallStarted | CallFinished | Compacted | RunFinished
)
