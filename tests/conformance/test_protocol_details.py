"""2026-07-28 details on the wire of a real `mana serve --http` (raw HTTP, no MCP client in
between): cacheable results say `cacheScope` and `ttlMs` (`mcp_adapter.catalog.CACHE_HINTS`),
every result carries `resultType`, lists come in one order on every call and replica, and what
`server/discover` (and, in the handshake era, `initialize`) advertises is exactly what answers."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from mcp_types import LOG_LEVEL_META_KEY

from mana_cli.demo import DEMO_EMAIL
from mcp_adapter.catalog import CACHE_HINTS, DISCOVER_TTL_MS, LIST_TTL_MS
from tests.mcp.support import JSON_ACCEPT, ServerProcess, World, seeded_world

MODERN = "2026-07-28"
HANDSHAKE = "2025-11-25"
METHOD_NOT_FOUND = -32601
FIXTURES = {"MANA_TEST_FIXTURES": "conformance"}
NAME_HEADER = {"tools/call": "name", "prompts/get": "name", "resources/read": "uri"}


def _messages(response: httpx.Response) -> list[dict[str, Any]]:
    """Every JSON-RPC message of a response, from a JSON body or an SSE stream, in order."""
    if response.headers.get("content-type", "").startswith("text/event-stream"):
        return [
            json.loads(line[5:])
            for line in response.text.splitlines()
            if line.startswith("data:") and line[5:].strip()
        ]
    body = response.json()
    assert isinstance(body, dict), body
    return [body]


def _payload(messages: list[dict[str, Any]], request_id: int) -> dict[str, Any]:
    """The JSON-RPC answer to `request_id` among `messages`."""
    for message in messages:
        if message.get("id") == request_id and "method" not in message:
            return message
    raise AssertionError(f"no answer to request {request_id}: {messages}")


class Wire:
    """Raw JSON-RPC over HTTP to one server as one user (the demo user's bearer token)."""

    def __init__(self, url: str, token: str) -> None:
        self.url = url
        self.token = token
        self.session_id = ""  # of the last response that carried one
        self.last_messages: list[dict[str, Any]] = []  # every message of the last response
        self._ids = iter(range(1, 1_000_000))

    def modern(
        self,
        method: str,
        params: Mapping[str, Any] | None = None,
        meta: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """One stateless 2026-07-28 request: the version and method headers, the `_meta`
        envelope (plus `meta`), and `Mcp-Name` for the methods that name something."""
        meta = {
            "io.modelcontextprotocol/protocolVersion": MODERN,
            "io.modelcontextprotocol/clientCapabilities": {},
            **(meta or {}),
        }
        body_params = {**(params or {}), "_meta": meta}
        headers = {"mcp-protocol-version": MODERN, "mcp-method": method}
        if method in NAME_HEADER:
            headers["mcp-name"] = str(body_params[NAME_HEADER[method]])
        return self.post(method, body_params, headers)

    def post(
        self, method: str, params: Mapping[str, Any] | None, headers: Mapping[str, str]
    ) -> dict[str, Any]:
        """One request (`params` None: a notification, whose answer is empty)."""
        body: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "params": dict(params or {})}
        request_id = None if params is None else next(self._ids)
        if request_id is not None:
            body["id"] = request_id
        response = httpx.post(
            self.url,
            json=body,
            headers={**JSON_ACCEPT, "authorization": f"Bearer {self.token}", **headers},
            timeout=30.0,
        )
        assert response.status_code < 500, (response.status_code, response.text)
        self.session_id = response.headers.get("mcp-session-id", self.session_id)
        self.last_messages = _messages(response) if request_id is not None else []
        return {} if request_id is None else _payload(self.last_messages, request_id)

    @contextmanager
    def session(self) -> Iterator[tuple[dict[str, Any], Callable[..., dict[str, Any]]]]:
        """A 2025-11-25 session: the `initialize` result and a function sending one request
        of that session; the session is ended (HTTP DELETE) afterwards."""
        hello = {
            "protocolVersion": HANDSHAKE,
            "capabilities": {},
            "clientInfo": {"name": "wire-test", "version": "1"},
        }
        init = self.post("initialize", hello, {})
        headers = {"mcp-protocol-version": HANDSHAKE, "mcp-session-id": self.session_id}
        self.post("notifications/initialized", None, headers)

        def send(method: str, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
            return self.post(method, params or {}, headers)

        try:
            yield init, send
        finally:
            auth = {"authorization": f"Bearer {self.token}"}
            httpx.delete(self.url, headers={**auth, **headers}, timeout=30.0)


@contextmanager
def replicas(
    request: pytest.FixtureRequest,
    backend: str,
    tmp_path: Path,
    count: int,
    env: Mapping[str, str] | None = None,
) -> Iterator[tuple[World, list[ServerProcess]]]:
    """`count` `mana serve --http` processes on one seeded database."""
    with seeded_world(request, backend, tmp_path) as world:
        servers = [ServerProcess(world.installation, env=env) for _ in range(count)]
        try:
            for server in servers:
                server.wait_ready()
            yield world, servers
        finally:
            for server in servers:
                server.terminate()


def _wire(world: World, server: ServerProcess) -> Wire:
    return Wire(server.mcp_url, world.token(world.demo_id, email=DEMO_EMAIL))


def _a_note_uri(wire: Wire) -> str:
    listed = wire.modern("resources/list")["result"]["resources"]
    return next(str(r["uri"]) for r in listed if str(r["uri"]).startswith("mana://notes/"))


def test_cacheable_results_carry_their_hints_and_every_result_a_result_type(
    request: pytest.FixtureRequest, database_backend: str, tmp_path: Path
) -> None:
    with replicas(request, database_backend, tmp_path, 1) as (world, (server,)):
        wire = _wire(world, server)
        note = _a_note_uri(wire)
        cacheable = {
            "tools/list": {},
            "prompts/list": {},
            "resources/templates/list": {},
            "resources/list": {},
            "resources/read": {"uri": note},
            "server/discover": {},
        }
        assert set(cacheable) == set(CACHE_HINTS)
        for method, params in cacheable.items():
            result = wire.modern(method, params)["result"]
            hint = CACHE_HINTS[method]  # type: ignore[index]
            assert (result["cacheScope"], result["ttlMs"]) == (hint.scope, hint.ttl_ms), method
            assert result["resultType"] == "complete", method
        lists = [wire.modern(m)["result"] for m in ("tools/list", "prompts/list")]
        assert all((r["cacheScope"], r["ttlMs"]) == ("private", LIST_TTL_MS) for r in lists)
        discover = wire.modern("server/discover")["result"]
        assert (discover["cacheScope"], discover["ttlMs"]) == ("public", DISCOVER_TTL_MS)
        others = [
            wire.modern("tools/call", {"name": "habits.list", "arguments": {}}),
            wire.modern("prompts/get", {"name": "plan-my-day", "arguments": {}}),
            wire.modern(
                "completion/complete",
                {
                    "ref": {"type": "ref/resource", "uri": "mana://notes/{id}"},
                    "argument": {"name": "id", "value": ""},
                },
            ),
        ]
        for answer in others:
            assert "result" in answer, answer
            assert answer["result"]["resultType"] == "complete", answer
            assert "cacheScope" not in answer["result"]


def test_lists_come_in_one_order_on_every_call_and_replica(
    request: pytest.FixtureRequest, database_backend: str, tmp_path: Path
) -> None:
    """Tools in registry-name order, prompts by name, templates by their spec's name, resources
    by URI: the same on two replicas and on repeated calls."""
    with replicas(request, database_backend, tmp_path, 2) as (world, servers):
        wires = [_wire(world, s) for s in servers]

        def lists(wire: Wire) -> dict[str, list[str]]:
            return {
                "tools": [t["name"] for t in wire.modern("tools/list")["result"]["tools"]],
                "prompts": [p["name"] for p in wire.modern("prompts/list")["result"]["prompts"]],
                "templates": [
                    t["name"]
                    for t in wire.modern("resources/templates/list")["result"]["resourceTemplates"]
                ],
                "resources": [
                    r["uri"] for r in wire.modern("resources/list")["result"]["resources"]
                ],
            }

        seen = [lists(w) for w in (*wires, *wires)]
        assert all(s == seen[0] for s in seen)
        first = seen[0]
        assert len(first["tools"]) > 10 and len(first["resources"]) > 2
        for key in first:
            assert first[key] == sorted(first[key]), key


def _answers(response: dict[str, Any]) -> bool:
    """True unless the server said it does not serve the method at all."""
    error = response.get("error")
    return error is None or error.get("code") != METHOD_NOT_FOUND


def _probes(note: str) -> dict[str, tuple[str, dict[str, Any]]]:
    """One request per capability, to see whether the method behind it answers."""
    return {
        "tools": ("tools/list", {}),
        "prompts": ("prompts/list", {}),
        "resources": ("resources/read", {"uri": note}),
        "completions": (
            "completion/complete",
            {
                "ref": {"type": "ref/resource", "uri": "mana://notes/{id}"},
                "argument": {"name": "id", "value": ""},
            },
        ),
    }


def _logged(messages: list[dict[str, Any]]) -> list[Any]:
    return [m["params"]["data"] for m in messages if m.get("method") == "notifications/message"]


def test_discover_and_initialize_advertise_exactly_what_answers(
    request: pytest.FixtureRequest, database_backend: str, tmp_path: Path
) -> None:
    """With the conformance fixtures, whose `test_tool_with_logging` shows whether log
    messages reach a 2026-07-28 client that opts in (the `logging` capability of that era)."""
    with replicas(request, database_backend, tmp_path, 1, FIXTURES) as (world, (server,)):
        wire = _wire(world, server)
        note = _a_note_uri(wire)

        # 2026-07-28: change notifications travel on subscriptions/listen only
        caps = wire.modern("server/discover")["result"]["capabilities"]
        for capability, (method, params) in _probes(note).items():
            answered = _answers(wire.modern(method, params))
            assert (capability in caps) == answered, (capability, caps)
        listen = _answers(wire.modern("subscriptions/listen", {"notifications": {}}))
        for capability in ("tools", "prompts", "resources"):
            entry = caps.get(capability) or {}
            assert bool(entry.get("listChanged")) == listen, (capability, entry)
        assert bool((caps.get("resources") or {}).get("subscribe")) == listen
        assert not _answers(wire.modern("logging/setLevel", {"level": "info"}))
        logging_call = {"name": "test_tool_with_logging", "arguments": {}}
        wire.modern("tools/call", logging_call, {LOG_LEVEL_META_KEY: "info"})
        assert ("logging" in caps) == bool(_logged(wire.last_messages))
        wire.modern("tools/call", logging_call)  # no opt-in: no log message
        assert not _logged(wire.last_messages)
        assert not _answers(wire.modern("resources/subscribe", {"uri": note}))

        # 2025-11-25: the same, with logging/setLevel and resources/subscribe in the era
        with wire.session() as (init, send):
            caps = init["result"]["capabilities"]
            for capability, (method, params) in _probes(note).items():
                assert (capability in caps) == _answers(send(method, params)), capability
            assert ("logging" in caps) == _answers(send("logging/setLevel", {"level": "info"}))
            subscribed = _answers(send("resources/subscribe", {"uri": note}))
            assert bool(caps["resources"].get("subscribe")) == subscribed
            assert caps["tools"].get("listChanged") is True  # tools/list_changed is sent
            # no prompts or resources list_changed is ever sent in this era
            assert not caps["prompts"].get("listChanged")
            assert not caps["resources"].get("listChanged")


def test_hints_table_covers_exactly_the_cacheable_methods() -> None:
    from mcp_types.methods import CACHEABLE_METHODS

    assert set(CACHE_HINTS) == set(CACHEABLE_METHODS)
    assert all(h.scope == "private" for m, h in CACHE_HINTS.items() if m != "server/discover")
