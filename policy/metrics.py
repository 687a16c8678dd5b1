"""Decision counters for the metrics endpoint: a plain counter keyed by (decision, reason, mode).

`decision` is `allow`, `deny` or `flagged`; in log-only mode a would-be denial is counted as
`deny` with mode `log-only` (the call still ran). The MCP server exports `snapshot()` to
Prometheus, e.g. as `mana_policy_decisions_total{decision, reason, mode}`.
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import NamedTuple


class DecisionKey(NamedTuple):
    decision: str
    reason: str
    mode: str


class PolicyMetrics:
    def __init__(self) -> None:
        self._counts: Counter[DecisionKey] = Counter()
        self._lock = threading.Lock()

    def count(self, decision: str, reason: str, mode: str) -> None:
        key = DecisionKey(decision, reason, mode)
        with self._lock:
            self._counts[key] += 1

    def snapshot(self) -> dict[DecisionKey, int]:
        """A copy of every counter, safe to iterate while calls keep coming."""
        with self._lock:
            return dict(self._counts)

    def get(self, decision: str, reason: str, mode: str) -> int:
        with self._lock:
            return self._counts.get(DecisionKey(decision, reason, mode), 0)

    def total(self) -> int:
        with self._lock:
            return sum(self._counts.values())
