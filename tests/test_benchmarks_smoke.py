"""The PostgreSQL modes of the scaling benchmarks still run end to end (tiny sizes; no figure is
checked, only that every phase ran without errors or lost writes and printed its ratios)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=600
    )


@pytest.mark.usefixtures("postgres_url")  # skips without PostgreSQL binaries, fails under CI
def test_mcp_load_on_postgres_with_two_workers_runs() -> None:
    done = _run(
        "benchmarks/mcp_load.py",
        "--backend", "postgres", "--replicas", "2", "--sessions", "2", "--calls", "10",
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for phase in ("sqlite, 1 server", "postgres, 1 server", "postgres, 2 workers on one port"):
        assert f"| {phase} " in done.stdout
    assert "throughput, 2 workers on one port / 1 server:" in done.stdout
    assert "CPU per call, PostgreSQL (1 server) / SQLite:" in done.stdout
    assert "error (" not in done.stdout


@pytest.mark.usefixtures("postgres_url")
def test_store_scaling_on_postgres_runs() -> None:
    done = _run(
        "benchmarks/store_scaling.py",
        "--backend", "postgres", "--other-rows", "2000", "--other-spaces", "20", "-n", "5",
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "inserted 2,000 rows in 20 other spaces" in done.stdout
    assert "big/small" in done.stdout
