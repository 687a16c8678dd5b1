"""Prometheus metrics of the mission runner and daemon, on their own `CollectorRegistry` (one per
daemon object, created in the composition root: no process-global registry)."""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)


class MissionMetrics:
    """Ticks, missions run and skipped (by reason), iterations (by status), tool calls (by
    status), tokens (by kind), reminders (by producer), compactions, recovered iterations."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.ticks = Counter("mana_daemon_ticks", "Daemon ticks run.", registry=r)
        self.tick_seconds = Histogram(
            "mana_daemon_tick_seconds",
            "Time to recover, select and claim due missions in one tick.",
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
            registry=r,
        )
        self.last_tick = Gauge(
            "mana_daemon_last_tick_timestamp_seconds", "When the last tick ran.", registry=r
        )
        self.missions_run = Counter("mana_missions_run", "Mission iterations started.", registry=r)
        self.missions_skipped = Counter(
            "mana_missions_skipped", "Due missions not run, by reason.", ["reason"], registry=r
        )
        self.iterations = Counter(
            "mana_iterations", "Finished iterations, by status.", ["status"], registry=r
        )
        self.recovered = Counter(
            "mana_iterations_recovered",
            "Interrupted iterations marked failed by recovery.",
            registry=r,
        )
        self.running = Gauge("mana_iterations_running", "Iterations running now.", registry=r)
        self.tool_calls = Counter(
            "mana_mission_tool_calls",
            "Tool calls made by missions, by status.",
            ["status"],
            registry=r,
        )
        self.tokens = Counter(
            "mana_mission_tokens", "Model tokens used by missions, by kind.", ["kind"], registry=r
        )
        self.reminders = Counter(
            "mana_mission_reminders",
            "Reminders sent to the model, by producer.",
            ["producer"],
            registry=r,
        )
        self.compactions = Counter(
            "mana_mission_compactions", "Context compactions in mission runs.", registry=r
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def value(self, name: str, **labels: str) -> float:
        """A sample's current value (0 when never set), for tests and reports."""
        sample = self.registry.get_sample_value(name, labels or None)
        return 0.0 if sample is None else float(sample)
