"""Two `mana serve --http` processes on one PostgreSQL database behind a plain round-robin proxy
(no stickiness: consecutive requests of one client alternate between the replicas).

Both protocol eras work through it with the Python `mcp` client and the TypeScript SDK; a
2025-11-25 session opened on one replica is served by the other (adopted from its database
row); another user cannot take it over on either; the per-user session cap counts the sessions
of every replica; a DELETE on one replica ends the session on the other; a tool-set change
found on one process reaches a session whose GET stream is held by another (LISTEN/NOTIFY),
and a space switch notifies exactly once however the requests alternate."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import mcp_types as types
import pytest

from mana_cli.runtime import open_runtime
from mana_http.testing import McpTestServer
from tests.mcp.support import (
    BOB_EMAIL,
    BRAND_SLUG,
    DEMO_EMAIL,
    JSON_ACCEPT,
    REPO,
    TOOLS_LIST,
    Installation,
    ServerProcess,
    World,
    free_port,
    http_client,
    mana_argv,
    seed_world,
)
from tool_registry.modules.me import IMAGE_GENERATOR, GeneratedImage, ReferenceImage
from tool_registry.testing.plugin import new_database
from tool_registry.testing.proxy import RoundRobinProxy

LEGACY = "2025-11-25"
MODERN = "2026-07-28"
CAROL_EMAIL = "carol@mana.test"
PER_USER = 2
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 0,
    "method": "initialize",
    "params": {
        "protocolVersion": LEGACY,
        "capabilities": {},
        "clientInfo": {"name": "replicas-test", "version": "0"},
    },
}
INITIALIZED = {"jsonrpc": "2.0", "method": "notifications/initialized"}
# Only a failure guard: a notification that never comes fails the test after this long.
ARRIVAL_GUARD_SECONDS = 20.0
CALLS = 6
# A tool only the shared rate-limit test calls, with a small per-user limit on both replicas.
LIMITED_TOOL = "habits.create"
TOOL_LIMIT = 3


class Replicas:
    def __init__(self, world: World, carol_id: str, a: ServerProcess, b: ServerProcess) -> None:
        self.world = world
        self.a = a
        self.b = b
        self.demo = world.token(world.demo_id, email=DEMO_EMAIL)
        self.bob = world.token(world.bob_id, email=BOB_EMAIL)
        self.carol = world.token(carol_id, email=CAROL_EMAIL)

    @property
    def installation(self) -> Installation:
        return self.world.installation

    def proxy(self) -> RoundRobinProxy:
        return RoundRobinProxy([("127.0.0.1", self.a.port), ("127.0.0.1", self.b.port)])


async def _add_carol(installation: Installation) -> str:
    async with open_runtime(installation.settings()) as rt:
        carol = await rt.accounts.create_user(CAROL_EMAIL, name="Carol", password="carol-pw-123")
        return carol.id


@pytest.fixture(scope="module")
def replicas(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Replicas]:
    data_dir = tmp_path_factory.mktemp("replicas")
    with new_database(request, "postgres", data_dir / "mana.db") as url:
        world = seed_world(Installation(data_dir, url))
        carol_id = asyncio.run(_add_carol(world.installation))
        env = {
            "MANA_SESSIONS_PER_USER": str(PER_USER),
            "MANA_RATE_LIMITS": f"{LIMITED_TOOL}={TOOL_LIMIT}",
        }
        a = ServerProcess(world.installation, env=env)
        b = ServerProcess(world.installation, env=env)
        try:
            a.wait_ready()
            b.wait_ready()
            yield Replicas(world, carol_id, a, b)
        finally:
            a.stop()
            b.stop()


# -- raw HTTP helpers ------------------------------------------------------------------------------


def _auth(token: str, *extra: tuple[str, str]) -> list[tuple[str, str]]:
    return [*JSON_ACCEPT.items(), ("authorization", f"Bearer {token}"), *extra]


def _in_session(token: str, session_id: str) -> list[tuple[str, str]]:
    return _auth(token, ("mcp-session-id", session_id), ("mcp-protocol-version", LEGACY))


async def _post(url: str, body: Any, hdrs: list[tuple[str, str]]) -> httpx.Response:
    async with httpx.AsyncClient(timeout=30.0) as http:
        return await http.post(url, content=json.dumps(body), headers=hdrs)


async def _open(server: ServerProcess, token: str) -> httpx.Response:
    return await _post(server.mcp_url, INITIALIZE, _auth(token))


async def _session(server: ServerProcess, token: str) -> str:
    opened = await _open(server, token)
    assert opened.status_code == 200, opened.text
    session_id = str(opened.headers["mcp-session-id"])
    done = await _post(server.mcp_url, INITIALIZED, _in_session(token, session_id))
    assert done.status_code == 202, done.text
    return session_id


async def _tools_list(server: ServerProcess, token: str, session_id: str) -> httpx.Response:
    return await _post(server.mcp_url, TOOLS_LIST, _in_session(token, session_id))


async def _delete(server: ServerProcess, token: str, session_id: str) -> httpx.Response:
    async with httpx.AsyncClient(timeout=30.0) as http:
        return await http.delete(server.mcp_url, headers=_in_session(token, session_id))


async def _get_status(server: ServerProcess, token: str, session_id: str) -> int:
    hdrs = [*_in_session(token, session_id), ("accept", "text/event-stream")]
    async with (
        httpx.AsyncClient(timeout=30.0) as http,
        http.stream("GET", server.mcp_url, headers=hdrs) as resp,
    ):
        return resp.status_code


# -- both eras through the proxy ---------------------------------------------------------------


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_python_client_both_eras_through_round_robin(replicas: Replicas, mode: Any) -> None:
    async with replicas.proxy() as proxy:
        async with http_client(proxy.url + "/mcp", replicas.demo, mode=mode) as (client, _):
            names = {t.name for t in (await client.list_tools()).tools}
            assert {"notes.create", "notes.search", "habits.list"} <= names
            for i in range(CALLS):
                title = f"py {mode} note {i}"
                created = await client.call_tool("notes.create", {"title": title, "body": "x"})
                assert created.is_error is False, created.content
                found = await client.call_tool("notes.search", {"query": title})
                assert found.structured_content is not None
                assert [n["title"] for n in found.structured_content["notes"]] == [title]
            assert client.protocol_version == (MODERN if mode == "auto" else LEGACY)
        # consecutive requests alternated: each replica served a good share of this client's
        assert proxy.served_by(0) >= CALLS and proxy.served_by(1) >= CALLS


async def test_a_users_rate_limit_is_shared_by_both_replicas(replicas: Replicas) -> None:
    """Calls alternate replicas, yet the user gets TOOL_LIMIT calls in all, not per replica."""
    async with replicas.proxy() as proxy:
        async with http_client(proxy.url + "/mcp", replicas.bob, mode="legacy") as (client, _):
            results = [
                await client.call_tool(LIMITED_TOOL, {"name": f"replica habit {i}"})
                for i in range(TOOL_LIMIT + 2)
            ]
        assert proxy.served_by(0) >= 2 and proxy.served_by(1) >= 2
    assert [r.is_error for r in results] == [False] * TOOL_LIMIT + [True, True]
    for refused in results[TOOL_LIMIT:]:
        assert refused.meta is not None
        assert refused.meta["mana/error"]["reason"] == "rate-limit-exceeded"


async def test_a_session_opened_on_one_replica_is_served_by_the_other(replicas: Replicas) -> None:
    a, b = replicas.a, replicas.b
    session_id = await _session(a, replicas.demo)
    for server in (b, a, b):
        listed = await _tools_list(server, replicas.demo, session_id)
        assert listed.status_code == 200, listed.text
        assert '"tools"' in listed.text
    ended = await _delete(b, replicas.demo, session_id)
    assert ended.status_code < 300, ended.text
    # ended for every replica
    assert (await _tools_list(a, replicas.demo, session_id)).status_code == 404
    assert (await _tools_list(b, replicas.demo, session_id)).status_code == 404


async def test_a_session_cannot_be_taken_over_from_the_other_replica(replicas: Replicas) -> None:
    a, b = replicas.a, replicas.b
    session_id = await _session(a, replicas.demo)
    try:
        for server in (b, a):
            stolen = await _tools_list(server, replicas.bob, session_id)
            assert stolen.status_code == 403, stolen.text
            assert stolen.json()["error"]["data"]["reason"] == "session-owner-mismatch"
            assert await _get_status(server, replicas.bob, session_id) == 403
            ended = await _delete(server, replicas.bob, session_id)
            assert ended.status_code == 403
        # still demo's, on both replicas
        assert (await _tools_list(b, replicas.demo, session_id)).status_code == 200
        assert (await _tools_list(a, replicas.demo, session_id)).status_code == 200
        unknown = await _tools_list(b, replicas.demo, "0" * 32)
        assert unknown.status_code == 404
    finally:
        await _delete(a, replicas.demo, session_id)


async def test_the_per_user_session_cap_counts_every_replica(replicas: Replicas) -> None:
    a, b = replicas.a, replicas.b
    first = await _session(a, replicas.carol)
    second = await _session(b, replicas.carol)
    for server in (a, b):
        refused = await _open(server, replicas.carol)
        assert refused.status_code == 429, refused.text
        assert refused.json()["error"]["data"]["reason"] == "too-many-sessions"
        assert "mcp-session-id" not in refused.headers
    # ending one (opened on A) through B makes room on A
    assert (await _delete(b, replicas.carol, first)).status_code < 300
    third = await _session(a, replicas.carol)
    for session_id in (second, third):
        assert (await _delete(a, replicas.carol, session_id)).status_code < 300


# -- notifications/tools/list_changed ------------------------------------------------------------


class _Changes:
    def __init__(self) -> None:
        self.count = 0
        self.arrived = asyncio.Event()

    async def on_message(self, message: Any) -> None:
        # notifications are delivered on their own task: wait for them, don't race them
        if isinstance(message, types.ToolListChangedNotification) or (
            "tools/list_changed" in repr(message)
        ):
            self.count += 1
            self.arrived.set()

    async def next(self) -> None:
        await asyncio.wait_for(self.arrived.wait(), ARRIVAL_GUARD_SECONDS)
        self.arrived.clear()


async def test_a_space_switch_notifies_once_whichever_replica_serves(replicas: Replicas) -> None:
    changes = _Changes()
    async with (
        replicas.proxy() as proxy,
        http_client(
            proxy.url + "/mcp", replicas.demo, mode="legacy", message_handler=changes.on_message
        ) as (client, http),
    ):
        await client.list_tools()
        await client.call_tool("spaces.list", {})
        http.headers["X-Mana-Space"] = BRAND_SLUG  # personal → brand: fewer tools
        await client.call_tool("spaces.list", {})
        await changes.next()
        for _ in range(3):  # same space on both replicas: nothing new
            await client.call_tool("spaces.list", {})
        assert changes.count == 1
        del http.headers["X-Mana-Space"]  # back to personal: more tools again
        await client.call_tool("spaces.list", {})
        await changes.next()
        for _ in range(3):
            await client.call_tool("spaces.list", {})
        assert changes.count == 2
    assert proxy.served_by(0) > 0 and proxy.served_by(1) > 0


class _FakeGenerator:
    async def generate(
        self, prompt: str, references: list[ReferenceImage], size: str
    ) -> GeneratedImage:
        return GeneratedImage(url="https://img.example/1.png", width=1024, height=1024)


@asynccontextmanager
async def _another_replica(installation: Installation, keys: Path) -> AsyncIterator[McpTestServer]:
    """A third replica in this test's process, on the same database (its own pipeline, pool
    and LISTEN connection), whose backends the test can change."""
    async with open_runtime(installation.settings()) as rt, McpTestServer(rt.pipeline, keys) as srv:
        yield srv


async def test_list_changed_found_on_one_process_reaches_a_stream_on_another(
    replicas: Replicas, tmp_path: Path
) -> None:
    changes = _Changes()
    async with (
        http_client(
            replicas.a.mcp_url, replicas.demo, mode="legacy", message_handler=changes.on_message
        ) as (client, _),
        _another_replica(replicas.installation, tmp_path) as other,
    ):
        before = {t.name for t in (await client.list_tools()).tools}
        assert "me.generateWithReference" not in before
        # the client opens its GET stream (on A) in the background: wait until its row says so
        for _ in range(400):
            rows = await replicas.installation.query(
                "SELECT listener FROM mcp_sessions WHERE user_id = ? AND listener IS NOT NULL",
                replicas.world.demo_id,
            )
            if rows:
                break
            await asyncio.sleep(0.05)
        assert rows, "the client's GET stream never opened"
        assert await other.app.backends_changed() == 0  # same tools as A sees: nothing to say
        other.pipeline.backends.set(IMAGE_GENERATOR, _FakeGenerator())
        assert await other.app.backends_changed() == 1
        await changes.next()  # pushed by A, on the GET stream it holds
        assert changes.count == 1


async def _listeners(installation: Installation) -> set[int]:
    """The server processes of the listening connections on the test's database."""
    rows = await installation.query(
        "SELECT pid FROM pg_stat_activity "
        "WHERE application_name = 'mana-listen' AND datname = current_database()"
    )
    return {int(r[0]) for r in rows}


async def _three_listeners(installation: Installation, *, besides: set[int]) -> set[int]:
    """Wait (bounded) until A, B and the in-process replica each listen on a connection that
    is not one of `besides`."""
    found: set[int] = set()
    for _ in range(400):
        found = await _listeners(installation) - besides
        if len(found) == 3:
            break
        await asyncio.sleep(0.05)
    assert len(found) == 3, found
    return found


async def test_the_session_channel_reconnects_after_losing_its_connection(
    replicas: Replicas, tmp_path: Path
) -> None:
    changes = _Changes()
    async with (
        http_client(
            replicas.a.mcp_url, replicas.demo, mode="legacy", message_handler=changes.on_message
        ) as (client, _),
        _another_replica(replicas.installation, tmp_path) as other,
    ):
        await client.list_tools()
        before = await _three_listeners(replicas.installation, besides=set())
        # every listening connection is cut, as by a server restart or a network failure
        await replicas.installation.query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = 'mana-listen' AND datname = current_database()"
        )
        await _three_listeners(replicas.installation, besides=before)  # all reconnected
        other.pipeline.backends.set(IMAGE_GENERATOR, _FakeGenerator())
        assert await other.app.backends_changed() == 1
        await changes.next()  # A listens again and pushed it
        assert changes.count == 1


# -- `mana serve --http --workers N` ------------------------------------------------------------


class _Workers:
    """`mana serve --http --workers 2` on the replicas' database; always stopped."""

    def __init__(self, installation: Installation, data_dir: Path) -> None:
        self.port = free_port()
        self.mcp_url = f"http://127.0.0.1:{self.port}/mcp"
        self.stderr_path = data_dir / "workers.err"
        self._stderr = open(self.stderr_path, "wb")  # noqa: SIM115 - closed in stop()
        argv = ["serve", "--http", "--port", str(self.port), "--workers", "2"]
        self.proc = subprocess.Popen(
            mana_argv(installation.data_dir, *argv),
            cwd=REPO,
            env=installation.env(),
            stdout=subprocess.PIPE,
            stderr=self._stderr,
        )

    def wait_listening(self) -> None:
        assert self.proc.stdout is not None
        if not self.proc.stdout.readline():  # the parent prints once every worker serves
            raise RuntimeError(self.stderr_path.read_text(errors="replace")[-3000:])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.communicate(timeout=10)
        self._stderr.close()


async def test_a_session_is_served_by_every_worker_of_one_port(
    replicas: Replicas, tmp_path: Path
) -> None:
    """The kernel hands each new connection to any worker: one session's requests reach both,
    and all of them are served."""
    workers = _Workers(replicas.installation, tmp_path)
    try:
        await asyncio.to_thread(workers.wait_listening)
        opened = await _post(workers.mcp_url, INITIALIZE, _auth(replicas.demo))
        assert opened.status_code == 200, opened.text
        session_id = str(opened.headers["mcp-session-id"])
        hdrs = [*_in_session(replicas.demo, session_id), ("connection", "close")]
        pids: set[str] = set()
        for _ in range(2000):  # until both workers served it (bounded)
            listed = await _post(workers.mcp_url, TOOLS_LIST, hdrs)
            assert listed.status_code == 200, listed.text
            assert "notes.create" in listed.text
            pids.add(listed.headers["mana-worker"])
            if len(pids) == 2:
                break
        assert len(pids) == 2
        async with httpx.AsyncClient(timeout=30.0) as http:
            ended = await http.delete(workers.mcp_url, headers=hdrs)
        assert ended.status_code < 300
        for _ in range(4):  # ended for every worker
            assert (await _post(workers.mcp_url, TOOLS_LIST, hdrs)).status_code == 404
    finally:
        await asyncio.to_thread(workers.stop)


# -- the TypeScript SDK --------------------------------------------------------------------------


def _ts_client_entry() -> Path | None:
    """`@modelcontextprotocol/client` as `scripts/inspector-smoke.sh` installs it (with the
    Inspector), or None."""
    cache = os.environ.get("MANA_INSPECTOR_DIR") or str(
        Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
        / "mana"
        / "inspector-2.12.0"
    )
    entry = Path(cache) / "node_modules/@modelcontextprotocol/client/dist/index.mjs"
    return entry if entry.is_file() else None


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_typescript_sdk_through_round_robin(replicas: Replicas, mode: str) -> None:
    node, entry = shutil.which("node"), _ts_client_entry()
    if node is None or entry is None:
        pytest.skip("node and @modelcontextprotocol/client (scripts/inspector-smoke.sh) needed")
    async with replicas.proxy() as proxy:
        argv = [
            node,
            str(REPO / "tests/replicas/ts_client.mjs"),
            str(entry),
            proxy.url + "/mcp",
            replicas.demo,
            mode,
            str(CALLS),
        ]
        proc = await asyncio.create_subprocess_exec(
            *argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, err.decode(errors="replace")[-3000:]
    report = json.loads(out.decode().strip().splitlines()[-1])
    assert "notes.create" in report["tools"]
    assert len(report["results"]) == CALLS
    for i, result in enumerate(report["results"]):
        assert result == {"created": True, "found": [f"ts {mode} note {i}"]}
    if mode == "legacy":
        assert report["protocol"] == LEGACY and report["sessionId"]
    else:
        assert report["protocol"] == MODERN and not report["sessionId"]
    assert proxy.served_by(0) >= CALLS and proxy.served_by(1) >= CALLS
