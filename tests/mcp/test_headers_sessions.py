"""Headers and sessions over raw HTTP against a real `mana serve --http` process: a repeated
identity/session header is refused before anything reads it (so the value checked is the value
used), a JSON-RPC id already in flight in a session is refused for the second request, every
session is counted against its user's cap (recent sessions are never evicted: 429 instead),
`DELETE` ends one's own session whatever the space header says, and CORS preflights allow the
2026-07-28 headers. In-process (where a test must hold a call, or run two servers on one
database on both backends): ids of handlers still running stay taken, and sessions registered
in the database are shared by every server on it (served, refused to other users, capped,
ended and expired alike) and answer 503 while the registry cannot be read."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from agent_loop.testing import Probe, probe_kit
from mana_cli.config import Settings
from mana_cli.runtime import open_runtime
from mana_http import HttpConfig
from mana_http.testing import McpTestServer
from tool_registry.errors import ValidationFailed
from tool_registry.store.accounts import User
from tool_registry.store.postgres import DatabaseUnavailable
from tool_registry.testing import ToolKit

from .support import (
    BOB_EMAIL,
    DEMO_EMAIL,
    JSON_ACCEPT,
    TOOLS_LIST,
    ServerProcess,
    World,
    modern_tools_list,
    seed_world,
    settings_for,
)

CAROL_EMAIL = "carol@mana.test"
DAN_EMAIL = "dan@mana.test"
LEGACY = "2025-11-25"
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 0,
    "method": "initialize",
    "params": {
        "protocolVersion": LEGACY,
        "capabilities": {},
        "clientInfo": {"name": "raw-test", "version": "0"},
    },
}
INITIALIZED = {"jsonrpc": "2.0", "method": "notifications/initialized"}
Headers = Sequence[tuple[str, str]]
# Only a failure guard: an answer that never comes fails the test after this long.
ANSWER_GUARD_SECONDS = 30.0


class People:
    """Bearer tokens of the seeded users (carol and dan are used by the cap tests only)."""

    def __init__(self, world: World, carol_id: str, dan_id: str) -> None:
        self.world = world
        self.demo = world.token(world.demo_id, email=DEMO_EMAIL)
        self.bob = world.token(world.bob_id, email=BOB_EMAIL)
        self.carol = world.token(carol_id, email=CAROL_EMAIL)
        self.dan = world.token(dan_id, email=DAN_EMAIL)


async def _add_users(data_dir: Path) -> tuple[str, str]:
    async with open_runtime(settings_for(data_dir)) as rt:
        carol = await rt.accounts.create_user(CAROL_EMAIL, name="Carol", password="carol-pw-123")
        dan = await rt.accounts.create_user(DAN_EMAIL, name="Dan", password="dan-pw-1234")
        return carol.id, dan.id


@pytest.fixture(scope="module")
def people(tmp_path_factory: pytest.TempPathFactory) -> People:
    world = seed_world(tmp_path_factory.mktemp("mcp-headers"))
    carol_id, dan_id = asyncio.run(_add_users(world.data_dir))
    return People(world, carol_id, dan_id)


def _serve(data_dir: Path, env: dict[str, str]) -> Iterator[ServerProcess]:
    with ServerProcess(data_dir, env=env) as proc:
        yield proc


@pytest.fixture(scope="module")
def server(people: People) -> Iterator[ServerProcess]:
    """Two sessions per user, each protected from eviction for the default 10 minutes."""
    yield from _serve(people.world.data_dir, {"MANA_SESSIONS_PER_USER": "2"})


def _auth(token: str, *extra: tuple[str, str]) -> list[tuple[str, str]]:
    return [*JSON_ACCEPT.items(), ("authorization", f"Bearer {token}"), *extra]


def _in_session(token: str, session_id: str, *extra: tuple[str, str]) -> list[tuple[str, str]]:
    return _auth(token, ("mcp-session-id", session_id), ("mcp-protocol-version", LEGACY), *extra)


async def _post(url: str, body: Any, hdrs: Headers) -> httpx.Response:
    async with httpx.AsyncClient(timeout=30.0) as http:
        return await http.post(url, content=json.dumps(body), headers=list(hdrs))


async def _open(server: ServerProcess, token: str, *extra: tuple[str, str]) -> httpx.Response:
    return await _post(server.mcp_url, INITIALIZE, _auth(token, *extra))


async def _session(server: ServerProcess, token: str) -> str:
    """A handshake-era session, initialized like a real client does it."""
    resp = await _open(server, token)
    assert resp.status_code == 200, resp.text
    session_id = resp.headers["mcp-session-id"]
    done = await _post(server.mcp_url, INITIALIZED, _in_session(token, session_id))
    assert done.status_code == 202, done.text
    return str(session_id)


@asynccontextmanager
async def _opened(server: ServerProcess, token: str) -> AsyncIterator[str]:
    """A session that is ended (DELETE) afterwards, so the user's cap is not used up."""
    session_id = await _session(server, token)
    try:
        yield session_id
    finally:
        async with httpx.AsyncClient(timeout=30.0) as http:
            await http.delete(server.mcp_url, headers=_in_session(token, session_id))


async def _tools_list(server: ServerProcess, token: str, session_id: str) -> int:
    resp = await _post(server.mcp_url, TOOLS_LIST, _in_session(token, session_id))
    return resp.status_code


# -- one copy of each identity/session header ---------------------------------------------------


def _request_with(name: str, people: People, session_id: str) -> tuple[Any, list[tuple[str, str]]]:
    """A request that is valid with one copy of `name`, and its headers (each exactly once)."""
    if name in ("Mcp-Method", "Mcp-Name"):
        body = {
            **modern_tools_list(),
            "method": "tools/call",
            "params": {**modern_tools_list()["params"], "name": "spaces.list", "arguments": {}},
        }
        hdrs = _auth(
            people.demo,
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/call"),
            ("mcp-name", "spaces.list"),
        )
        return body, hdrs
    return TOOLS_LIST, _in_session(people.demo, session_id, ("x-mana-space", people.world.brand_id))


@pytest.mark.parametrize(
    "name",
    [
        "Mcp-Session-Id",
        "MCP-Protocol-Version",
        "Authorization",
        "X-Mana-Space",
        "Mcp-Method",
        "Mcp-Name",
    ],
)
async def test_a_repeated_header_is_refused_naming_it(
    server: ServerProcess, people: People, name: str
) -> None:
    async with _opened(server, people.demo) as session_id:
        body, hdrs = _request_with(name, people, session_id)
        single = await _post(server.mcp_url, body, hdrs)
        assert single.status_code == 200, single.text
        (value,) = [v for k, v in hdrs if k.lower() == name.lower()]
        for copy in (name, name.upper()):  # identical copies, and names differing only in case
            doubled = await _post(server.mcp_url, body, [*hdrs, (copy, value)])
            assert doubled.status_code == 400, doubled.text
            error = doubled.json()["error"]
            assert error["data"] == {"reason": "duplicate-header", "header": name}
            assert name in error["message"]


async def test_another_users_session_id_sent_first_cannot_be_used(
    server: ServerProcess, people: People
) -> None:
    """Bob sends demo's session id first and his own second: today's readers disagree on which
    one counts (the guard the last, the SDK the first), so the request must not be served."""
    async with _opened(server, people.demo) as alice_sid, _opened(server, people.bob) as bob_sid:
        await _hijack(server, people, alice_sid, bob_sid)


async def _hijack(server: ServerProcess, people: People, alice_sid: str, bob_sid: str) -> None:
    hijack = [("mcp-session-id", alice_sid), *_in_session(people.bob, bob_sid)]
    answers: list[tuple[int, bytes]] = []
    async with httpx.AsyncClient(timeout=30.0) as http:
        # listening on demo's GET stream (only its head is read: a stream does not end)
        get_headers = [*hijack, ("accept", "text/event-stream")]
        async with http.stream("GET", server.mcp_url, headers=get_headers) as listened:
            head = listened.status_code
            answers.append((head, await listened.aread() if head != 200 else b""))
        called = await _post(server.mcp_url, TOOLS_LIST, hijack)
        answers.append((called.status_code, called.content))
        ended = await http.delete(server.mcp_url, headers=hijack)
        answers.append((ended.status_code, ended.content))
    for status, body in answers:
        assert status == 400, body
        assert json.loads(body)["error"]["data"]["header"] == "Mcp-Session-Id"
    # with one copy, demo's id is refused for bob outright
    async with httpx.AsyncClient(timeout=30.0) as http:
        stolen = await http.delete(server.mcp_url, headers=_in_session(people.bob, alice_sid))
    assert stolen.status_code == 403
    assert stolen.json()["error"]["data"]["reason"] == "session-owner-mismatch"
    assert await _tools_list(server, people.demo, alice_sid) == 200
    assert await _tools_list(server, people.bob, bob_sid) == 200


async def test_conflicting_protocol_versions_open_no_session(
    server: ServerProcess, people: People
) -> None:
    resp = await _open(
        server,
        people.dan,
        ("mcp-protocol-version", LEGACY),
        ("mcp-protocol-version", "2026-07-28"),
    )
    assert resp.status_code == 400 and "mcp-session-id" not in resp.headers
    # dan's cap (2) is untouched: two sessions still open
    assert {(await _open(server, people.dan)).status_code for _ in range(2)} == {200}


# -- one answer per request id ------------------------------------------------------------------


async def test_a_request_id_in_flight_is_refused_for_the_second_request(tmp_path: Path) -> None:
    """In-process, with a call held by a tool that blocks until released (every call writes, if
    only its rate-limit entry, so a held database lock would hold the second request too)."""
    probe = Probe()
    async with (
        probe_kit(tmp_path / "mana.db", probe) as kit,
        McpTestServer(kit.pipeline, tmp_path) as srv,
    ):
        ann = await kit.user()
        async with srv.http(ann) as http:
            opened = await http.post("/mcp", json=INITIALIZE, headers=JSON_ACCEPT)
            sid = opened.headers["mcp-session-id"]
            hdrs = {**JSON_ACCEPT, "mcp-session-id": sid, "mcp-protocol-version": LEGACY}
            call = {
                "jsonrpc": "2.0",
                "id": 7,
                "method": "tools/call",
                "params": {"name": "probe.hold", "arguments": {"key": "first"}},
            }
            second = {**call, "params": {"name": "probe.count", "arguments": {"key": "second"}}}
            async with http.stream("POST", "/mcp", json=call, headers=hdrs) as first:
                # the response has started, so the server holds id 7 for this request
                assert first.status_code == 200
                await asyncio.wait_for(probe.blocked.wait(), ANSWER_GUARD_SECONDS)
                same = await http.post("/mcp", json=second, headers=hdrs)
                as_text = await http.post("/mcp", json={**second, "id": "7"}, headers=hdrs)
                batch = await http.post("/mcp", json=[second], headers=hdrs)
                other = await http.post("/mcp", json={**second, "id": 8}, headers=hdrs)
                for resp, rid in ((same, 7), (as_text, "7"), (batch, 7)):
                    assert resp.status_code == 409, resp.text
                    body = resp.json()
                    assert body["id"] == rid
                    assert body["error"]["code"] == -32600
                    assert body["error"]["data"]["reason"] == "request-id-in-flight"
                    message = body["error"]["message"]
                    assert "request id 7 is already in flight in this session" in message
                assert other.status_code == 200  # another id is served meanwhile
                probe.block.set()  # now the held call can complete
                answer = await asyncio.wait_for(_answer(first, 7), ANSWER_GUARD_SECONDS)
            result = answer["result"]
            assert result["isError"] is False, result
            assert result["structuredContent"]["key"] == "first"
            # id 7 is free again once answered
            again = await http.post("/mcp", json={**second, "id": 7}, headers=hdrs)
            assert again.status_code == 200


async def _answer(resp: Any, request_id: int) -> dict[str, Any]:
    """The first JSON-RPC response on an SSE stream; it must answer `request_id`."""
    async for line in resp.aiter_lines():
        if line.startswith("data:"):
            message: dict[str, Any] = json.loads(line[5:])
            if "result" in message or "error" in message:
                assert message["id"] == request_id, message
                return message
    raise AssertionError("the stream ended without an answer")


# -- DELETE ends one's own session --------------------------------------------------------------


async def test_delete_ends_own_session_whatever_the_space_header(
    server: ServerProcess, people: People
) -> None:
    world = people.world
    # no such space, a space bob is not a member of, a header the guard would refuse as too long
    for space in ("no-such-space", world.brand_id, "x" * 500):
        sid = await _session(server, people.bob)
        async with httpx.AsyncClient(timeout=30.0) as http:
            ended = await http.delete(
                server.mcp_url, headers=_in_session(people.bob, sid, ("x-mana-space", space))
            )
        assert ended.status_code < 300, ended.text
        assert await _tools_list(server, people.bob, sid) == 404
    # a request that is not a DELETE still gets the space checked
    sid = await _session(server, people.demo)
    refused = await _post(
        server.mcp_url,
        TOOLS_LIST,
        _in_session(people.demo, sid, ("x-mana-space", world.bob_space_id)),
    )
    assert refused.status_code == 403
    async with httpx.AsyncClient(timeout=30.0) as http:
        ended = await http.delete(
            server.mcp_url,
            headers=_in_session(people.demo, sid, ("x-mana-space", world.bob_space_id)),
        )
    assert ended.status_code < 300


# -- the per-user cap ---------------------------------------------------------------------------


async def test_recent_sessions_are_not_evicted_a_new_one_gets_429(
    server: ServerProcess, people: People
) -> None:
    # both ways the SDK opens a session count: no version header, and a handshake version
    plain = await _open(server, people.carol)
    versioned = await _open(server, people.carol, ("mcp-protocol-version", "2025-06-18"))
    assert plain.status_code == versioned.status_code == 200
    first, second = plain.headers["mcp-session-id"], versioned.headers["mcp-session-id"]
    refused = await _open(server, people.carol)
    assert refused.status_code == 429, refused.text
    assert "mcp-session-id" not in refused.headers
    error = refused.json()["error"]
    assert error["data"]["reason"] == "too-many-sessions"
    assert "DELETE" in error["message"] and "600 s" in error["message"]
    assert 0 < int(refused.headers["retry-after"]) <= 600
    assert await _tools_list(server, people.carol, first) == 200  # not evicted
    assert await _tools_list(server, people.carol, second) == 200
    # other users are not affected; ending one of carol's makes room
    assert (await _open(server, people.bob)).status_code == 200
    async with httpx.AsyncClient(timeout=30.0) as http:
        ended = await http.delete(server.mcp_url, headers=_in_session(people.carol, first))
    assert ended.status_code < 300
    assert (await _open(server, people.carol)).status_code == 200


@pytest.fixture(scope="module")
def quick_server(people: People) -> Iterator[ServerProcess]:
    """Two sessions per user, protected for one second only."""
    yield from _serve(
        people.world.data_dir,
        {"MANA_SESSIONS_PER_USER": "2", "MANA_SESSION_PROTECT_SECONDS": "1"},
    )


async def test_an_old_unused_session_is_evicted_when_allowed(
    quick_server: ServerProcess, people: People
) -> None:
    oldest = await _session(quick_server, people.demo)
    newer = await _session(quick_server, people.demo)
    await asyncio.sleep(1.5)  # let the one-second protection of both lapse
    assert await _tools_list(quick_server, people.demo, newer) == 200  # used again: recent
    third = await _open(quick_server, people.demo)
    assert third.status_code == 200, third.text
    assert await _tools_list(quick_server, people.demo, oldest) == 404  # evicted
    assert await _tools_list(quick_server, people.demo, newer) == 200


def test_protect_seconds_setting() -> None:
    s = Settings.load({}, {"MANA_SESSION_PROTECT_SECONDS": "30"})
    assert s.session_protect_seconds == 30
    assert Settings.load({}, {}).session_protect_seconds == 600
    for bad in ("-1", "soon"):
        with pytest.raises(ValidationFailed, match="MANA_SESSION_PROTECT_SECONDS"):
            Settings.load({}, {"MANA_SESSION_PROTECT_SECONDS": bad})


# -- browsers -----------------------------------------------------------------------------------


async def test_cors_preflight_allows_modern_headers_and_exposes_the_session_id(
    server: ServerProcess, people: People
) -> None:
    origin = "http://localhost:6274"
    async with httpx.AsyncClient(timeout=30.0) as http:
        pre = await http.options(
            server.mcp_url,
            headers={
                "origin": origin,
                "access-control-request-method": "POST",
                "access-control-request-headers": "mcp-method, mcp-name, mcp-protocol-version",
            },
        )
    assert pre.status_code == 204
    allowed = {h.strip().lower() for h in pre.headers["access-control-allow-headers"].split(",")}
    assert {"mcp-method", "mcp-name", "mcp-protocol-version", "mcp-session-id"} <= allowed
    assert pre.headers["access-control-allow-origin"] == origin
    opened = await _post(
        server.mcp_url,
        modern_tools_list(),
        _auth(
            people.bob,
            ("origin", origin),
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/list"),
        ),
    )
    assert opened.status_code == 200, opened.text
    exposed = {
        h.strip().lower() for h in opened.headers["access-control-expose-headers"].split(",")
    }
    assert "mcp-session-id" in exposed


async def test_the_id_of_a_request_whose_client_left_stays_taken_until_its_handler_ends(
    tmp_path: Path,
) -> None:
    """The handler of a POST whose client left keeps running, and its answer would go to the
    next POST with the same id: that id is refused until the handler ends. In-process, so the
    test can see the server drop the POST before it asks again."""
    probe = Probe()
    async with (
        probe_kit(tmp_path / "mana.db", probe) as kit,
        McpTestServer(kit.pipeline, tmp_path) as srv,
    ):
        ann = await kit.user()
        async with srv.http(ann) as http:
            opened = await http.post("/mcp", json=INITIALIZE, headers=JSON_ACCEPT)
            sid = opened.headers["mcp-session-id"]
            hdrs = {**JSON_ACCEPT, "mcp-session-id": sid, "mcp-protocol-version": LEGACY}
            (entry,) = srv.app.sessions.of_user(ann.id)
            hold = {
                "jsonrpc": "2.0",
                "id": 9,
                "method": "tools/call",
                "params": {"name": "probe.hold", "arguments": {"key": "left"}},
            }
            async with http.stream("POST", "/mcp", json=hold, headers=hdrs) as first:
                assert first.status_code == 200
                await asyncio.wait_for(probe.blocked.wait(), ANSWER_GUARD_SECONDS)
            # the client left; wait until the server has dropped that POST
            for _ in range(1000):
                if "9" not in entry.request_ids:
                    break
                await asyncio.sleep(0.01)
            assert "9" not in entry.request_ids and "9" in entry.running_ids
            count = {**hold, "params": {"name": "probe.count", "arguments": {"key": "next"}}}
            refused = await http.post("/mcp", json=count, headers=hdrs)
            assert refused.status_code == 409, refused.text
            assert refused.json()["error"]["data"]["reason"] == "request-id-in-flight"
            probe.block.set()
            for _ in range(1000):
                if not entry.running_ids:
                    break
                await asyncio.sleep(0.01)
            assert not entry.running_ids
            answered = await http.post("/mcp", json=count, headers=hdrs)
            assert answered.status_code == 200, answered.text
            (line,) = [x for x in answered.text.splitlines() if x.startswith("data:")]
            result = json.loads(line[5:])
            assert result["id"] == 9
            assert result["result"]["structuredContent"]["key"] == "next"  # its own answer


# -- two servers on one database ----------------------------------------------------------------


async def _raw_open(srv: McpTestServer, user: User) -> Any:
    async with srv.http(user) as http:
        return await http.post("/mcp", json=INITIALIZE, headers=JSON_ACCEPT)


async def _raw(srv: McpTestServer, user: User, sid: str, method: str = "POST") -> int:
    hdrs = {**JSON_ACCEPT, "mcp-session-id": sid, "mcp-protocol-version": LEGACY}
    async with srv.http(user) as http:
        if method == "DELETE":
            return int((await http.delete("/mcp", headers=hdrs)).status_code)
        return int((await http.post("/mcp", json=TOOLS_LIST, headers=hdrs)).status_code)


async def test_two_servers_on_one_database_share_sessions(
    mana_kit: ToolKit, tmp_path: Path
) -> None:
    """Two HTTP apps (two replicas) on one database, on both backends: a session opened on one
    is served by the other, refused to another user on both, counted against one cap, and
    ended for both by a DELETE on either."""
    config = HttpConfig(sessions_per_user=2)
    async with (
        McpTestServer(mana_kit.pipeline, tmp_path, config=config) as a,
        McpTestServer(mana_kit.pipeline, tmp_path, config=config) as b,
    ):
        ann, bob = await mana_kit.user(), await mana_kit.user()
        opened = await _raw_open(a, ann)
        assert opened.status_code == 200, opened.text
        sid = opened.headers["mcp-session-id"]
        assert a.app.sessions.get(sid) is not None and b.app.sessions.get(sid) is None
        assert await _raw(b, ann, sid) == 200  # b adopts it from its row
        assert b.app.manager.holds(sid)
        for srv in (a, b):
            assert await _raw(srv, bob, sid) == 403
            assert await _raw(srv, bob, sid, "DELETE") == 403
        assert (await _raw_open(b, ann)).status_code == 200  # ann's second session
        for srv in (a, b):
            refused = await _raw_open(srv, ann)
            assert refused.status_code == 429, refused.text
            assert refused.json()["error"]["data"]["reason"] == "too-many-sessions"
        assert (await _raw_open(a, bob)).status_code == 200  # other users are not affected
        assert await _raw(b, ann, sid, "DELETE") < 300
        assert await _raw(a, ann, sid) == 404  # ended for both
        assert await _raw(b, ann, sid) == 404
        assert (await _raw_open(a, ann)).status_code == 200  # room again


async def test_activity_on_one_server_keeps_a_session_alive_on_the_other(
    mana_kit: ToolKit, tmp_path: Path
) -> None:
    """Idle expiry counts every replica's activity: a session used only through `b` is not
    expired by `a`'s sweeper; once nobody uses it, it ends for both."""
    config = HttpConfig(session_idle_seconds=0.5, session_touch_seconds=0.2)
    async with (
        McpTestServer(mana_kit.pipeline, tmp_path, config=config) as a,
        McpTestServer(mana_kit.pipeline, tmp_path, config=config) as b,
    ):
        ann = await mana_kit.user()
        sid = (await _raw_open(a, ann)).headers["mcp-session-id"]
        # used through b for several idle periods (each sweep of a would have ended it)
        for _ in range(12):
            assert await _raw(b, ann, sid) == 200
            await asyncio.sleep(0.2)
        assert await a.app.sessions.lookup(sid) is not None
        assert await _raw(a, ann, sid) == 200
        for _ in range(200):  # bounded wait: the sweepers run every 0.2 s
            if await a.app.sessions.lookup(sid) is None:
                break
            await asyncio.sleep(0.05)
        assert await a.app.sessions.lookup(sid) is None
        assert await _raw(a, ann, sid) == 404
        assert await _raw(b, ann, sid) == 404


async def test_a_session_request_gets_503_while_the_registry_is_unreachable(
    mana_kit: ToolKit, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The session registry is the database's: when it cannot be read, a session request is
    refused with `unavailable` (retry), not served on a guess and not a crash."""
    async with McpTestServer(mana_kit.pipeline, tmp_path) as srv:
        ann = await mana_kit.user()
        sid = (await _raw_open(srv, ann)).headers["mcp-session-id"]

        async def unreachable(session_id: str) -> None:
            raise DatabaseUnavailable("the database at db.example:5432/mana is unavailable")

        monkeypatch.setattr(srv.app.sessions, "lookup", unreachable)
        hdrs = {**JSON_ACCEPT, "mcp-session-id": sid, "mcp-protocol-version": LEGACY}
        async with srv.http(ann) as http:
            refused = await http.post("/mcp", json=TOOLS_LIST, headers=hdrs)
        assert refused.status_code == 503, refused.text
        assert refused.headers["retry-after"] == "1"
        assert refused.json()["error"]["data"]["reason"] == "unavailable"
        monkeypatch.undo()
        assert await _raw(srv, ann, sid) == 200  # reachable again: the session is still there
