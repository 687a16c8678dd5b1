"""The destructive modes in the pure rules: each mode x invoker x allowlisted, and each answer to
a confirmation."""

from __future__ import annotations

from typing import Any

import pytest

from policy.rules import (
    ALLOWED,
    DESTRUCTIVE_DECLINED,
    DESTRUCTIVE_MODES,
    DESTRUCTIVE_NEEDS_CONFIRMATION,
    DESTRUCTIVE_NOT_ALLOWED,
    DestructiveMode,
    PolicyContext,
    apply_mode,
    evaluate,
)
from policy.settings import PolicySettings
from tests.policy.policy_helpers import DESTRUCTIVE, NOW, WRITE, inp
from tool_registry.context import INVOKERS
from tool_registry.gate import Confirmation

SETTINGS = PolicySettings()


def decide(
    mode: DestructiveMode,
    invoker: str,
    *,
    allowlisted: bool = False,
    confirmation: Confirmation | None = None,
    cannot_ask: str | None = None,
    spec: Any = DESTRUCTIVE,
) -> Any:
    context = PolicyContext(
        user_id="usr_a",
        space_id="spc_a",
        destructive_allowlist=frozenset({spec.name}) if allowlisted else frozenset(),
        invoker=invoker,
        destructive_mode=mode,
        confirmation=confirmation,
        cannot_ask=cannot_ask,
    )
    return evaluate(spec, context, inp(), SETTINGS, [], NOW)


# What each (mode, invoker) gets for a destructive tool that is not on the allowlist.
EXPECTED = {
    ("deny", "mcp"): DESTRUCTIVE_NOT_ALLOWED,
    ("deny", "cli"): DESTRUCTIVE_NOT_ALLOWED,
    ("deny", "user"): DESTRUCTIVE_NOT_ALLOWED,
    ("deny", "mission-runner"): DESTRUCTIVE_NOT_ALLOWED,
    ("deny", "persona-runner"): DESTRUCTIVE_NOT_ALLOWED,
    ("confirm", "mcp"): DESTRUCTIVE_NEEDS_CONFIRMATION,
    ("confirm", "cli"): DESTRUCTIVE_NEEDS_CONFIRMATION,
    ("confirm", "user"): ALLOWED,
    ("confirm", "mission-runner"): DESTRUCTIVE_NOT_ALLOWED,
    ("confirm", "persona-runner"): DESTRUCTIVE_NOT_ALLOWED,
    ("allow", "mcp"): ALLOWED,
    ("allow", "cli"): ALLOWED,
    ("allow", "user"): ALLOWED,
    ("allow", "mission-runner"): ALLOWED,
    ("allow", "persona-runner"): ALLOWED,
}


def test_the_table_covers_every_mode_and_invoker() -> None:
    assert set(EXPECTED) == {(m, i) for m in DESTRUCTIVE_MODES for i in INVOKERS}


@pytest.mark.parametrize(("mode", "invoker"), sorted(EXPECTED))
def test_not_allowlisted(mode: DestructiveMode, invoker: str) -> None:
    decision = decide(mode, invoker)
    assert decision.reason == EXPECTED[(mode, invoker)]
    assert decision.allow == (decision.reason == ALLOWED)
    # Only a refusal a person can lift asks for confirmation, and it never allows by itself.
    assert decision.confirm == (decision.reason == DESTRUCTIVE_NEEDS_CONFIRMATION)


@pytest.mark.parametrize(("mode", "invoker"), sorted(EXPECTED))
def test_allowlisted_tools_run_in_every_mode(mode: DestructiveMode, invoker: str) -> None:
    decision = decide(mode, invoker, allowlisted=True)
    assert decision.allow and decision.reason == ALLOWED and not decision.confirm


@pytest.mark.parametrize("mode", DESTRUCTIVE_MODES)
def test_non_destructive_tools_never_ask(mode: DestructiveMode) -> None:
    decision = decide(mode, "mcp", spec=WRITE)
    assert decision.allow and not decision.confirm


@pytest.mark.parametrize("invoker", ["mcp", "cli"])
def test_an_accepted_confirmation_lets_the_call_through(invoker: str) -> None:
    decision = decide("confirm", invoker, confirmation="accept")
    assert decision.allow and decision.reason == ALLOWED


@pytest.mark.parametrize(("answer", "word"), [("decline", "declined"), ("cancel", "dismissed")])
def test_a_declined_or_dismissed_confirmation_denies(answer: Confirmation, word: str) -> None:
    decision = decide("confirm", "mcp", confirmation=answer)
    assert not decision.allow and not decision.confirm
    assert decision.reason == DESTRUCTIVE_DECLINED
    assert f"The user {word} the confirmation of this notes.delete call" in decision.reminder


def test_a_client_that_cannot_ask_gets_the_denial_with_a_reminder_that_says_why() -> None:
    why = "this client did not declare the elicitation capability"
    decision = decide("confirm", "mcp", confirmation="unavailable", cannot_ask=why)
    assert not decision.allow and not decision.confirm
    assert decision.reason == DESTRUCTIVE_NOT_ALLOWED
    assert "asks the user to confirm notes.delete" in decision.reminder
    assert why in decision.reminder
    assert "only a space owner or admin can allow" in decision.reminder


@pytest.mark.parametrize("invoker", ["mission-runner", "persona-runner"])
@pytest.mark.parametrize("answer", ["accept", "unavailable"])
def test_an_agent_never_gets_through_a_confirmation(invoker: str, answer: Confirmation) -> None:
    decision = decide("confirm", invoker, confirmation=answer)
    assert not decision.allow and decision.reason == DESTRUCTIVE_NOT_ALLOWED


def test_the_rate_limit_still_applies_in_allow_mode() -> None:
    context = PolicyContext(user_id="u", space_id="s", destructive_mode="allow", invoker="mcp")
    settings = PolicySettings(rate_limit=1)
    decision = evaluate(DESTRUCTIVE, context, inp(), settings, [NOW - 1], NOW)
    assert decision.reason == "rate-limit-exceeded"


def test_log_only_mode_lets_an_unconfirmed_call_run_flagged() -> None:
    decision = apply_mode(decide("confirm", "mcp"), "log-only")
    assert decision.allow and decision.flagged and not decision.confirm
    assert decision.reason == DESTRUCTIVE_NEEDS_CONFIRMATION
