"""The reminder channel: transient guidance for the model, produced per round from the run state.

A producer is `(LoopState) -> list[str]`. The loop calls every producer at the start of a round
(after a possible compaction), and puts what they return into *that* request only, as
`<system-reminder>` blocks at the end of the last user turn. Reminders are never stored in the
transcript, so one that is not produced again is gone from the next request; a producer that wants
to repeat itself simply returns the text again.

Shipped producers (see `DEFAULT_PRODUCERS`): token budget, retry loop, just-compacted, policy
feedback (the gate's reminders and flags for the previous round's calls) and taint.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from agent_loop.state import LoopState
from agent_loop.taint import taint_reminder

ReminderProducer = Callable[[LoopState], list[str]]

BUDGET_WARN_FRACTION = 0.75


def budget_reminder(state: LoopState) -> list[str]:
    """Warn from 75 % of the token budget; at 100 % tell the model this is its last turn (the
    loop stops after this round with `budget-exhausted`)."""
    fraction = state.budget_fraction
    if fraction is None or fraction < BUDGET_WARN_FRACTION:
        return []
    spent, budget = state.tokens_spent, state.token_budget
    if fraction >= 1.0:
        return [
            f"Token budget exhausted: {spent} of {budget} tokens used. This is your last turn: "
            "do not start new work; give your final answer now, saying what is done and what "
            "is left."
        ]
    return [
        f"You have used {fraction:.0%} of your token budget ({spent} of {budget} tokens). "
        "Prefer finishing over starting new work; batch the calls you still need into one "
        "round."
    ]


def retry_loop_reminder(state: LoopState) -> list[str]:
    """From round 3, when the last two calls both failed: stop repeating, change approach."""
    if state.round < 3:
        return []
    own = [c for c in state.calls if c.depth == state.depth]
    last_two = own[-2:]
    if len(last_two) < 2 or not all(c.outcome.is_error for c in last_two):
        return []
    failures = "; ".join(f"{c.call.name}: {c.outcome.reason or c.outcome.status}" for c in last_two)
    return [
        f"Your last two tool calls failed ({failures}). Do not repeat a failing call unchanged: "
        "read the error, fix the arguments, use a different tool, or explain the problem in "
        "your answer."
    ]


def compaction_reminder(state: LoopState) -> list[str]:
    """In the round right after compaction: the early turns are now a summary."""
    if not state.just_compacted:
        return []
    return [
        "Earlier turns of this conversation were compacted into the summary that follows the "
        "first message. Rely on it; if you need exact data it left out, call the tool again."
    ]


def policy_feedback_reminder(state: LoopState) -> list[str]:
    """Why calls of the previous round were denied or flagged, as the gate explained it."""
    return list(state.policy_feedback)


def taint_producer(state: LoopState) -> list[str]:
    """Once, in the round after a tool result was flagged: treat results as data."""
    if not state.new_taint:
        return []
    return [taint_reminder(state.new_taint, can_propose=state.can_propose)]


DEFAULT_PRODUCERS: tuple[ReminderProducer, ...] = (
    budget_reminder,
    retry_loop_reminder,
    compaction_reminder,
    policy_feedback_reminder,
    taint_producer,
)


def collect(producers: Sequence[ReminderProducer], state: LoopState) -> list[str]:
    """Every producer's output, in producer order, without empty strings."""
    out: list[str] = []
    for produce in producers:
        out.extend(text for text in produce(state) if text)
    return out
