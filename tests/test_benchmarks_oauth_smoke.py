"""The OAuth connections benchmark still runs end to end with tiny sizes: it signs in through the
real endpoints, calls with each kind of token in both eras, rotates refresh tokens, and prints
every row and ratio (no figure is checked)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_oauth_calls_benchmark_runs_and_prints_every_row() -> None:
    done = subprocess.run(
        [sys.executable, "benchmarks/oauth_calls.py", "-n", "5", "--warmup", "1", "--reps", "1"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    for protocol in ("2026-07-28", "2025-11-25"):
        for kind in ("local", "read+write", "read-only"):
            assert f"| {protocol} | {kind} " in out, out
        for kind in ("read+write", "read-only"):
            assert f"p50 {kind} / local, {protocol}: " in out, out
    assert "| GET /health " in out, out
    assert "| refresh rotation " in out, out
    assert "refresh rotations per second / GET /health per second: " in out, out
    assert "errors 0" in out, out
