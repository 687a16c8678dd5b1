"""`RateLimitLog`: atomic check-and-record, pruning, and bounded memory under bursts."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

from policy.rate_limit import RateLimitLog
from policy.rules import PolicyContext, evaluate
from policy.settings import PolicySettings
from tests.policy.policy_helpers import NOW, WRITE
from tool_registry.gate import Decision

ALLOW = Decision(allow=True, reason="allowed")


def always_allow(recent: Sequence[float]) -> Decision:
    return ALLOW


def limit_of(limit: int, now: float) -> Callable[[Sequence[float]], Decision]:
    settings = PolicySettings(rate_limit=limit)
    ctx = PolicyContext(user_id="u", space_id="s")

    def decide(recent: Sequence[float]) -> Decision:
        return evaluate(WRITE, ctx, None, settings, recent, now)

    return decide


def test_allowed_calls_are_recorded_and_denied_ones_are_not() -> None:
    log = RateLimitLog(max_events=3)
    results = [log.check_and_record("u", "t", NOW, limit_of(3, NOW)).allow for _ in range(5)]
    assert results == [True, True, True, False, False]
    assert log.recent("u", "t", NOW) == [NOW] * 3
    assert log.size().events == 3


def test_users_and_tools_are_counted_separately() -> None:
    log = RateLimitLog(max_events=2)
    for user, tool in [("u1", "a.x"), ("u1", "a.x"), ("u1", "b.y"), ("u2", "a.x")]:
        assert log.check_and_record(user, tool, NOW, limit_of(2, NOW)).allow
    assert not log.check_and_record("u1", "a.x", NOW, limit_of(2, NOW)).allow
    assert log.check_and_record("u2", "a.x", NOW, limit_of(2, NOW)).allow


def test_events_outside_the_window_are_pruned_on_access() -> None:
    log = RateLimitLog(max_events=30)
    for i in range(10):
        log.record("u", "t", NOW + i)
    # at NOW + 65 the window is (NOW + 5, NOW + 65]: events NOW+0..NOW+5 leave
    assert log.recent("u", "t", NOW + 65) == [NOW + i for i in range(6, 10)]
    assert log.size().events == 4


def test_the_decision_sees_only_events_inside_the_window() -> None:
    log = RateLimitLog(max_events=3)
    for _ in range(3):
        log.record("u", "t", NOW)
    assert not log.check_and_record("u", "t", NOW + 59.5, limit_of(3, NOW + 59.5)).allow
    assert log.check_and_record("u", "t", NOW + 60, limit_of(3, NOW + 60)).allow


def test_31_concurrent_threads_with_limit_30_run_exactly_30() -> None:
    log = RateLimitLog(max_events=30)
    barrier = threading.Barrier(31)
    results: list[bool] = []
    lock = threading.Lock()

    def worker() -> None:
        barrier.wait()
        allowed = log.check_and_record("u", "t", NOW, limit_of(30, NOW)).allow
        with lock:
            results.append(allowed)

    threads = [threading.Thread(target=worker) for _ in range(31)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False] + [True] * 30


def test_a_clock_stepping_back_keeps_events_ordered() -> None:
    log = RateLimitLog(max_events=10)
    log.record("u", "t", NOW)
    log.record("u", "t", NOW - 5)
    assert log.recent("u", "t", NOW) == [NOW, NOW]


# -- memory bounds under a burst of 100,000 calls -------------------------------------------------

BURST = 100_000


def test_one_user_bursting_keeps_at_most_max_events() -> None:
    log = RateLimitLog(max_events=30)
    decide = limit_of(30, NOW)
    allowed = sum(log.check_and_record("u", "t", NOW, decide).allow for _ in range(BURST))
    assert allowed == 30
    assert log.size().events == 30
    # even when every call is recorded (log-only mode records the calls it lets through)
    for _ in range(BURST):
        log.check_and_record("u", "t", NOW, always_allow)
    assert log.size().events == 30


def test_many_users_bursting_stay_within_the_user_cap() -> None:
    log = RateLimitLog(max_events=30, max_users=1000)
    for i in range(BURST):
        log.check_and_record(f"usr_{i}", "notes.create", NOW + i * 1e-4, always_allow)
    size = log.size()
    assert size.users == 1000 and size.keys == 1000 and size.events == 1000
    # the most recent users are the ones kept
    assert log.recent(f"usr_{BURST - 1}", "notes.create", NOW + 10) != []
    assert log.recent("usr_0", "notes.create", NOW + 10) == []


def test_one_user_cycling_through_tool_names_stays_within_the_tool_cap() -> None:
    log = RateLimitLog(max_events=30, max_tools_per_user=64)
    for i in range(BURST):
        log.check_and_record("u", f"mod.tool{i % 5000}", NOW, always_allow)
    size = log.size()
    assert size.users == 1 and size.keys == 64 and size.events <= 64 * 30


def test_idle_users_are_dropped_as_time_moves_on() -> None:
    """No user cap in reach: memory follows the users active inside the window."""
    log = RateLimitLog(max_events=30, max_users=10_000_000)
    step = 0.01  # 100,000 calls over 1,000 s, each from a new user
    for i in range(BURST):
        log.check_and_record(f"usr_{i}", "notes.create", NOW + i * step, always_allow)
    active_in_window = int(60 / step)
    assert log.size().users <= active_in_window + 2
