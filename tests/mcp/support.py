"""Helpers for the MCP tests: a seeded data directory, real server processes on 127.0.0.1 with
ephemeral ports, tokens, and `mcp` clients over stdio and HTTP."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal, TextIO, TypeAlias

import httpx
import httpx2
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.session import MessageHandlerFnT
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client

from mana_auth import KeyStore, TokenIssuer
from mana_cli.config import Settings
from mana_cli.demo import BRAND_SLUG, DEMO_EMAIL, seed_demo
from mana_cli.runtime import EXTRA_MIGRATIONS, open_runtime
from policy.allowlist import DestructiveAllowlist
from tool_registry.registry import Registry
from tool_registry.store import open_database
from tool_registry.store.postgres import is_postgres_url
from tool_registry.testing.plugin import new_database

PY = sys.executable
REPO = Path(__file__).resolve().parents[2]
Mode = Literal["auto", "legacy"]
MODES: tuple[Mode, ...] = ("auto", "legacy")
BOB_EMAIL = "bob@mana.test"
BOB_PASSWORD = "bob-password-123"
# Server environment for the tests: a generous rate limit (the tests call some tools often).
TEST_ENV = {"MANA_RATE_LIMIT": "1000", "MANA_LOG_LEVEL": "WARNING"}

# demo reference images: opted in and alive, per space
PERSONAL_IMAGES = {"ref_demo_face", "ref_demo_full"}
BRAND_IMAGES = {"ref_demo_brand_half"}


@dataclass(frozen=True)
class Installation:
    """What a Mana process under test runs on: its data directory (signing keys, logs) and its
    database, the SQLite file (default `DATA_DIR/mana.db`) or a PostgreSQL URL (a
    `database_target`). Child processes get the database in their environment (`MANA_DB` or
    `MANA_DATABASE_URL`), never on the command line, where `ps` would show a password."""

    data_dir: Path
    database: str

    @classmethod
    def of(cls, where: Where) -> Installation:
        """`where` itself, or for a bare data directory the SQLite file in it."""
        if isinstance(where, Installation):
            return where
        return cls(where, str(where / "mana.db"))

    @property
    def database_url(self) -> str | None:
        return self.database if is_postgres_url(self.database) else None

    @property
    def backend(self) -> Literal["sqlite", "postgres"]:
        return "postgres" if self.database_url is not None else "sqlite"

    def settings(self) -> Settings:
        """The settings a process on this installation loads (no other environment)."""
        return Settings.load({"data_dir": str(self.data_dir), **self._flag()}, environ={})

    def flags(self) -> list[str]:
        """Global CLI flags for an in-process `mana_cli.main.main([...])` call."""
        ((name, value),) = self._flag().items()
        return ["--data-dir", str(self.data_dir), "--" + name.replace("_", "-"), value]

    def env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """A child process's environment: `mana_env(extra)` plus this database."""
        var = "MANA_DATABASE_URL" if self.database_url is not None else "MANA_DB"
        return mana_env({var: self.database, **(extra or {})})

    async def query(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        """Rows of one read (`?` placeholders, SQL both backends accept), through the store
        layer like any process: what tests check after the processes under test are done."""
        db = await open_database(self.database, EXTRA_MIGRATIONS, create=False)
        try:
            return await db.read(lambda c: [tuple(r) for r in c.execute(sql, params).fetchall()])
        finally:
            await db.close()

    async def execute(self, sql: str, *params: Any) -> None:
        """One write statement through the store layer (a test's setup of stored state)."""
        db = await open_database(self.database, EXTRA_MIGRATIONS, create=False)
        try:
            await db.write(lambda c: c.execute(sql, params))
        finally:
            await db.close()

    def _flag(self) -> dict[str, str]:
        if self.database_url is not None:
            return {"database_url": self.database_url}
        return {"db": self.database}


Where: TypeAlias = Path | Installation


@dataclass(frozen=True)
class World:
    installation: Installation
    demo_id: str
    personal_id: str
    brand_id: str
    family_id: str  # demo is a member
    bob_id: str
    bob_space_id: str  # bob's team space; demo is not a member

    @property
    def data_dir(self) -> Path:
        return self.installation.data_dir

    def token(self, user_id: str, *, email: str | None = None, ttl: int = 900) -> str:
        issuer = TokenIssuer(KeyStore(self.data_dir))
        return issuer.issue(user_id, email=email, ttl=timedelta(seconds=ttl)).token


def settings_for(where: Where) -> Settings:
    return Installation.of(where).settings()


async def _seed(installation: Installation) -> World:
    async with open_runtime(installation.settings(), create=True) as rt:
        report = await seed_demo(rt)
        demo = report.user
        bob = await rt.accounts.create_user(BOB_EMAIL, name="Bob", password=BOB_PASSWORD)
        family = await rt.accounts.create_space(bob.id, type_="family", name="Bob's family")
        await rt.accounts.add_member(family.id, demo.id, "member")
        team = await rt.accounts.create_space(bob.id, type_="team", name="Bob's team")
        allowlist = DestructiveAllowlist(rt.db, rt.registry, accounts=rt.accounts)
        await allowlist.allow(demo.id, None, ["notes.delete"], acknowledge=True)
        return World(
            installation=installation,
            demo_id=demo.id,
            personal_id=report.personal.id,
            brand_id=report.brand.id,
            family_id=family.id,
            bob_id=bob.id,
            bob_space_id=team.id,
        )


async def server_registry(where: Where) -> Registry:
    """The registry exactly as the server process builds it (bundled modules plus the tools the
    composition root adds)."""
    async with open_runtime(settings_for(where)) as rt:
        return rt.registry


def seed_world(where: Where) -> World:
    """Demo dataset plus Bob (a family space demo belongs to, a team space demo does not), in
    `where`: a data directory (its SQLite file) or an `Installation` on either backend."""
    return asyncio.run(seed_world_async(where))


@contextmanager
def seeded_world(request: pytest.FixtureRequest, backend: str, data_dir: Path) -> Iterator[World]:
    """`seed_world` on a new database of `backend` (`database_backend`) with its keys in
    `data_dir`, for a module's shared world; the database is dropped at the block's end."""
    with new_database(request, backend, data_dir / "mana.db") as database:
        yield seed_world(Installation(data_dir, database))


async def seed_world_async(where: Where) -> World:
    installation = Installation.of(where)
    world = await _seed(installation)
    KeyStore(installation.data_dir).ensure()
    return world


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def mana_argv(data_dir: Path, *args: str) -> list[str]:
    return [PY, "-m", "mana_cli", "--data-dir", str(data_dir), *args]


def mana_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MANA_")}
    env.update(TEST_ENV)
    env.update(extra or {})
    return env


class ServerProcess:
    """`python -m mana_cli --data-dir D serve --http --port P` on 127.0.0.1, on the
    installation's database (SQLite file or PostgreSQL URL)."""

    def __init__(self, where: Where, *, env: Mapping[str, str] | None = None) -> None:
        self.installation = Installation.of(where)
        self.data_dir = data_dir = self.installation.data_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.mcp_url = f"{self.url}/mcp"
        data_dir.mkdir(parents=True, exist_ok=True)  # `init` on PostgreSQL makes no data dir
        self.stderr_path = data_dir / f"server-{self.port}.err"
        self._stderr = open(self.stderr_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            mana_argv(data_dir, "serve", "--http", "--port", str(self.port)),
            cwd=REPO,
            env=self.installation.env(env),
            stdout=subprocess.DEVNULL,
            stderr=self._stderr,
        )

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited early: {self.stderr()}")
            try:
                if httpx.get(f"{self.url}/health", timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"server not ready after {timeout} s: {self.stderr()}")

    def __enter__(self) -> ServerProcess:
        """Wait until it serves; stopped at the block's end whatever happens."""
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stderr(self) -> str:
        self._stderr.flush()
        return self.stderr_path.read_text(errors="replace")[-4000:]

    def terminate(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def stop(self, timeout: float = 15.0) -> int:
        self.terminate()
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait(timeout=5)
        self._stderr.close()
        return code


@contextmanager
def replica_pair(
    request: pytest.FixtureRequest, data_dir: Path, *, env: Mapping[str, str] | None = None
) -> Iterator[tuple[World, ServerProcess, ServerProcess]]:
    """Two `mana serve --http` replicas on one new PostgreSQL database seeded with the demo
    world (keys in `data_dir`), started with `env`; both stopped and the database dropped at the
    block's end."""
    with new_database(request, "postgres", data_dir / "mana.db") as url:
        world = seed_world(Installation(data_dir, url))
        a = ServerProcess(world.installation, env=env)
        b = ServerProcess(world.installation, env=env)
        try:
            a.wait_ready()
            b.wait_ready()
            yield world, a, b
        finally:
            a.stop()
            b.stop()


def headers(token: str | None, space: str | None = None) -> dict[str, str]:
    out: dict[str, str] = {}
    if token is not None:
        out["Authorization"] = f"Bearer {token}"
    if space is not None:
        out["X-Mana-Space"] = space
    return out


JSON_ACCEPT = {"accept": "application/json, text/event-stream", "content-type": "application/json"}


@asynccontextmanager
async def http_client(
    url: str,
    token: str | None,
    space: str | None = None,
    *,
    mode: Mode = "auto",
    message_handler: MessageHandlerFnT | None = None,
) -> AsyncIterator[tuple[Client, httpx2.AsyncClient]]:
    """An `mcp.Client` over Streamable HTTP plus its httpx2 client (whose headers a test may
    change between calls)."""
    async with (
        httpx2.AsyncClient(headers=headers(token, space), timeout=30.0) as http,
        Client(
            streamable_http_client(url, http_client=http),
            mode=mode,
            read_timeout_seconds=30,
            message_handler=message_handler,
        ) as client,
    ):
        yield client, http


def _append(path: Path) -> TextIO:
    return open(path, "a")


@asynccontextmanager
async def stdio_client_for(
    where: Where,
    *args: str,
    mode: Mode = "auto",
    env: Mapping[str, str] | None = None,
    **options: Any,
) -> AsyncIterator[Client]:
    """An `mcp` client of `mana serve --stdio ARGS` on `where`; `options` go to the `Client`
    (e.g. an `elicitation_callback`)."""
    installation = Installation.of(where)
    params = StdioServerParameters(
        command=PY,
        args=mana_argv(installation.data_dir, "serve", "--stdio", *args)[1:],
        env=installation.env(env),
        cwd=str(REPO),
    )
    with _append(installation.data_dir / "stdio.err") as errlog:
        async with Client(
            stdio_client(params, errlog=errlog), mode=mode, read_timeout_seconds=30, **options
        ) as client:
            yield client


async def raw_post(
    url: str, body: Mapping[str, Any], hdrs: Mapping[str, str] | None = None
) -> httpx.Response:
    """One raw JSON-RPC POST (no MCP client) to see HTTP statuses and headers."""
    base = dict(JSON_ACCEPT)
    async with httpx.AsyncClient(timeout=30.0) as http:
        return await http.post(url, json=body, headers={**base, **(hdrs or {})})


TOOLS_LIST = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
MODERN_HEADERS = {"mcp-protocol-version": "2026-07-28", "mcp-method": "tools/list"}


def modern_tools_list() -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/list",
        "params": {
            "_meta": {
                "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                "io.modelcontextprotocol/clientCapabilities": {},
            }
        },
    }


__all__ = [
    "BRAND_IMAGES",
    "BRAND_SLUG",
    "DEMO_EMAIL",
    "MODES",
    "PERSONAL_IMAGES",
    "Installation",
    "ServerProcess",
    "Where",
    "World",
    "http_client",
    "raw_post",
    "seed_world",
    "stdio_client_for",
]
