"""Shared pieces of the MCP benchmarks: a seeded data directory, server processes on loopback
(always killed), tokens, percentiles, and a table printer."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx

from mana_auth import KeyStore, TokenIssuer
from mana_cli.config import Settings
from mana_cli.runtime import open_runtime
from tool_registry.context import CallContext

PY = sys.executable
REPO = Path(__file__).resolve().parents[1]
BASELINE = REPO / "benchmarks" / "mcp_echo_baseline.py"
BENCH_PASSWORD = "bench-password-123"  # noqa: S105 - throwaway benchmark users
# The policy gate stays on (rules evaluated, rate-limit log kept); only its per-user limit is
# raised so that hundreds of calls of one tool in a minute are not denied.
BENCH_ENV = {"MANA_RATE_LIMIT": "100000", "MANA_LOG_LEVEL": "WARNING"}


def mana_argv(data_dir: Path, *args: str) -> list[str]:
    return [PY, "-m", "mana_cli", "--data-dir", str(data_dir), *args]


def server_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MANA_")}
    env.update(BENCH_ENV)
    env.update(extra or {})
    env["MCP_BENCH_MAX_SECONDS"] = env.get("MCP_BENCH_MAX_SECONDS", "900")
    return env


def settings_for(data_dir: Path) -> Settings:
    return Settings.load({"data_dir": str(data_dir)}, environ=server_env())


async def seed_users(
    data_dir: Path, emails: Sequence[str], *, habits_per_user: int = 0
) -> dict[str, str]:
    """Users (with a password) and `habits_per_user` habits each; returns email → user id."""
    ids: dict[str, str] = {}
    async with open_runtime(settings_for(data_dir), create=True) as rt:
        for email in emails:
            user = await rt.accounts.user_by_email(email)
            if user is None:
                user = await rt.accounts.create_user(email, password=BENCH_PASSWORD)
            ids[email] = user.id
            for i in range(habits_per_user):
                out = await rt.pipeline.invoke(
                    "habits.create",
                    {"name": f"Habit {i:03d}", "targetPerPeriod": 1 + i % 5},
                    CallContext(user_id=user.id, invoker="cli"),
                )
                assert out.ok, out.public()
    return ids


def token_for(data_dir: Path, user_id: str, email: str) -> str:
    issuer = TokenIssuer(KeyStore(data_dir))
    return issuer.issue(user_id, email=email, ttl=timedelta(hours=1)).token


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Server:
    """A server process on 127.0.0.1 that is always stopped (SIGTERM, then SIGKILL)."""

    def __init__(self, argv: list[str], port: int, *, env: Mapping[str, str] | None = None):
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.proc = subprocess.Popen(
            argv,
            cwd=REPO,
            env=server_env(env),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    @classmethod
    def ours(cls, data_dir: Path, *, env: Mapping[str, str] | None = None) -> Server:
        port = free_port()
        return cls(mana_argv(data_dir, "serve", "--http", "--port", str(port)), port, env=env)

    @classmethod
    def baseline(cls) -> Server:
        port = free_port()
        return cls([PY, str(BASELINE), "http", str(port)], port)

    async def ready(self, *, health: bool, within: float = 60.0) -> None:
        deadline = time.monotonic() + within
        async with httpx.AsyncClient(timeout=1.0) as http:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"server {self.url} exited with {self.proc.returncode}")
                try:
                    if health:
                        if (await http.get(f"{self.url}/health")).status_code == 200:
                            return
                    else:
                        await http.get(f"{self.url}/mcp")
                        return
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.1)
        raise RuntimeError(f"server {self.url} not ready after {within} s")

    def rss_kib(self) -> int:
        """Resident set size of the server process (Linux /proc)."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0

    def cpu_seconds(self) -> float:
        """User + system CPU time the server process has used so far (Linux /proc)."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        return (int(fields[11]) + int(fields[12])) / ticks

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)


def percentiles(latencies_s: Sequence[float]) -> tuple[float, float]:
    ms = sorted(x * 1000.0 for x in latencies_s)
    if len(ms) < 2:
        return (ms[0], ms[0]) if ms else (float("nan"), float("nan"))
    q = statistics.quantiles(ms, n=100, method="inclusive")
    return q[49], q[94]


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    cells = [[str(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    print("| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in cells:
        print("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |")
