#!/usr/bin/env python3
"""MCP round-trip latency: our server's `habits.list` (100 rows; token check, space resolution,
policy gate and audit all on) against a bare `mcp` low-level server's `echo`, with the same
`mcp.Client`, in the same run, over stdio and Streamable HTTP, in both protocol eras
(2026-07-28 = client default "auto"; 2025-11-25 = "legacy", the initialize/session era).

A second row per pair calls `habits.list` for a user with no habits: the same path (auth, space,
gate, query, audit) with a tiny result, which separates the fixed cost of our path from the
per-row cost. The "client validation" column is the time the `mcp` client itself spends
re-validating each result against the tool's output schema (measured by wrapping
`ClientSession.validate_tool_result` in this process): it grows with the rows returned and is
client work, not server work.

    .venv/bin/python benchmarks/mcp_roundtrip.py [-n 300] [--warmup 30] [--reps 3]

Each (transport, era) pair runs baseline and ours back to back, `--reps` times, alternating;
the table shows medians over the repetitions and the ratio ours/baseline (goal: p50 ≤ 1.5×).
Latency is the wall time of `client.call_tool(...)`, which includes the client's own work
(for ours: parsing and validating 100 rows against the output schema). Loopback only; every
server is stopped at the end; the whole run is capped by `--timeout`.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
from mcp import Client, StdioServerParameters
from mcp.client.session import ClientSession
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.mcp_bench_support import (
    BASELINE,
    PY,
    REPO,
    Server,
    mana_argv,
    percentiles,
    print_table,
    seed_users,
    server_env,
    token_for,
)
from tool_registry.logging import configure_logging

EMAIL = "bench@mana.test"
EMPTY_EMAIL = "bench-empty@mana.test"
ROWS = 100
WHO = ("baseline", "ours", "ours-0")
_validation_s = [0.0]


def _time_client_validation() -> None:
    """Accumulate the client's per-result schema validation time (measurement only)."""
    original = ClientSession.validate_tool_result

    async def timed(self: ClientSession, name: str, result: Any) -> None:
        started = time.perf_counter()
        try:
            await original(self, name, result)
        finally:
            _validation_s[0] += time.perf_counter() - started

    ClientSession.validate_tool_result = timed  # type: ignore[method-assign]


@dataclass
class Sample:
    p50: float
    p95: float
    calls_per_s: float
    errors: int
    protocol: str
    validation_ms: float


Transport = Callable[[], AbstractAsyncContextManager[Any]]


@asynccontextmanager
async def _devnull() -> AsyncIterator[Any]:
    with open("/dev/null", "w") as sink:  # noqa: ASYNC230 - opened once per measurement
        yield sink


def stdio_target(argv: list[str]) -> Transport:
    @asynccontextmanager
    async def transport() -> AsyncIterator[Any]:
        params = StdioServerParameters(
            command=argv[0], args=argv[1:], env=server_env(), cwd=str(REPO)
        )
        async with _devnull() as errlog:
            yield stdio_client(params, errlog=errlog)

    return transport


def http_target(url: str, headers: dict[str, str]) -> Transport:
    @asynccontextmanager
    async def transport() -> AsyncIterator[Any]:
        async with httpx2.AsyncClient(headers=headers, timeout=30.0) as http:
            yield streamable_http_client(url, http_client=http)

    return transport


async def measure(
    target: Transport,
    mode: str,
    tool: str,
    args: dict[str, Any],
    n: int,
    warmup: int,
    rows: int | None,
) -> Sample:
    async with (
        target() as transport,
        Client(
            transport,
            mode=mode,
            read_timeout_seconds=30,
        ) as client,
    ):
        await client.list_tools()
        errors = 0
        for _ in range(warmup):
            result = await client.call_tool(tool, args)
            errors += 1 if result.is_error else 0
        latencies: list[float] = []
        _validation_s[0] = 0.0
        started = time.perf_counter()
        for _ in range(n):
            t0 = time.perf_counter()
            result = await client.call_tool(tool, args)
            latencies.append(time.perf_counter() - t0)
            if result.is_error:
                errors += 1
            elif rows is not None:
                assert result.structured_content is not None
                assert len(result.structured_content["habits"]) == rows
        wall = time.perf_counter() - started
        p50, p95 = percentiles(latencies)
        return Sample(
            p50, p95, n / wall, errors, client.protocol_version or "?", _validation_s[0] / n * 1000
        )


async def run(ns: argparse.Namespace) -> int:
    data_dir = Path(tempfile.mkdtemp(prefix="mana-bench-rt-"))
    try:
        return await _run(ns, data_dir)
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


async def _run(ns: argparse.Namespace, data_dir: Path) -> int:
    ids = await seed_users(data_dir, [EMAIL], habits_per_user=ROWS)
    ids.update(await seed_users(data_dir, [EMPTY_EMAIL]))
    token = token_for(data_dir, ids[EMAIL], EMAIL)
    empty_token = token_for(data_dir, ids[EMPTY_EMAIL], EMPTY_EMAIL)
    _time_client_validation()
    ours_http = Server.ours(data_dir)
    base_http = Server.baseline()
    try:
        await ours_http.ready(health=True)
        await base_http.ready(health=False)
        targets: dict[tuple[str, str], Transport] = {
            ("stdio", "baseline"): stdio_target([PY, str(BASELINE), "stdio"]),
            ("stdio", "ours"): stdio_target(mana_argv(data_dir, "serve", "--stdio", "--as", EMAIL)),
            ("stdio", "ours-0"): stdio_target(
                mana_argv(data_dir, "serve", "--stdio", "--as", EMPTY_EMAIL)
            ),
            ("http", "baseline"): http_target(f"{base_http.url}/mcp", {}),
            ("http", "ours"): http_target(
                f"{ours_http.url}/mcp", {"Authorization": f"Bearer {token}"}
            ),
            ("http", "ours-0"): http_target(
                f"{ours_http.url}/mcp", {"Authorization": f"Bearer {empty_token}"}
            ),
        }
        calls: dict[str, tuple[str, dict[str, Any], int | None]] = {
            "baseline": ("echo", {"text": "hello"}, None),
            "ours": ("habits.list", {}, ROWS),
            "ours-0": ("habits.list", {}, 0),
        }
        samples: dict[tuple[str, str, str], list[Sample]] = {}
        for rep in range(ns.reps):
            for transport in ("stdio", "http"):
                for mode in ("auto", "legacy"):
                    order = WHO if rep % 2 == 0 else tuple(reversed(WHO))
                    for who in order:
                        tool, args, rows = calls[who]
                        sample = await measure(
                            targets[(transport, who)], mode, tool, args, ns.calls, ns.warmup, rows
                        )
                        samples.setdefault((transport, mode, who), []).append(sample)
                        print(
                            f"# rep {rep + 1} {transport:5} {mode:6} {who:8} "
                            f"p50 {sample.p50:6.2f} ms  p95 {sample.p95:6.2f} ms  "
                            f"{sample.calls_per_s:6.0f}/s  client validation "
                            f"{sample.validation_ms:5.2f} ms  errors {sample.errors}",
                            file=sys.stderr,
                        )
        server_ms = await _server_side_ms(ours_http.url)
    finally:
        ours_http.stop()
        base_http.stop()

    table = []
    worst = {"ours": 0.0, "ours-0": 0.0}
    errors = 0
    for transport in ("stdio", "http"):
        for mode in ("auto", "legacy"):
            base = samples[(transport, mode, "baseline")]
            errors += sum(s.errors for s in base)
            b50 = _median(base, "p50")
            for who, label in (
                ("ours", f"habits.list {ROWS} rows"),
                ("ours-0", "habits.list 0 rows"),
            ):
                ours = samples[(transport, mode, who)]
                errors += sum(s.errors for s in ours)
                o50 = _median(ours, "p50")
                ratio = o50 / b50
                worst[who] = max(worst[who], ratio)
                table.append(
                    [
                        transport,
                        ours[0].protocol,
                        label,
                        f"{b50:.2f}",
                        f"{_median(base, 'p95'):.2f}",
                        f"{_median(base, 'calls_per_s'):.0f}",
                        f"{o50:.2f}",
                        f"{_median(ours, 'p95'):.2f}",
                        f"{_median(ours, 'calls_per_s'):.0f}",
                        f"{_median(ours, 'validation_ms'):.2f}",
                        f"{ratio:.2f}x",
                    ]
                )
    print(
        f"\nMCP round trip: ours = habits.list (auth + gate + query + audit on) vs baseline = "
        f"bare low-level server echo; {ns.calls} sequential calls after {ns.warmup} warm-up, "
        f"median of {ns.reps} reps, same client, same run\n"
    )
    print_table(
        [
            "transport",
            "protocol",
            "ours calls",
            "base p50 ms",
            "base p95 ms",
            "base calls/s",
            "ours p50 ms",
            "ours p95 ms",
            "ours calls/s",
            "client validation ms",
            "p50 ratio",
        ],
        table,
    )
    if server_ms is not None:
        print(f"\nserver-side pipeline time of habits.list (HTTP server, mean): {server_ms:.2f} ms")
    print(
        f"worst p50 ratio: {worst['ours']:.2f}x with {ROWS} rows, {worst['ours-0']:.2f}x with 0 "
        f"rows (goal <= 1.5x); errors {errors}"
    )
    return 1 if errors else 0


def _median(samples: list[Sample], field: str) -> float:
    return statistics.median(float(getattr(s, field)) for s in samples)


async def _server_side_ms(url: str) -> float | None:
    async with httpx2.AsyncClient() as http:
        text = (await http.get(f"{url}/metrics")).text
    total = count = None
    for line in text.splitlines():
        if line.startswith('mana_tool_call_duration_seconds_sum{tool="habits.list"}'):
            total = float(line.split()[-1])
        elif line.startswith('mana_tool_call_duration_seconds_count{tool="habits.list"}'):
            count = float(line.split()[-1])
    if not total or not count:
        return None
    return total / count * 1000


def main(argv: list[str] | None = None) -> int:
    configure_logging("WARNING", json=True)
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("-n", "--calls", type=int, default=300, help="measured calls per sample")
    p.add_argument("--warmup", type=int, default=30, help="warm-up calls per sample")
    p.add_argument("--reps", type=int, default=3, help="repetitions (alternating order)")
    p.add_argument("--timeout", type=float, default=900, help="cap for the whole run, seconds")
    ns = p.parse_args(argv)

    async def bounded() -> int:
        return await asyncio.wait_for(run(ns), ns.timeout)

    return asyncio.run(bounded())


if __name__ == "__main__":
    sys.exit(main())
