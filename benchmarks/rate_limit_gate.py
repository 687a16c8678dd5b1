"""Cost of the policy gate per call with the rate-limit log in the database vs in memory.

`PolicyGate.check` for a clean `notes.create` call (default limit 30 per 60 s), measured in one
run with three logs: the in-memory `RateLimitLog` (the baseline: what a single process had), and
the `SharedRateLimitLog` every `mana` process uses, on SQLite and on PostgreSQL. Two loads:

- spread: calls cycle over 1,000 users (a few events per key; the common case);
- full row: one user calls every 2 s of clock time, so the key holds ~30 events (the limit).

Also reported: a call denied whatever the history (a destructive tool not allowed in the space)
and a call of a tool without a limit (`MANA_RATE_LIMITS=notes.create=off`), which the gate
decides without the log on every backend.

PostgreSQL comes from `--database-url` (a database the benchmark may create tables in; use a
throwaway one) or, by default, a private throwaway server (`ThrowawayPostgres`: fsync and
synchronous_commit off, so commits cost less than on a durable server).

    .venv/bin/python benchmarks/rate_limit_gate.py
    .venv/bin/python benchmarks/rate_limit_gate.py --calls 3000 --backend sqlite
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import tempfile
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from policy.gate import PolicyGate
from policy.rate_limit import RateLimitLog, RateLog, SharedRateLimitLog
from policy.schema import POLICY_MIGRATIONS
from policy.settings import PolicySettings
from tool_registry.context import CallContext
from tool_registry.gate import GateRequest
from tool_registry.logging import configure_logging
from tool_registry.modules import build_registry
from tool_registry.store import open_database
from tool_registry.store.accounts import Space

TOOL = "notes.create"
DENIED_TOOL = "notes.delete"
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
SPACE = Space("spc_bench", "bench", "Bench", "personal", "2026-01-01T00:00:00.000000Z")


class _NoAllowlist:
    async def tools(self, space_id: str) -> frozenset[str]:
        return frozenset()


def _requests(tool: str, count: int, *, users: int, step: timedelta) -> list[GateRequest]:
    registry = build_registry()
    spec = registry.get(tool)
    assert spec is not None
    parsed = spec.input.model_validate(
        {"title": "Market notes", "body": "Basil, tomatoes, mozzarella. " * 20, "tags": ["food"]}
        if tool == TOOL
        else {"id": "rec_x"}
    )
    return [
        GateRequest(
            spec=spec,
            call=CallContext(user_id=f"usr_{i % users}"),
            space=SPACE,
            role="owner",
            parsed_input=parsed,
            now=T0 + step * i,
        )
        for i in range(count)
    ]


async def _per_call_us(gate: PolicyGate, requests: list[GateRequest], repeat: int = 3) -> float:
    """The best of `repeat` runs over `requests` split in `repeat` slices (each slice a fresh
    part of the load, so no run replays another's calls): the machine's noise only slows."""
    size = len(requests) // repeat
    best = float("inf")
    for start in range(0, size * repeat, size):
        chunk = requests[start : start + size]
        started = time.perf_counter()
        for request in chunk:
            decision = await gate.check(request)
            assert decision.allow or request.spec.name == DENIED_TOOL, decision
        best = min(best, (time.perf_counter() - started) / len(chunk) * 1e6)
    return best


async def _measure(log: RateLog, settings: PolicySettings, calls: int) -> dict[str, float]:
    registry = build_registry()
    gate = PolicyGate(settings, _NoAllowlist(), registry=registry, rate_log=log)
    spread = _requests(TOOL, calls, users=1000, step=timedelta(milliseconds=1))
    full = _requests(TOOL, calls, users=1, step=timedelta(seconds=2))
    full = [
        GateRequest(r.spec, r.call, r.space, r.role, r.parsed_input, r.now + timedelta(days=1))
        for r in full
    ]
    denied = _requests(DENIED_TOOL, calls, users=1000, step=timedelta(milliseconds=1))
    unlimited = PolicyGate(
        replace(settings, tool_limits={TOOL: None}), _NoAllowlist(), registry=registry, rate_log=log
    )
    await _per_call_us(gate, spread[: calls // 10])  # warm-up: pools, caches, first sweep
    return {
        "spread over 1000 users": await _per_call_us(gate, spread),
        "full row (~30 events)": await _per_call_us(gate, full),
        "denied whatever the history": await _per_call_us(gate, denied),
        "tool without a limit": await _per_call_us(unlimited, spread),
    }


@contextlib.contextmanager
def _postgres(url: str | None) -> Iterator[str]:
    if url:
        yield url
        return
    from tool_registry.testing.postgres import ThrowawayPostgres

    with ThrowawayPostgres() as server:
        yield server.url


async def _shared(target: str, settings: PolicySettings, calls: int) -> dict[str, float]:
    db = await open_database(target, POLICY_MIGRATIONS)
    try:
        log = SharedRateLimitLog(
            db, window_seconds=settings.window_seconds, max_events=settings.max_limit
        )
        return await _measure(log, settings, calls)
    finally:
        await db.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=3000, help="gate checks per load")
    parser.add_argument("--backend", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--database-url", help="PostgreSQL to use instead of a throwaway server")
    opts = parser.parse_args(argv)
    configure_logging("ERROR", json=True)  # the denied load would log a warning per call

    settings = PolicySettings()  # the defaults: 30 calls per tool per user per 60 s
    memory = RateLimitLog(window_seconds=settings.window_seconds, max_events=settings.max_limit)
    results = {"in memory (one process)": asyncio.run(_measure(memory, settings, opts.calls))}
    if opts.backend in ("sqlite", "both"):
        with tempfile.TemporaryDirectory() as tmp:
            target = str(Path(tmp) / "bench.db")
            results["shared, SQLite"] = asyncio.run(_shared(target, settings, opts.calls))
    if opts.backend in ("postgres", "both"):
        with _postgres(opts.database_url) as url:
            results["shared, PostgreSQL"] = asyncio.run(_shared(url, settings, opts.calls))

    base = results["in memory (one process)"]
    print(
        f"PolicyGate.check per call (best of 3 runs of {opts.calls // 3} calls per load), "
        "limit 30 per 60 s"
    )
    for name, figures in results.items():
        print(f"{name}:")
        for load, value in figures.items():
            print(f"  {load}: {value:8.1f} µs  ({value / base[load]:.1f}x in memory)")


if __name__ == "__main__":
    main()
