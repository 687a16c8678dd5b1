"""Sign-in of the TypeScript SDK's OAuth client (`@modelcontextprotocol/client`, the code the MCP
Inspector, mcp-remote and many editors use) at Mana's built-in authorization server, end to
end: a real `mana serve --http`; the SDK in node (`ts_oauth_client.mjs`: a
`StreamableHTTPClientTransport` with an in-memory `OAuthClientProvider`) meets the 401,
discovers the resource and authorization server metadata, registers (RFC 7591) or names its
Client ID Metadata Document, and asks for the authorization URL to be opened; Chromium signs in
with the user's password, picks the brand space with read and write access and allows; the
redirect lands on the client's loopback listener and its query goes back to the SDK
(`transport.finishAuth`), which redeems the code with its PKCE verifier and reconnects. The
client then lists the brand space's tools, calls `me.listReferenceImages` there, and refreshes
its access token after a 401 without another sign-in. Both protocol eras the SDK offers
(2025-11-25 by default, 2026-07-28 with `versionNegotiation: {mode: "auto"}`).

Also with the SDK: a confidential client (client_secret_basic), its own https metadata
document branch, a read-only connection's scope challenge and step-up, a new sign-in after
`mana connections revoke`, Deny on the consent page, the sign-in through `localhost`, through
a proxy that publishes Mana below a path prefix, and through two replicas behind a round-robin
proxy. And the MCP Inspector's command line, which is built on the SDK, signing in and calling
a tool.

Skips without node or the package (installed with the Inspector by
`scripts/inspector-smoke.sh`), like the replicas test's TypeScript client."""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import json
import os
import pty
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from playwright.async_api import Browser

from mana_cli.commands.run import INSPECTOR_VERSION
from mana_cli.demo import DEMO_PASSWORD
from tests.browser.support import NOT_IN_BRAND, Access, BrowserUser, LocalSite, Page
from tests.mcp.support import (
    BRAND_IMAGES,
    DEMO_EMAIL,
    REPO,
    Mode,
    ServerProcess,
    World,
    free_port,
    mana_argv,
    seeded_world,
)
from tool_registry.testing.proxy import RoundRobinProxy

CLIENT_SCRIPT = REPO / "tests/browser/ts_oauth_client.mjs"
# seconds for each line the node client prints (its first includes node's start and discovery)
LINE_WAIT = 60.0
# the SDK's note on stored client information without the authorization server's issuer
ISSUER_STAMP = "stored OAuth credential has no 'issuer' stamp"
# how the client gets its client_id: RFC 7591 registration as a public client or as a
# confidential one (client_secret_basic), or a metadata document URL
Registration = Literal["dcr", "dcr-secret", "cimd"]
# the user's answer on the consent page: allow with that access, or deny
Choice = Literal["read", "write", "deny"]
ERAS: dict[Mode, str] = {"legacy": "2025-11-25", "auto": "2026-07-28"}


def ts_sdk_entry() -> Path | None:
    """`@modelcontextprotocol/client`'s ESM entry as `scripts/inspector-smoke.sh` installs it
    with the Inspector ($MANA_INSPECTOR_DIR, else the cache directory of the pinned version),
    or None."""
    cache = os.environ.get("MANA_INSPECTOR_DIR") or str(
        Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
        / "mana"
        / f"inspector-{INSPECTOR_VERSION}"
    )
    entry = Path(cache) / "node_modules/@modelcontextprotocol/client/dist/index.mjs"
    return entry if entry.is_file() else None


@pytest.fixture(scope="module")
def node_sdk() -> tuple[str, Path]:
    node, entry = shutil.which("node"), ts_sdk_entry()
    if node is None or entry is None:
        pytest.skip("node and @modelcontextprotocol/client (scripts/inspector-smoke.sh) needed")
    return node, entry


@pytest.fixture(scope="module")
def world(
    tmp_path_factory: pytest.TempPathFactory, database_backend: str, request: pytest.FixtureRequest
) -> Iterator[World]:
    with seeded_world(request, database_backend, tmp_path_factory.mktemp("ts-sign-in")) as world:
        yield world


@pytest.fixture(scope="module")
def client_site() -> Iterator[LocalSite]:
    """The client's side on 127.0.0.1: its metadata documents and its redirect listener."""
    with LocalSite().running() as site:
        yield site


@pytest.fixture(scope="module")
def server(world: World, client_site: LocalSite) -> Iterator[ServerProcess]:
    # the documents are served over plain http from loopback: the operator allows that origin
    proc = ServerProcess(
        world.installation, env={"MANA_OAUTH_LOOPBACK_CLIENTS": client_site.origin}
    )
    try:
        proc.wait_ready()
        yield proc
    finally:
        proc.stop()


@dataclass
class NodeClient:
    """The running `ts_oauth_client.mjs`: JSON lines out, the callback's query in."""

    proc: asyncio.subprocess.Process
    stderr_path: Path

    async def line(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        raw = await asyncio.wait_for(self.proc.stdout.readline(), LINE_WAIT)
        assert raw, f"the node client ended without a line:\n{self.stderr()}"
        parsed: dict[str, Any] = json.loads(raw)
        return parsed

    async def answer(self, query: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(query.encode() + b"\n")
        await self.proc.stdin.drain()

    async def finished(self) -> int:
        return await asyncio.wait_for(self.proc.wait(), LINE_WAIT)

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")[-4000:]


@asynccontextmanager
async def _node_client(node: str, argv: list[str], stderr_path: Path) -> AsyncIterator[NodeClient]:
    """Start the client; at the block's end it is killed if it still runs."""
    with stderr_path.open("wb") as stderr:
        proc = await asyncio.create_subprocess_exec(
            node,
            str(CLIENT_SCRIPT),
            *argv,
            cwd=REPO,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=stderr,
        )
        try:
            yield NodeClient(proc, stderr_path)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()


def _client_pages(
    site: LocalSite, name: str, slug: str, *, document: bool
) -> tuple[str, str | None]:
    """The redirect listener of client `name` at a path of its own (`slug`) and (with
    `document`) its metadata document on `site`. Returns (redirect URI, client_id URL or
    None)."""
    callback = f"/callback/{slug}"
    site.pages[callback] = Page(b"<!doctype html><p>Connected. Close this window.")
    redirect_uri = site.url(callback)
    if not document:
        return redirect_uri, None
    client_id = site.url(f"/clients/{slug}.json")
    metadata = {
        "client_id": client_id,
        "client_name": name,
        "redirect_uris": [redirect_uri],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "none",
    }
    site.pages[f"/clients/{slug}.json"] = Page(json.dumps(metadata).encode(), "application/json")
    return redirect_uri, client_id


def _asked(report: dict[str, Any], method: str, path: str) -> list[int]:
    """The statuses of the client's requests `method path`, in order."""
    return [r["status"] for r in report["requests"] if (r["method"], r["path"]) == (method, path)]


def _authorization_request(url: str, server: ServerProcess) -> dict[str, str]:
    """The parameters of the authorization URL the SDK built, after checking what every one
    must carry at this server: PKCE S256, the MCP endpoint as the resource (RFC 8707), the
    scopes of the resource metadata, a state."""
    assert url.startswith(f"{server.url}/oauth/authorize?"), url
    params = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    assert params["response_type"] == "code"
    assert params["code_challenge_method"] == "S256" and params["code_challenge"]
    assert params["resource"] == server.mcp_url
    assert set(params["scope"].split()) == {"mana:read", "mana:write"}
    assert params["state"]
    return params


@dataclass
class Run:
    """What one run of the node client showed: its final report, the authorization requests
    it sent the user's browser to (parameters) and the user at each."""

    report: dict[str, Any]
    sent: list[dict[str, str]]
    users: list[BrowserUser]
    sdk_warnings: list[str]


@dataclass(frozen=True)
class TsClient:
    """Runs `ts_oauth_client.mjs` against `server`, with the user at `chromium`."""

    node: str
    entry: Path
    chromium: Browser
    server: ServerProcess
    world: World
    site: LocalSite
    stderr_path: Path

    async def run(
        self,
        name: str,
        *,
        mode: Mode,
        scenario: Literal["refresh", "step-up", "revoked", "deny"],
        registration: Registration,
        accesses: list[Choice],
        when_waiting: Callable[[], Awaitable[None]] | None = None,
    ) -> Run:
        """Start the client; at each authorization it asks for, the user signs in, picks the
        brand space and the next of `accesses`, and allows (or denies, for "deny"), and the
        callback's query goes back to the client; while it waits, `when_waiting` runs.
        Returns once the client printed its report and exited 0, having asked for exactly
        `len(accesses)` authorizations."""
        slug = name.replace(" ", "-").lower()
        redirect_uri, client_id = _client_pages(
            self.site, name, slug, document=registration == "cimd"
        )
        argv = [
            str(self.entry),
            self.server.mcp_url,
            mode,
            redirect_uri,
            name,
            scenario,
            registration,
        ]
        sent: list[dict[str, str]] = []
        users: list[BrowserUser] = []
        pending = list(accesses)
        async with _node_client(
            self.node, [*argv, *filter(None, [client_id])], self.stderr_path
        ) as client:
            line = await client.line()
            while "result" not in line:
                if "waiting" in line and when_waiting is not None:
                    await when_waiting()
                    await client.answer("go on")
                else:
                    assert "authorize" in line and pending, line
                    params = _authorization_request(line["authorize"], self.server)
                    assert params["redirect_uri"] == redirect_uri
                    assert params["client_id"] == (client_id or params["client_id"])
                    choice = pending.pop(0)
                    if choice == "deny":
                        await _deny(self.chromium, line["authorize"], redirect_uri)
                    else:
                        users.append(await self._allow(line["authorize"], redirect_uri, choice))
                    sent.append(params)
                    query = _last_callback(self.site, slug, len(sent))
                    if choice == "deny":
                        assert "code" not in query and query["error"] == "access_denied", query
                    else:
                        assert set(query) == {"code", "state", "iss"}, query
                    await client.answer(urlencode(query))
                line = await client.line()
            assert await client.finished() == 0, client.stderr()
            warnings = [w for w in client.stderr().splitlines() if w.startswith("[mcp-sdk]")]
        assert pending == [], f"the client asked for {len(sent)} of {len(accesses)} sign-ins"
        assert line["result"]["errors"] == [], line["result"]["errors"]
        return Run(line["result"], sent, users, warnings)

    async def _allow(self, url: str, redirect_uri: str, access: Access) -> BrowserUser:
        """The user at the browser: sign in, the brand space, `access`, Allow."""
        user = BrowserUser(
            self.chromium, self.server, self.world, self.world.brand_id, access, redirect_uri
        )
        await user.authorize(url)
        return user


def _last_callback(site: LocalSite, slug: str, count: int) -> dict[str, str]:
    """The query of the newest request of client `slug`'s redirect listener, its `count`-th
    (the browser has landed there: the site recorded it before answering)."""
    landed = [query for path, query in site.requests if path == f"/callback/{slug}"]
    assert len(landed) == count, landed
    return {k: v[0] for k, v in landed[-1].items()}


async def _deny(browser: Browser, url: str, redirect_uri: str) -> None:
    """The user at the browser signs in and refuses on the consent page."""
    context = await browser.new_context(java_script_enabled=False)
    try:
        page = await context.new_page()
        await page.goto(url)
        await page.fill('input[name="email"]', DEMO_EMAIL)
        await page.fill('input[name="password"]', DEMO_PASSWORD)
        await page.click('button[name="action"][value="login"]')
        await page.click('button[name="decision"][value="deny"]')
        await page.wait_for_url(lambda landed: landed.startswith(redirect_uri + "?"))
    finally:
        await context.close()


@pytest.fixture
def ts_client(
    node_sdk: tuple[str, Path],
    chromium: Browser,
    server: ServerProcess,
    world: World,
    client_site: LocalSite,
    tmp_path: Path,
) -> TsClient:
    node, entry = node_sdk
    return TsClient(node, entry, chromium, server, world, client_site, tmp_path / "node.err")


def _assert_brand_space(report: dict[str, Any], world: World) -> set[str]:
    """The connection acts in the brand space, without any X-Mana-Space header."""
    tools = set(report["tools"])
    assert "me.listReferenceImages" in tools
    assert not {t for t in tools if t.split(".")[0] in NOT_IN_BRAND}, tools
    assert set(report["images"]) == BRAND_IMAGES
    assert report["spaceId"] == world.brand_id
    return tools


@pytest.mark.parametrize("mode", ["legacy", "auto"])
@pytest.mark.parametrize("registration", ["cimd", "dcr", "dcr-secret"])
async def test_typescript_sdk_signs_in_and_works_in_the_chosen_space(
    ts_client: TsClient, registration: Registration, mode: Mode
) -> None:
    """The whole sign-in (see the module docstring) for each way the client gets its id and
    in each protocol era, then a refresh after the access token ran out."""
    world, site = ts_client.world, ts_client.site
    name = f"TS SDK {registration} {mode} {world.installation.backend}"
    run = await ts_client.run(
        name, mode=mode, scenario="refresh", registration=registration, accesses=["write"]
    )
    report, (user,) = run.report, run.users

    # one sign-in, started by the SDK from the 401, on a page naming the client and its host
    assert report["firstConnect"] == "unauthorized"
    assert report["redirects"] == 1 and len(user.authorizations) == 1
    assert name in user.consent_text
    assert site.origin.removeprefix("http://") in user.consent_text
    # discovery from the 401: resource metadata, then the authorization server's
    assert 401 in _asked(report, "POST", "/mcp")
    assert _asked(report, "GET", "/.well-known/oauth-protected-resource/mcp") == [200]
    assert 200 in _asked(report, "GET", "/.well-known/oauth-authorization-server")
    slug = name.replace(" ", "-").lower()
    if registration == "cimd":
        assert report["clientId"] == site.url(f"/clients/{slug}.json")
        assert not report["registered"]
        assert _asked(report, "POST", "/oauth/register") == []
        assert (f"/clients/{slug}.json", {}) in site.requests  # fetched by Mana
    else:
        assert report["registered"] and not report["clientId"].startswith("http")
        assert _asked(report, "POST", "/oauth/register") == [201]
    # a confidential client authenticates at the token endpoint with HTTP Basic
    assert report["clientSecret"] == (registration == "dcr-secret")
    token_auth = {r["auth"] for r in report["requests"] if r["path"] == "/oauth/token"}
    assert token_auth == ({"Basic"} if registration == "dcr-secret" else {None})
    answered = [r for r in report["requests"] if r["path"] == "/mcp" and r["status"] == 200]
    assert {r["auth"] for r in answered} == {"Bearer"}
    assert run.sent[0]["client_id"] == report["clientId"]
    # the SDK found nothing to warn about, but that a client id given as stored client
    # information (the http document's URL) has no issuer stamp yet (it adds one)
    if registration == "cimd":
        assert run.sdk_warnings and all(ISSUER_STAMP in w for w in run.sdk_warnings)
    else:
        assert run.sdk_warnings == []
    # the code exchange, then the refresh after the 401 of the run-out access token
    assert _asked(report, "POST", "/oauth/token") == [200, 200]
    assert set(report["scope"].split()) == {"mana:read", "mana:write"}

    # the protocol era the SDK was told to use
    assert report["protocol"] == ERAS[mode]
    if mode == "legacy":
        assert report["sessionId"]
        # the session's stream of server messages, opened with the connection's token
        assert _asked(report, "GET", "/mcp") == [200]
    else:
        assert report["sessionId"] is None

    assert "notes.create" in _assert_brand_space(report, world)

    # the refresh rotated the refresh token and the client carried on in the same space
    assert set(report["afterRefresh"]) == BRAND_IMAGES
    assert report["accessRenewed"] and report["refreshRotated"]


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_typescript_sdk_steps_up_from_a_read_only_connection(
    ts_client: TsClient, mode: Mode
) -> None:
    """A read-only connection lists read tools only; calling a write tool meets the server's
    scope challenge (403 insufficient_scope naming mana:write), after which the SDK asks the
    user to authorize the wider scope, and with the user's Read and write the call goes
    through in the brand space."""
    world = ts_client.world
    run = await ts_client.run(
        f"TS SDK step-up {mode} {world.installation.backend}",
        mode=mode,
        scenario="step-up",
        registration="dcr",
        accesses=["read", "write"],
    )
    report = run.report
    assert report["scope"] == "mana:read"
    assert "notes.create" not in _assert_brand_space(report, world)

    assert report["stepUp"] == "asked"
    assert 403 in _asked(report, "POST", "/mcp")
    assert report["redirects"] == 2
    assert set(run.sent[1]["scope"].split()) == {"mana:read", "mana:write"}
    assert run.sent[1]["client_id"] == run.sent[0]["client_id"]
    assert set(report["scopeAfter"].split()) == {"mana:read", "mana:write"}
    assert report["created"] and report["createdSpaceId"] == world.brand_id
    assert run.sdk_warnings == []


async def test_typescript_sdk_names_an_https_metadata_document_as_its_client_id(
    node_sdk: tuple[str, Path], server: ServerProcess, client_site: LocalSite, tmp_path: Path
) -> None:
    """The SDK's own Client ID Metadata Document branch (`clientMetadataUrl`, https only): the
    server's metadata says it supports such documents, so the SDK registers nothing and sends
    the document's URL as the client id. (The sign-in itself is the test above: Mana fetches
    https documents with the public CAs only, so a test cannot serve one over https.)"""
    node, entry = node_sdk
    redirect_uri, _ = _client_pages(client_site, "TS SDK https", "ts-sdk-https", document=False)
    document = f"https://127.0.0.1:{free_port()}/clients/ts-sdk-https.json"
    argv = [str(entry), server.mcp_url, "auto", redirect_uri, "TS SDK https", "refresh"]
    argv += ["cimd", document]
    async with _node_client(node, argv, tmp_path / "node.err") as client:
        asked = await client.line()
    assert "authorize" in asked, asked
    sent = _authorization_request(asked["authorize"], server)
    assert (sent["client_id"], sent["redirect_uri"]) == (document, redirect_uri)
    assert _asked(asked, "GET", "/.well-known/oauth-authorization-server") == [200]
    assert _asked(asked, "POST", "/oauth/register") == []


def _reached_at(server: ServerProcess, base_url: str) -> ServerProcess:
    """The same server as a client reaches it at `base_url` (another loopback name, or a
    proxy): `url` and `mcp_url` say so; the process is still the one its owner stops."""
    alias = copy.copy(server)
    alias.url = base_url
    alias.mcp_url = f"{base_url}/mcp"
    return alias


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_typescript_sdk_signs_in_through_localhost(ts_client: TsClient, mode: Mode) -> None:
    """A client on the server's machine may be given `http://localhost:PORT/mcp` (README).
    The SDK accepts only resource metadata naming the URL it was given (or its origin) and
    an authorization server whose metadata names the issuer it discovered, so the whole
    sign-in stays on that name: the metadata, the authorization URL, the resource parameter,
    the pages the browser posts, the token's audience, the refresh."""
    world = ts_client.world
    local = dataclasses.replace(
        ts_client, server=_reached_at(ts_client.server, f"http://localhost:{ts_client.server.port}")
    )
    run = await local.run(
        f"TS SDK localhost {mode} {world.installation.backend}",
        mode=mode,
        scenario="refresh",
        registration="dcr",
        accesses=["write"],
    )
    assert run.sent[0]["resource"] == f"http://localhost:{ts_client.server.port}/mcp"
    assert run.report["firstConnect"] == "unauthorized" and run.report["redirects"] == 1
    assert run.report["protocol"] == ERAS[mode]
    assert "notes.create" in _assert_brand_space(run.report, world)
    assert set(run.report["afterRefresh"]) == BRAND_IMAGES
    assert run.sdk_warnings == []


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_typescript_sdk_reports_a_denied_sign_in(ts_client: TsClient, mode: Mode) -> None:
    """Deny on the consent page: the redirect carries error=access_denied with the client's
    state and Mana's iss, which the SDK checks against the issuer it discovered before it
    surfaces the error as an OAuthError with that code; no token is ever requested."""
    world = ts_client.world
    run = await ts_client.run(
        f"TS SDK deny {mode} {world.installation.backend}",
        mode=mode,
        scenario="deny",
        registration="dcr",
        accesses=["deny"],
    )
    report = run.report
    assert report["firstConnect"] == "unauthorized" and report["redirects"] == 1
    assert report["denied"]["code"] == "access_denied", report["denied"]
    assert report["denied"]["name"] == "OAuthError"
    assert not report["tokens"]
    assert _asked(report, "POST", "/oauth/token") == []
    assert run.sdk_warnings == []


class PrefixProxy:
    """A reverse proxy on 127.0.0.1 that publishes one backend below a path prefix, as an
    operator's proxy does for `MANA_PUBLIC_URL=https://host/prefix`: a request for
    `PREFIX/rest` reaches the backend as `/rest`; any other path is the proxy's own 404 (so
    the host's root well-known URLs are not the backend's). One request per connection
    (`Connection: close` both ways); bodies and streamed answers pass through unchanged."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.backend_port = 0
        self.port = 0
        self.asked: list[str] = []
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.prefix}"

    async def __aenter__(self) -> PrefixProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._forward(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass  # a side that went away ends the exchange
        finally:
            self._tasks.discard(task)
            writer.close()

    async def _forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request_line, *lines = (await reader.readuntil(b"\r\n\r\n"))[:-4].split(b"\r\n")
        method, target, version = request_line.split(b" ", 2)
        path = target.decode("latin-1")
        self.asked.append(path)
        if not path.startswith(self.prefix + "/"):
            writer.write(
                b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            )
            await writer.drain()
            return
        kept = [h for h in lines if h.split(b":", 1)[0].strip().lower() != b"connection"]
        head = b" ".join([method, path[len(self.prefix) :].encode("latin-1"), version])
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.backend_port)
        try:
            up_writer.write(b"\r\n".join([head, *kept, b"Connection: close", b"", b""]))
            upload = asyncio.ensure_future(_pipe(reader, up_writer))
            try:
                await _pipe(up_reader, writer)  # until the backend has answered and closed
            finally:
                upload.cancel()
                await asyncio.gather(upload, return_exceptions=True)
        finally:
            up_writer.close()


async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    while chunk := await source.read(65536):
        sink.write(chunk)
        await sink.drain()


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_typescript_sdk_signs_in_below_a_path_prefix(ts_client: TsClient, mode: Mode) -> None:
    """Behind a proxy that publishes Mana at `/mana` (MANA_PUBLIC_URL=http://127.0.0.1:P/mana):
    the SDK finds the resource metadata from the 401, the authorization server's metadata at
    the one discovery URL below the prefix, `/mana/.well-known/openid-configuration` (RFC
    8414's `/.well-known/oauth-authorization-server/mana` and OpenID's path-appended form are
    at the host's root: the proxy's 404), which it reads as OpenID Connect Discovery
    metadata (it refuses a document without OpenID Connect Discovery's
    subject_types_supported and id_token_signing_alg_values_supported), and the sign-in pages,
    the token endpoint and /mcp all through the prefix."""
    world = ts_client.world
    async with PrefixProxy("/mana") as proxy:
        server = ServerProcess(world.installation, env={"MANA_PUBLIC_URL": proxy.url})
        try:
            proxy.backend_port = server.port
            await asyncio.to_thread(server.wait_ready)
            behind = dataclasses.replace(ts_client, server=_reached_at(server, proxy.url))
            run = await behind.run(
                f"TS SDK prefix {mode} {world.installation.backend}",
                mode=mode,
                scenario="refresh",
                registration="dcr",
                accesses=["write"],
            )
        finally:
            await asyncio.to_thread(server.stop)
    report = run.report
    assert run.sent[0]["resource"] == f"{proxy.url}/mcp"
    assert _asked(report, "GET", "/mana/.well-known/openid-configuration") == [200]
    assert "/.well-known/oauth-authorization-server/mana" in proxy.asked  # the proxy's 404
    assert _asked(report, "GET", "/mana/.well-known/oauth-protected-resource/mcp") == [200]
    assert _asked(report, "POST", "/mana/oauth/register") == [201]
    assert _asked(report, "POST", "/mana/oauth/token") == [200, 200]
    assert report["protocol"] == ERAS[mode] and report["redirects"] == 1
    assert "notes.create" in _assert_brand_space(report, world)
    assert set(report["afterRefresh"]) == BRAND_IMAGES
    assert run.sdk_warnings == []


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_typescript_sdk_signs_in_through_two_replicas(
    ts_client: TsClient, mode: Mode
) -> None:
    """Two `mana serve --http` replicas on one PostgreSQL database behind a round-robin proxy
    (no stickiness; MANA_PUBLIC_URL is the proxy): the SDK's discovery, registration, code
    exchange, refresh and MCP requests and the browser's sign-in pages alternate between the
    replicas, and the whole sign-in holds (browser session, client, code, refresh tokens and,
    in 2025-11-25, the session are the database's)."""
    world = ts_client.world
    if world.installation.backend != "postgres":
        pytest.skip("replicas share a PostgreSQL database")
    async with RoundRobinProxy([("127.0.0.1", 1)]) as proxy:
        replicas = [
            ServerProcess(world.installation, env={"MANA_PUBLIC_URL": proxy.url}) for _ in range(2)
        ]
        try:
            for replica in replicas:
                await asyncio.to_thread(replica.wait_ready)
            proxy.backends[:] = [("127.0.0.1", r.port) for r in replicas]
            behind = dataclasses.replace(ts_client, server=_reached_at(replicas[0], proxy.url))
            run = await behind.run(
                f"TS SDK replicas {mode}",
                mode=mode,
                scenario="refresh",
                registration="dcr",
                accesses=["write"],
            )
        finally:
            for replica in replicas:
                await asyncio.to_thread(replica.stop)
    report = run.report
    assert report["protocol"] == ERAS[mode] and report["redirects"] == 1
    assert _asked(report, "POST", "/oauth/token") == [200, 200]
    assert "notes.create" in _assert_brand_space(report, world)
    assert set(report["afterRefresh"]) == BRAND_IMAGES
    # the sign-in's requests were shared out between the replicas
    assert proxy.served_by(0) >= 5 and proxy.served_by(1) >= 5, proxy.routed


@pytest.fixture(scope="module")
def inspector_cli(node_sdk: tuple[str, Path]) -> Path:
    """The MCP Inspector's command line, installed beside the SDK package."""
    _, entry = node_sdk
    cli = entry.parents[3] / ".bin/mcp-inspector"
    if not cli.is_file():
        pytest.skip("the MCP Inspector (scripts/inspector-smoke.sh) needed")
    return cli


@dataclass(frozen=True)
class Inspector:
    """The Inspector's command line as one person on one machine runs it: its state (OAuth
    registration and tokens, in files) below `home`, a terminal on stdin for the person at it
    (with MCP_AUTO_OPEN_ENABLED=false it opens no browser itself: it prints the URL), and its
    callback listener at `callback`."""

    cli: Path
    server: ServerProcess
    home: Path
    callback: str

    async def call(
        self, era: str, *extra: str, user: BrowserUser | None = None
    ) -> tuple[dict[str, Any], str]:
        """`tools/call me.listReferenceImages` (plus `extra` options); when it prints an
        authorization URL, `user` (required then) goes through the sign-in. Returns the
        result it printed and what it said on stderr."""
        env = {
            **os.environ,
            "HOME": str(self.home),
            "MCP_AUTO_OPEN_ENABLED": "false",
            "MCP_INSPECTOR_SECRET_STORE": "file",
            "NO_COLOR": "1",
        }
        argv = ["--cli", "--server-url", self.server.mcp_url, "--transport", "http"]
        argv += ["--protocol-era", era, "--callback-url", self.callback, *extra]
        argv += ["--method", "tools/call", "--tool-name", "me.listReferenceImages"]
        terminal, terminal_side = pty.openpty()
        try:
            proc = await asyncio.create_subprocess_exec(
                str(self.cli),
                *argv,
                env=env,
                stdin=terminal_side,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
        finally:
            os.close(terminal_side)
        said: list[str] = []
        try:
            assert proc.stderr is not None
            if user is not None:
                url = await self._authorization_url(proc.stderr, said)
                await user.authorize(url)
            out, err = await asyncio.wait_for(proc.communicate(), LINE_WAIT)
            said.append(err.decode())
            assert proc.returncode == 0, "".join(said)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            os.close(terminal)
        result: dict[str, Any] = json.loads(out)
        return result, "".join(said)

    @staticmethod
    async def _authorization_url(stderr: asyncio.StreamReader, said: list[str]) -> str:
        while True:
            line = (await asyncio.wait_for(stderr.readline(), LINE_WAIT)).decode()
            assert line, "".join(said)
            said.append(line)
            if line.startswith("Please navigate to: "):
                return line.removeprefix("Please navigate to: ").strip()


@pytest.fixture
def inspector(inspector_cli: Path, server: ServerProcess, tmp_path: Path) -> Inspector:
    home = tmp_path / "home"
    home.mkdir()
    callback = f"http://127.0.0.1:{free_port()}/oauth/callback"
    return Inspector(inspector_cli, server, home, callback)


def _assert_brand_images(result: dict[str, Any], world: World) -> None:
    assert not result.get("isError"), result
    assert {i["id"] for i in result["structuredContent"]["images"]} == BRAND_IMAGES
    assert result["_meta"]["mana/spaceId"] == world.brand_id


@pytest.mark.parametrize("era", ["legacy", "auto"])
async def test_inspector_cli_signs_in_and_calls_a_tool(
    inspector: Inspector, chromium: Browser, world: World, era: str
) -> None:
    """The MCP Inspector's command line against a server that asks for sign-in: it registers,
    prints the authorization URL ("Please navigate to: …") and waits at its own loopback
    callback listener; the user signs in in Chromium, picks the brand space and allows; the
    Inspector redeems the code and its `tools/call me.listReferenceImages` answers from the
    brand space. A later run reuses the stored sign-in (`--use-stored-auth`: no browser)."""
    server = inspector.server
    user = BrowserUser(chromium, server, world, world.brand_id, "write", inspector.callback)
    result, _ = await inspector.call(era, user=user)
    assert "Inspector" in user.consent_text  # the client's registered name
    _assert_brand_images(result, world)
    # a 2026-07-28 result names the server in its _meta; a 2025-11-25 one does not
    assert ("io.modelcontextprotocol/serverInfo" in result["_meta"]) == (era == "auto")

    again, _ = await inspector.call(era, "--use-stored-auth")
    _assert_brand_images(again, world)
    assert len(user.authorizations) == 1


async def _mana(world: World, *args: str) -> str:
    """`mana ARGS` on the server's installation, as its operator would run it; its stdout."""
    proc = await asyncio.create_subprocess_exec(
        *mana_argv(world.data_dir, *args),
        cwd=REPO,
        env=world.installation.env(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), LINE_WAIT)
    assert proc.returncode == 0, err.decode()
    return out.decode()


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_typescript_sdk_asks_for_a_new_sign_in_after_revocation(
    ts_client: TsClient, mode: Mode
) -> None:
    """The user ends a connected client's connection with `mana connections revoke`: its
    access token is refused (401 invalid_token once the grant check's short cache has run
    out), its refresh token too (invalid_grant), so the SDK drops its tokens and asks the
    user to sign in again, after which the client works on."""
    world = ts_client.world
    name = f"TS SDK revoked {mode} {world.installation.backend}"
    ended: list[str] = []

    async def revoke() -> None:
        listed = json.loads(await _mana(world, "connections", "list", "--as", DEMO_EMAIL, "--json"))
        (mine,) = [c for c in listed if c["client_name"] == name]
        await _mana(world, "connections", "revoke", mine["id"], "--as", DEMO_EMAIL)
        ended.append(mine["id"])

    run = await ts_client.run(
        name,
        mode=mode,
        scenario="revoked",
        registration="dcr",
        accesses=["write", "write"],
        when_waiting=revoke,
    )
    report = run.report
    assert len(ended) == 1 and report["reauthorized"]
    # the refused refresh made the SDK drop its tokens, not its registration
    assert report["invalidated"] == ["tokens"]
    assert run.sent[1]["client_id"] == run.sent[0]["client_id"]
    assert _asked(report, "POST", "/oauth/register") == [201]
    assert _asked(report, "POST", "/oauth/token") == [200, 400, 200]
    assert set(report["afterSignIn"]) == BRAND_IMAGES
    assert report["afterSignInSpaceId"] == world.brand_id
    # a new connection took the ended one's place
    listed = json.loads(await _mana(world, "connections", "list", "--as", DEMO_EMAIL, "--json"))
    live = [c["id"] for c in listed if c["client_name"] == name]
    assert len(live) == 1 and live != ended
