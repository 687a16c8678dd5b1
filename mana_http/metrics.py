"""Prometheus metrics of one HTTP app, on its own `CollectorRegistry` (no global registry, so two
apps in one process — e.g. tests — never share or clash).

- `mana_tool_calls_total{tool,outcome}` and `mana_tool_call_duration_seconds{tool}`: every
  pipeline outcome in this process (the app subscribes to `pipeline.observers`).
- `mana_tool_errors_total{tool,reason}`: the `error` outcomes among them by reason
  (`handler-error`: the handler crashed; `internal-error`: a pipeline step such as the write
  transaction failed; `invalid-output`, `not-configured`, a tool's own error reasons).
- `mana_policy_decisions_total{decision,reason,mode}`: from the gate's own counter when the gate
  exposes `metrics.snapshot()`; otherwise derived from pipeline outcomes (calls that reached the
  gate: allowed ones and policy denials).
- `mana_mcp_open_sessions`: open 2025-11-25 sessions.
- `mana_auth_failures_total{reason}`: rejected requests (401/403/404 session, origin, login).
- `mana_mcp_client_answers_total{route}`: a client's answers to requests another replica sent
  (`mana_http.answers`): `forwarded` from here, `delivered` here to a waiting request,
  `dropped` (none waiting, session gone, too many waiting).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from tool_registry.pipeline import Outcome
from tool_registry.registry import AnySpec

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
# Outcome reasons decided before the gate runs: not policy decisions.
PRE_GATE_REASONS = frozenset(
    {
        "unknown-tool",
        "invalid-input",
        "not-a-member",
        "not-offered",
        "module-not-allowed",
        "not-configured",
    }
)
UNKNOWN_TOOL_LABEL = "(unknown)"


class _PolicyCollector(Collector):
    def __init__(self, source: Callable[[], Iterable[tuple[tuple[str, str, str], float]]]) -> None:
        self._source = source

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(
            "mana_policy_decisions",
            "Policy gate decisions by decision, reason and mode.",
            labels=["decision", "reason", "mode"],
        )
        for (decision, reason, mode), count in self._source():
            family.add_metric([decision, reason, mode], count)
        yield family


def _snapshot_items(snapshot: Any) -> Iterator[tuple[tuple[str, str, str], float]]:
    """Accept the shapes a gate counter may reasonably return: a mapping of
    (decision, reason, mode) → count, or an iterable of records/dicts with those fields."""
    if isinstance(snapshot, Mapping):
        for key, count in snapshot.items():
            if isinstance(key, tuple) and len(key) == 3:
                yield (str(key[0]), str(key[1]), str(key[2])), float(count)
        return
    for item in snapshot or ():
        get = item.get if isinstance(item, Mapping) else (lambda k, i=item: getattr(i, k, None))
        decision, reason, mode, count = get("decision"), get("reason"), get("mode"), get("count")
        if decision is not None and count is not None:
            yield (str(decision), str(reason), str(mode)), float(count)


class Metrics:
    def __init__(self, *, gate: Any = None, open_sessions: Callable[[], int] = lambda: 0) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.tool_calls = Counter(
            "mana_tool_calls",
            "Tool calls by tool and outcome status.",
            ["tool", "outcome"],
            registry=self.registry,
        )
        self.tool_errors = Counter(
            "mana_tool_errors",
            "Tool calls whose outcome is error, by tool and reason.",
            ["tool", "reason"],
            registry=self.registry,
        )
        self.tool_latency = Histogram(
            "mana_tool_call_duration_seconds",
            "Pipeline latency of tool calls.",
            ["tool"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.auth_failures = Counter(
            "mana_auth_failures",
            "Rejected HTTP requests by reason.",
            ["reason"],
            registry=self.registry,
        )
        self.client_answers = Counter(
            "mana_mcp_client_answers",
            "Client answers to another replica's requests, by route.",
            ["route"],
            registry=self.registry,
        )
        self.sessions = Gauge(
            "mana_mcp_open_sessions",
            "Open MCP sessions (2025-11-25 era).",
            registry=self.registry,
        )
        self.sessions.set_function(lambda: float(open_sessions()))
        self._gate = gate
        self._mode = str(getattr(gate, "mode", "enforce"))
        self._derived: dict[tuple[str, str, str], int] = {}
        self.registry.register(_PolicyCollector(self._policy_items))

    def observe(self, outcome: Outcome, spec: AnySpec | None) -> None:
        """Pipeline observer: count every outcome (cheap: a few dict operations)."""
        tool = spec.name if spec is not None else UNKNOWN_TOOL_LABEL
        self.tool_calls.labels(tool, outcome.status).inc()
        self.tool_latency.labels(tool).observe(outcome.latency_ms / 1000.0)
        reason = (outcome.error.reason if outcome.error else outcome.reason) or "allowed"
        if outcome.status == "error":
            self.tool_errors.labels(tool, reason).inc()
        if reason in PRE_GATE_REASONS:
            return
        if outcome.status == "denied":
            key = ("deny", reason, self._mode)
        elif outcome.status == "ok":
            key = ("allow", outcome.reason or "allowed", self._mode)
        else:
            return
        self._derived[key] = self._derived.get(key, 0) + 1

    def _policy_items(self) -> Iterable[tuple[tuple[str, str, str], float]]:
        counter = getattr(self._gate, "metrics", None)
        snapshot = getattr(counter, "snapshot", None)
        if callable(snapshot):
            return list(_snapshot_items(snapshot()))
        return [(k, float(v)) for k, v in self._derived.items()]

    def auth_failure(self, reason: str) -> None:
        self.auth_failures.labels(reason).inc()

    def client_answer(self, route: str) -> None:
        self.client_answers.labels(route).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
