"""`mana serve --http --workers N`: N processes serve one port on PostgreSQL, each response names
its worker (`Mana-Worker: PID`), a killed worker is replaced, SIGTERM stops them all cleanly, and
the embedded SQLite file is refused with one line."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from multiprocessing.connection import Connection
from pathlib import Path

import httpx
import pytest

from mana_auth import KeyStore, TokenIssuer
from mana_cli.config import Settings
from mana_cli.runtime import open_runtime
from mana_http.serve import MAX_START_FAILURES, WorkerPool, WorkersFailed, bind_socket
from tests.mcp.support import MODERN_HEADERS, free_port, modern_tools_list

REPO = Path(__file__).resolve().parents[1]
WORKERS = 2


def mana_argv(data_dir: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "mana_cli", "--data-dir", str(data_dir), *args]


def mana_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MANA_")}
    env.update({"MANA_RATE_LIMIT": "100000", "MANA_LOG_LEVEL": "WARNING", **(extra or {})})
    return env


class WorkersServer:
    """`mana serve --http --workers 2` on PostgreSQL, on 127.0.0.1; always stopped."""

    def __init__(self, data_dir: Path, database_url: str) -> None:
        self.port = free_port()
        # Its own process group, as a terminal's foreground job is (Ctrl-C reaches the group).
        self.url = f"http://127.0.0.1:{self.port}"
        self.stderr_path = data_dir / "workers.err"
        self._stderr = open(self.stderr_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            mana_argv(
                data_dir, "serve", "--http", "--port", str(self.port), "--workers", str(WORKERS)
            ),
            cwd=REPO,
            env=mana_env({"MANA_DATABASE_URL": database_url, "MANA_LOG_LEVEL": "INFO"}),
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            start_new_session=True,
        )

    def wait_listening(self) -> str:
        """The first stdout line (printed by the parent once every worker serves)."""
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"server exited early: {self.stderr()}")
        return line

    def stderr(self) -> str:
        if not self._stderr.closed:
            self._stderr.flush()
        return self.stderr_path.read_text(errors="replace")[-4000:]

    def children(self) -> set[int]:
        path = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        return {int(x) for x in path.read_text().split()}

    def stop(self, timeout: float = 60.0) -> tuple[int, str]:
        """SIGTERM; the exit code and the rest of stdout."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            out, _ = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate(timeout=10)
        self._stderr.close()
        return self.proc.returncode, out


def _alive(pid: int) -> bool:
    """Running (a zombie waiting for a parent that never reaps it, e.g. a container's init
    after the supervisor was killed, has ended)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


async def _token(data_dir: Path, database_url: str) -> str:
    """`mana init` on the database plus one user; that user's bearer token."""
    settings = Settings.load({"data_dir": str(data_dir), "database_url": database_url}, environ={})
    async with open_runtime(settings, create=True) as rt:
        user = await rt.accounts.create_user("workers@mana.test")
    issuer = TokenIssuer(KeyStore(data_dir))
    return issuer.issue(user.id, email=user.email, ttl=timedelta(minutes=15)).token


@pytest.fixture
def served(tmp_path: Path, postgres_database: str) -> Iterator[tuple[WorkersServer, str]]:
    token = asyncio.run(_token(tmp_path, postgres_database))
    server = WorkersServer(tmp_path, postgres_database)
    try:
        yield server, token
    finally:
        server.stop()


def _tools_list(http: httpx.Client, server: WorkersServer, token: str) -> httpx.Response:
    """One stateless (2026-07-28) tools/list on a fresh connection, so the kernel picks the
    worker anew each time."""
    return http.post(
        f"{server.url}/mcp",
        json=modern_tools_list(),
        headers={
            "accept": "application/json, text/event-stream",
            "content-type": "application/json",
            "authorization": f"Bearer {token}",
            "connection": "close",
            **MODERN_HEADERS,
        },
    )


def _serve_until(server: WorkersServer, token: str, wanted: int, limit: int = 2000) -> set[int]:
    """Requests until `wanted` distinct worker pids answered (at most `limit`); every answer
    must be a 200 listing tools."""
    pids: set[int] = set()
    with httpx.Client(timeout=30.0) as http:
        for _ in range(limit):
            response = _tools_list(http, server, token)
            assert response.status_code == 200, response.text
            assert "notes.create" in response.text
            pids.add(int(response.headers["mana-worker"]))
            if len(pids) >= wanted:
                break
    return pids


def test_two_workers_answer_on_one_port_and_stop_on_sigterm(
    served: tuple[WorkersServer, str],
) -> None:
    server, token = served
    line = server.wait_listening()
    assert line == f"Mana MCP server listening on {server.url}/mcp\n"
    answered = 0
    pids: set[int] = set()
    with httpx.Client(timeout=30.0) as http:
        for _ in range(60):
            response = _tools_list(http, server, token)
            assert response.status_code == 200, response.text
            pids.add(int(response.headers["mana-worker"]))
            answered += 1
    pids |= _serve_until(server, token, WORKERS)
    assert answered == 60
    assert len(pids) == WORKERS
    assert pids <= server.children()
    assert server.proc.pid not in pids

    code, rest = server.stop()
    assert code == 0, server.stderr()
    assert "listening on" not in rest  # the start-up line is printed once, by the parent
    assert not any(_alive(pid) for pid in pids)
    assert "worker ended uncleanly" not in server.stderr()


BURST = 40
# Each connection lands on a worker by the kernel's hash of its addresses: with two workers and
# BURST connections, one worker getting fewer than this many is a one-in-100,000 event.
FAIR_SHARE = 8


async def _burst(server: WorkersServer, token: str) -> list[int]:
    """BURST requests at once, each on a connection of its own; the answering worker pids."""
    limits = httpx.Limits(max_connections=BURST, max_keepalive_connections=0)
    async with httpx.AsyncClient(timeout=60.0, limits=limits) as http:

        async def one() -> int:
            response = await http.post(
                f"{server.url}/mcp",
                json=modern_tools_list(),
                headers={
                    "accept": "application/json, text/event-stream",
                    "content-type": "application/json",
                    "authorization": f"Bearer {token}",
                    **MODERN_HEADERS,
                },
            )
            assert response.status_code == 200, response.text
            return int(response.headers["mana-worker"])

        return list(await asyncio.gather(*(one() for _ in range(BURST))))


def test_a_burst_of_connections_is_spread_over_the_workers(
    served: tuple[WorkersServer, str],
) -> None:
    """Each worker listens on a socket of its own (SO_REUSEPORT), so a burst of new connections
    is not all accepted by whichever worker woke first."""
    server, token = served
    server.wait_listening()
    pids = asyncio.run(_burst(server, token))
    shares = {pid: pids.count(pid) for pid in set(pids)}
    assert len(shares) == WORKERS, shares
    assert min(shares.values()) >= FAIR_SHARE, shares
    # After a worker is killed and replaced, the replacement gets its share of a burst too,
    # and no connection is lost meanwhile (they queue on the dead worker's socket).
    victim = min(shares)
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 60
    while True:
        again = asyncio.run(_burst(server, token))
        newcomers = set(again) - set(shares)
        if newcomers or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert victim not in again
    assert newcomers and newcomers <= server.children(), server.stderr()
    code, _ = server.stop()
    assert code == 0, server.stderr()


def test_a_killed_worker_is_replaced(served: tuple[WorkersServer, str]) -> None:
    server, token = served
    server.wait_listening()
    first = _serve_until(server, token, WORKERS)
    victim = min(first)
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 60
    replaced: set[int] = set()
    with httpx.Client(timeout=30.0) as http:
        while time.monotonic() < deadline and not replaced - first:
            response = _tools_list(http, server, token)
            assert response.status_code == 200, response.text
            replaced.add(int(response.headers["mana-worker"]))
            time.sleep(0.02)
    newcomers = replaced - first
    assert newcomers, server.stderr()
    assert victim not in replaced
    assert newcomers <= server.children()
    assert server.proc.poll() is None
    code, _ = server.stop()
    assert code == 0, server.stderr()


def _gone_within(pids: set[int], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not any(_alive(pid) for pid in pids):
            return True
        time.sleep(0.1)
    return False


def test_ctrl_c_on_the_process_group_stops_every_worker_cleanly(
    served: tuple[WorkersServer, str],
) -> None:
    server, token = served
    server.wait_listening()
    pids = _serve_until(server, token, WORKERS)
    os.killpg(server.proc.pid, signal.SIGINT)  # parent and workers alike, as a terminal does
    assert server.proc.wait(timeout=60) == 0, server.stderr()
    assert _gone_within(pids, 10)
    assert "worker ended uncleanly" not in server.stderr()


def test_workers_stop_by_themselves_when_the_parent_is_killed(
    served: tuple[WorkersServer, str],
) -> None:
    server, token = served
    server.wait_listening()
    pids = _serve_until(server, token, WORKERS)
    server.proc.kill()
    server.proc.wait(timeout=10)
    assert _gone_within(pids, 60), server.stderr()
    assert "the supervising process is gone" in server.stderr()


def test_workers_on_the_sqlite_file_are_refused_with_one_line(tmp_path: Path) -> None:
    result = subprocess.run(
        mana_argv(tmp_path, "serve", "--http", "--port", str(free_port()), "--workers", "2"),
        cwd=REPO,
        env=mana_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "--workers 2 needs PostgreSQL" in lines[0]
    assert not result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--http", "--workers", "0"], "--workers 0 is out of range (1-64)"),
        (["--http", "--workers", "two"], "--workers two is not an integer"),
        (["--stdio", "--as", "a@mana.test", "--workers", "2"], "apply to --http only"),
    ],
)
def test_bad_workers_flags_are_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    result = subprocess.run(
        mana_argv(tmp_path, "serve", *args),
        cwd=REPO,
        env=mana_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def exit_before_serving(sock: object, ready_pipe: object, code: int) -> None:
    """A worker target that fails at start-up (spawned by the pool test below)."""
    sys.exit(code)


def test_a_pool_whose_workers_keep_failing_at_start_gives_up() -> None:
    pool = WorkerPool(
        target=exit_before_serving,
        payload=7,
        sock=bind_socket("127.0.0.1", 0),
        count=2,
        grace_seconds=1.0,
    )
    announced: list[bool] = []
    with pytest.raises(WorkersFailed, match=r"3 worker processes in a row .*exit code 7"):
        asyncio.run(pool.run(lambda: announced.append(True)))
    assert announced == []
    assert pool.sock.fileno() == -1  # the listening socket is closed


def serve_first_then_fail(sock: object, ready_pipe: Connection, directory: str) -> None:
    """A worker target (spawned by the pool test below): the first two starts serve (the very
    first ends after a moment, as a crash would), every later one fails before serving."""
    start = 0
    while True:
        try:
            os.close(os.open(Path(directory) / f"start-{start}", os.O_CREAT | os.O_EXCL))
            break
        except FileExistsError:
            start += 1
    if start >= 2:
        sys.exit(5)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    ready_pipe.send(os.getpid())
    time.sleep(0.5 if start == 0 else 600)


def test_a_pool_that_served_keeps_retrying_a_worker_that_cannot_start(tmp_path: Path) -> None:
    pool = WorkerPool(
        target=serve_first_then_fail,
        payload=str(tmp_path),
        sock=bind_socket("127.0.0.1", 0),
        count=2,
        grace_seconds=1.0,
        restart_backoff_seconds=0.05,
    )
    announced: list[bool] = []
    failed_starts = MAX_START_FAILURES + 1

    async def stop_after_failed_starts() -> None:
        await asyncio.to_thread(_wait_for_files, tmp_path, 2 + failed_starts)
        pool.stop()

    async def run() -> int:
        stopper = asyncio.create_task(stop_after_failed_starts())
        code = await pool.run(lambda: announced.append(True))
        await stopper
        return code

    asyncio.run(run())  # no WorkersFailed: it kept retrying while the other worker served
    assert announced == [True]
    assert len(list(tmp_path.glob("start-*"))) >= 2 + failed_starts


def _wait_for_files(directory: Path, count: int, within: float = 120.0) -> None:
    deadline = time.monotonic() + within
    while len(list(directory.glob("start-*"))) < count and time.monotonic() < deadline:
        time.sleep(0.1)
