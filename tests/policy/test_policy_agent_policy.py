"""`AgentToolPolicy`: resolution order, filtering the offered tools, classifying calls."""

from __future__ import annotations

import pytest

from policy.agent_policy import AgentToolPolicy
from tests.policy.policy_helpers import ADMIN, DESTRUCTIVE, READ, WRITE, make_spec
from tool_registry.modules import build_registry


def test_resolution_order_is_tool_then_module_then_hint_then_default() -> None:
    policy = AgentToolPolicy(
        tools={"notes.create": "auto"},
        modules={"notes": "deny"},
        by_hint={"write": "propose"},
        default="auto",
    )
    assert policy.resolve(WRITE) == "auto"  # tool beats module
    assert policy.resolve(READ) == "deny"  # module
    assert policy.resolve(make_spec("habits.log")) == "propose"  # hint
    assert policy.resolve(make_spec("habits.list", hint="read")) == "auto"  # default


def test_module_beats_hint() -> None:
    policy = AgentToolPolicy(modules={"notes": "auto"}, by_hint={"destructive": "deny"})
    assert policy.resolve(DESTRUCTIVE) == "auto"


def test_default_applies_without_any_rule() -> None:
    assert AgentToolPolicy().resolve(WRITE) == "propose"
    assert AgentToolPolicy(default="deny").resolve(READ) == "deny"


def test_offered_removes_denied_tools_and_keeps_order() -> None:
    policy = AgentToolPolicy(tools={"notes.search": "deny"}, default="auto")
    assert policy.offered([WRITE, READ, DESTRUCTIVE]) == [WRITE, DESTRUCTIVE]


def test_classify_requested_calls() -> None:
    policy = AgentToolPolicy(
        tools={"notes.create": "propose", "notes.search": "auto", "notes.delete": "deny"}
    )
    assert policy.classify(WRITE) == "propose"
    assert policy.classify(READ) == "auto"
    assert policy.classify(DESTRUCTIVE) == "deny"
    assert policy.classify(None) == "deny"  # unknown tool


def test_sensible_default_over_the_bundled_registry() -> None:
    policy = AgentToolPolicy.sensible_default()
    registry = build_registry()
    offered = policy.offered(registry.exposable())
    assert all(s.policy_hint != "destructive" for s in offered)
    for spec in offered:
        expected = "auto" if spec.policy_hint == "read" else "propose"
        assert policy.classify(spec) == expected
    assert {s.name for s in registry.exposable() if s.policy_hint == "destructive"}.isdisjoint(
        {s.name for s in offered}
    )


def test_admin_tools_are_never_offered_or_run() -> None:
    permissive = AgentToolPolicy(tools={"users.setTier": "auto"}, modules={"users": "auto"})
    assert permissive.resolve(ADMIN) == "deny"
    assert ADMIN not in permissive.offered([ADMIN, WRITE])
    registry = build_registry()
    everything = AgentToolPolicy(default="auto").offered(registry.all())
    assert all(s.scope == "user-space" for s in everything)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"tools": {"notes.create": "yes"}},
        {"modules": {"notes": "always"}},
        {"by_hint": {"read": "maybe"}},
        {"by_hint": {"destructve": "deny"}},
        {"default": "sometimes"},
    ],
)
def test_invalid_policies_are_rejected(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="agent tool policy"):
        AgentToolPolicy(**kwargs)  # type: ignore[arg-type]


def test_json_round_trip() -> None:
    policy = AgentToolPolicy(
        tools={"notes.create": "auto"},
        modules={"todo": "deny"},
        by_hint={"read": "auto"},
        default="deny",
    )
    data = policy.to_json()
    assert data == {
        "tools": {"notes.create": "auto"},
        "modules": {"todo": "deny"},
        "byHint": {"read": "auto"},
        "default": "deny",
    }
    assert AgentToolPolicy.from_json(data) == policy
    assert AgentToolPolicy.from_json({}) == AgentToolPolicy()
