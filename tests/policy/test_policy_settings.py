"""`PolicySettings`: defaults, environment parsing and validation."""

from __future__ import annotations

import pytest

from policy.settings import PolicySettings, parse_tool_limits
from tool_registry.errors import ValidationFailed
from tool_registry.modules import build_registry


def test_defaults() -> None:
    s = PolicySettings.from_env({})
    assert (s.mode, s.rate_limit, dict(s.tool_limits), s.window_seconds) == ("enforce", 30, {}, 60)
    assert s.limit_for("habits.log") == 30


def test_from_env_reads_mode_and_limits() -> None:
    s = PolicySettings.from_env(
        {
            "MANA_POLICY_MODE": "log-only",
            "MANA_RATE_LIMIT": "12",
            "MANA_RATE_LIMITS": " habits.log=10, notes.create=5 ,",
            "MANA_RATE_LIMIT_USERS": "50",
        }
    )
    assert s.mode == "log-only" and s.rate_limit == 12 and s.max_users == 50
    assert s.limit_for("habits.log") == 10 and s.limit_for("notes.create") == 5
    assert s.limit_for("todo.list") == 12
    assert s.max_limit == 12
    assert PolicySettings.from_env({"MANA_POLICY_MODE": "OFF"}).mode == "off"


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"MANA_POLICY_MODE": "strict"}, "MANA_POLICY_MODE"),
        ({"MANA_RATE_LIMIT": "many"}, "MANA_RATE_LIMIT"),
        ({"MANA_RATE_LIMIT": "0"}, "MANA_RATE_LIMIT"),
        ({"MANA_RATE_LIMITS": "habits.log"}, "MANA_RATE_LIMITS"),
        ({"MANA_RATE_LIMITS": "habits.log=ten"}, "MANA_RATE_LIMITS"),
        ({"MANA_RATE_LIMITS": "habits.log=0"}, "MANA_RATE_LIMITS"),
        ({"MANA_RATE_LIMITS": "Habits=3"}, "MANA_RATE_LIMITS"),
        ({"MANA_RATE_LIMITS": "habits.log=3,habits.log=4"}, "MANA_RATE_LIMITS"),
        ({"MANA_RATE_LIMIT_USERS": "-1"}, "MANA_RATE_LIMIT_USERS"),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], variable: str) -> None:
    with pytest.raises(ValidationFailed, match=variable):
        PolicySettings.from_env(env)


def test_with_registry_rejects_unknown_tool_limits() -> None:
    settings = PolicySettings(tool_limits=parse_tool_limits("habits.log=3,nope.never=2"))
    with pytest.raises(ValidationFailed, match=r"MANA_RATE_LIMITS.*nope\.never"):
        settings.with_registry(build_registry())


def test_with_registry_suggests_non_destructive_alternatives() -> None:
    settings = PolicySettings().with_registry(build_registry())
    assert settings.alternatives["habits.delete"][0] == "habits.archive"
    assert "todo.complete" in settings.alternatives["todo.delete"]
    assert settings.alternatives["journal.delete"] == ("journal.update",)
    assert settings.alternatives["mood.delete"] == ("mood.update",)


def test_settings_are_immutable() -> None:
    s = PolicySettings(tool_limits={"habits.log": 3})
    with pytest.raises(TypeError):
        s.tool_limits["habits.log"] = 100  # type: ignore[index]


def test_invalid_construction_is_rejected() -> None:
    with pytest.raises(ValidationFailed):
        PolicySettings(mode="strict")  # type: ignore[arg-type]
    with pytest.raises(ValidationFailed):
        PolicySettings(rate_limit=0)
    with pytest.raises(ValidationFailed):
        PolicySettings(tool_limits={"habits.log": 0})


def test_describe_mentions_mode_and_overrides() -> None:
    text = PolicySettings(mode="log-only", tool_limits={"habits.log": 3}).describe()
    assert "log-only" in text and "habits.log=3" in text and "30 calls" in text


def test_off_means_no_limit_for_every_tool_or_one() -> None:
    s = PolicySettings.from_env({"MANA_RATE_LIMITS": "habits.log=off, notes.create=5"})
    assert s.limit_for("habits.log") is None and s.limit_for("notes.create") == 5
    assert s.limit_for("todo.list") == 30 and s.max_limit == 30
    assert "habits.log=off" in s.describe()
    s = PolicySettings.from_env({"MANA_RATE_LIMIT": "OFF", "MANA_RATE_LIMITS": "notes.create=5"})
    assert s.limit_for("todo.list") is None and s.limit_for("notes.create") == 5
    assert s.max_limit == 5 and "no rate limit per tool" in s.describe()
    assert PolicySettings(rate_limit=None).max_limit == 1
