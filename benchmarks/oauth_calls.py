#!/usr/bin/env python3
"""OAuth connections at the MCP endpoint: what a call costs with an access token of the built-in
authorization server against a local token, and what a refresh-token rotation costs against
`GET /health`, on one real `mana serve --http` (SQLite, a throwaway data directory, loopback).

    .venv/bin/python benchmarks/oauth_calls.py [-n 300] [--reps 3]

The tokens are obtained as a client and a browser would obtain them, through the real
endpoints: `POST /oauth/register` (a public client with a loopback redirect URI), `GET
/oauth/authorize` (the cookie and the hidden CSRF token of the page), the sign-in form (the
seeded user's email and password), the consent form (the personal space the page offers,
access read or write, Allow), the code from the redirect, `POST /oauth/token` with the PKCE
verifier. Three kinds of token call `habits.list` (a read tool; `HABITS` rows), each as a user
of its own with the same habits (why: `EMAILS`):

1. local: a `mana token issue` token (no scope claim: full access) — the baseline;
2. read+write: a connection's token (`mana:read mana:write`): the guard also asks whether the
   connection is live (`GrantCheck`, cached for 2 s) and the caller carries its scopes;
3. read-only: a connection's token (`mana:read`): besides, the guard reads every POST body to
   refuse a write tool with a scope challenge, and fewer tools are listed.

With the same `mcp.Client` over Streamable HTTP, in both eras (auto = 2026-07-28, legacy =
2025-11-25), the three kinds run back to back, `--reps` times in alternating order, `-n`
sequential calls each after `--warmup`; the table shows medians over the repetitions of p50
and p95 and the ratios to the local token. The token endpoint is timed the same way: `-n`
sequential refresh-token rotations (each uses the refresh token the previous one returned) vs
`-n` `GET /health` on the same server and the same keep-alive connection, alternating.
Every server is stopped at the end; the whole run is capped by `--timeout`.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.mcp_bench_support import (
    BENCH_PASSWORD,
    Server,
    percentiles,
    print_table,
    seed_users,
    token_for,
)
from tool_registry.logging import configure_logging

HABITS = 10
REDIRECT_URI = "http://127.0.0.1:9/callback"  # never contacted: the code is read from Location
LOCAL, READ_WRITE, READ_ONLY = "local", "read+write", "read-only"
KINDS = (LOCAL, READ_WRITE, READ_ONLY)
MODES = ("auto", "legacy")
HEALTH, REFRESH = "GET /health", "refresh rotation"
# One user per token kind (each with the same habits): the policy gate's rate-limit log is kept
# per (user, tool), and with the limit raised for the benchmark it holds every call of the last
# minute, so its cost per call grows with the calls made; per-kind users give each kind the same
# history at every point of the alternating order.
EMAILS = {kind: f"bench-oauth-{i}@mana.test" for i, kind in enumerate((*KINDS, REFRESH))}


class BenchError(Exception):
    """A step of the run answered other than it must; the run stops and exits non-zero."""


# -- the sign-in, as a client and a browser do it ---------------------------------------------


@dataclass
class _Form:
    """The one form of a sign-in or consent page: what it submits as is (hidden inputs,
    checked radios) and its submit buttons."""

    fields: dict[str, str] = field(default_factory=dict)
    buttons: list[tuple[str, str]] = field(default_factory=list)


class _FormParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.form = _Form()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        name = a.get("name")
        if not name:
            return
        if tag == "button":
            self.form.buttons.append((name, a.get("value", "")))
        elif tag == "input" and (a.get("type") != "radio" or "checked" in a):
            self.form.fields[name] = a.get("value", "")


def _form_of(page: httpx.Response) -> _Form:
    if page.status_code != 200:
        raise BenchError(f"authorize page: {page.status_code} {page.text[:300]}")
    parser = _FormParser()
    parser.feed(page.text)
    return parser.form


@dataclass(frozen=True)
class Connection:
    """One OAuth connection's client and tokens (the refresh token changes at every rotation)."""

    client_id: str
    access_token: str
    refresh_token: str
    scope: str


class Browser:
    """The OAuth flow against one server through its real endpoints; `http` keeps the browser
    cookie (`mana_oauth_session`), so only the first connection shows the sign-in form."""

    def __init__(self, http: httpx.AsyncClient, email: str, password: str) -> None:
        self.http = http
        self.email = email
        self.password = password

    async def connect(self, client_name: str, access: str) -> Connection:
        """Register a public client, sign in (once per browser), consent to the personal space
        with `access` ("read" | "write"), and exchange the code with the PKCE verifier."""
        registered = await self.http.post(
            "/oauth/register",
            json={
                "client_name": client_name,
                "redirect_uris": [REDIRECT_URI],
                "grant_types": ["authorization_code", "refresh_token"],
                "response_types": ["code"],
                "token_endpoint_auth_method": "none",
            },
        )
        if registered.status_code != 201:
            raise BenchError(f"register: {registered.status_code} {registered.text[:300]}")
        client_id: str = registered.json()["client_id"]
        verifier = secrets.token_urlsafe(48)
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
        state = secrets.token_urlsafe(8)
        params = {
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": REDIRECT_URI,
            "scope": "mana:read mana:write",
            "state": state,
            "code_challenge": challenge.rstrip(b"=").decode(),
            "code_challenge_method": "S256",
        }
        form = _form_of(await self.http.get("/oauth/authorize", params=params))
        if ("action", "login") in form.buttons:
            fields = {**form.fields, "email": self.email, "password": self.password}
            signed = await self.http.post("/oauth/authorize", data={**fields, "action": "login"})
            if signed.status_code != 303:
                raise BenchError(f"sign-in: {signed.status_code} {signed.text[:300]}")
            form = _form_of(await self.http.get("/oauth/authorize", params=params))
        if ("decision", "allow") not in form.buttons or "space" not in form.fields:
            raise BenchError("the consent page has no Allow button or no preselected space")
        # form.fields["space"] is the space the page checks: the personal space
        decided = await self.http.post(
            "/oauth/authorize", data={**form.fields, "access": access, "decision": "allow"}
        )
        location = decided.headers.get("location", "")
        if decided.status_code != 302 or not location.startswith(REDIRECT_URI + "?"):
            raise BenchError(f"consent: {decided.status_code} {location or decided.text[:300]}")
        query = {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
        if query.get("state") != state or "code" not in query:
            raise BenchError(f"consent redirect without code or with another state: {location}")
        exchanged = await self.http.post(
            "/oauth/token",
            data={
                "grant_type": "authorization_code",
                "client_id": client_id,
                "code": query["code"],
                "code_verifier": verifier,
                "redirect_uri": REDIRECT_URI,
            },
        )
        if exchanged.status_code != 200:
            raise BenchError(f"code exchange: {exchanged.status_code} {exchanged.text[:300]}")
        body = exchanged.json()
        return Connection(client_id, body["access_token"], body["refresh_token"], body["scope"])


# -- measurements -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    p50: float
    p95: float
    per_s: float
    errors: int
    protocol: str = ""
    tools: int = 0


async def measure_calls(url: str, token: str, mode: str, n: int, warmup: int) -> Sample:
    """`n` sequential `habits.list` calls (after `warmup`) in a fresh client of `mode`."""
    async with (
        httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=30.0) as http,
        Client(
            streamable_http_client(f"{url}/mcp", http_client=http),
            mode=mode,
            read_timeout_seconds=30,
        ) as client,
    ):
        tools = len((await client.list_tools()).tools)
        errors = 0
        for _ in range(warmup):
            errors += 1 if (await client.call_tool("habits.list", {})).is_error else 0
        latencies: list[float] = []
        started = time.perf_counter()
        for _ in range(n):
            t0 = time.perf_counter()
            result = await client.call_tool("habits.list", {})
            latencies.append(time.perf_counter() - t0)
            content = result.structured_content
            if result.is_error or content is None or len(content["habits"]) != HABITS:
                errors += 1
        wall = time.perf_counter() - started
        p50, p95 = percentiles(latencies)
        return Sample(p50, p95, n / wall, errors, client.protocol_version or "?", tools)


async def measure_health(http: httpx.AsyncClient, n: int, warmup: int) -> Sample:
    errors = 0
    for _ in range(warmup):
        errors += (await http.get("/health")).status_code != 200
    latencies: list[float] = []
    started = time.perf_counter()
    for _ in range(n):
        t0 = time.perf_counter()
        status = (await http.get("/health")).status_code
        latencies.append(time.perf_counter() - t0)
        errors += status != 200
    wall = time.perf_counter() - started
    p50, p95 = percentiles(latencies)
    return Sample(p50, p95, n / wall, errors)


class Rotations:
    """Refresh-token rotations of one connection, each with the token the previous returned
    (a token used twice would revoke the connection, so a failed rotation stops the run)."""

    def __init__(self, http: httpx.AsyncClient, connection: Connection) -> None:
        self.http = http
        self.client_id = connection.client_id
        self.refresh_token = connection.refresh_token

    async def rotate(self) -> None:
        resp = await self.http.post(
            "/oauth/token",
            data={
                "grant_type": "refresh_token",
                "client_id": self.client_id,
                "refresh_token": self.refresh_token,
            },
        )
        if resp.status_code != 200:
            raise BenchError(f"refresh: {resp.status_code} {resp.text[:300]}")
        token: str = resp.json()["refresh_token"]
        if token == self.refresh_token:
            raise BenchError("refresh: the refresh token was not rotated")
        self.refresh_token = token

    async def measure(self, n: int, warmup: int) -> Sample:
        for _ in range(warmup):
            await self.rotate()
        latencies: list[float] = []
        started = time.perf_counter()
        for _ in range(n):
            t0 = time.perf_counter()
            await self.rotate()
            latencies.append(time.perf_counter() - t0)
        wall = time.perf_counter() - started
        p50, p95 = percentiles(latencies)
        return Sample(p50, p95, n / wall, 0)


# -- the run ----------------------------------------------------------------------------------


def _median(samples: list[Sample], name: str) -> float:
    return statistics.median(float(getattr(s, name)) for s in samples)


async def run(ns: argparse.Namespace) -> int:
    data_dir = Path(tempfile.mkdtemp(prefix="mana-bench-oauth-"))
    try:
        return await _run(ns, data_dir)
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


async def _connect(url: str, email: str, name: str, access: str) -> Connection:
    """One connection of `email` through a browser of its own (its own cookie)."""
    async with httpx.AsyncClient(base_url=url, timeout=30.0) as http:
        return await Browser(http, email, BENCH_PASSWORD).connect(name, access)


async def _run(ns: argparse.Namespace, data_dir: Path) -> int:
    ids = await seed_users(data_dir, list(EMAILS.values()), habits_per_user=HABITS)
    server = Server.ours(data_dir)
    calls: dict[tuple[str, str], list[Sample]] = {}
    endpoint: dict[str, list[Sample]] = {}
    try:
        await server.ready(health=True)
        async with httpx.AsyncClient(base_url=server.url, timeout=30.0) as http:
            read_write = await _connect(server.url, EMAILS[READ_WRITE], "Bench rw", "write")
            read_only = await _connect(server.url, EMAILS[READ_ONLY], "Bench read-only", "read")
            refreshing = await _connect(server.url, EMAILS[REFRESH], "Bench refresh", "read")
            for connection, scope in (
                (read_write, "mana:read mana:write"),
                (read_only, "mana:read"),
            ):
                if connection.scope != scope:
                    raise BenchError(f"asked for {scope!r}, granted {connection.scope!r}")
            tokens = {
                LOCAL: token_for(data_dir, ids[EMAILS[LOCAL]], EMAILS[LOCAL]),
                READ_WRITE: read_write.access_token,
                READ_ONLY: read_only.access_token,
            }
            for rep in range(ns.reps):
                for mode in MODES:
                    for kind in KINDS if rep % 2 == 0 else tuple(reversed(KINDS)):
                        sample = await measure_calls(
                            server.url, tokens[kind], mode, ns.calls, ns.warmup
                        )
                        calls.setdefault((mode, kind), []).append(sample)
                        print(
                            f"# rep {rep + 1} {mode:6} {kind:10} p50 {sample.p50:6.2f} ms  "
                            f"p95 {sample.p95:6.2f} ms  {sample.per_s:6.0f}/s  "
                            f"tools {sample.tools}  errors {sample.errors}",
                            file=sys.stderr,
                        )
            rotations = Rotations(http, refreshing)
            for rep in range(ns.reps):
                for what in (HEALTH, REFRESH) if rep % 2 == 0 else (REFRESH, HEALTH):
                    if what == HEALTH:
                        sample = await measure_health(http, ns.calls, ns.warmup)
                    else:
                        sample = await rotations.measure(ns.calls, ns.warmup)
                    endpoint.setdefault(what, []).append(sample)
                    print(
                        f"# rep {rep + 1} {what:16} p50 {sample.p50:6.2f} ms  "
                        f"{sample.per_s:6.0f}/s  errors {sample.errors}",
                        file=sys.stderr,
                    )
    finally:
        server.stop()

    errors = sum(s.errors for samples in (*calls.values(), *endpoint.values()) for s in samples)
    print(
        f"\nOAuth connections at /mcp: habits.list ({HABITS} rows), {ns.calls} sequential calls "
        f"after {ns.warmup} warm-up per sample, median of {ns.reps} reps, same client, same "
        f"server (SQLite), same run; ratios against the local token\n"
    )
    table = []
    for mode in MODES:
        base = calls[(mode, LOCAL)]
        for kind in KINDS:
            ours = calls[(mode, kind)]
            table.append(
                [
                    ours[0].protocol,
                    kind,
                    str(ours[0].tools),
                    f"{_median(ours, 'p50'):.2f}",
                    f"{_median(ours, 'p95'):.2f}",
                    f"{_median(ours, 'per_s'):.0f}",
                    f"{_median(ours, 'p50') / _median(base, 'p50'):.2f}x",
                    f"{_median(ours, 'p95') / _median(base, 'p95'):.2f}x",
                ]
            )
    print_table(
        ["protocol", "token", "tools", "p50 ms", "p95 ms", "calls/s", "p50 ratio", "p95 ratio"],
        table,
    )
    for mode in MODES:
        protocol = calls[(mode, LOCAL)][0].protocol
        b50 = _median(calls[(mode, LOCAL)], "p50")
        for kind in (READ_WRITE, READ_ONLY):
            ratio = _median(calls[(mode, kind)], "p50") / b50
            print(f"p50 {kind} / local, {protocol}: {ratio:.2f}x")
    print(
        f"\nToken endpoint: {ns.calls} sequential requests after {ns.warmup} warm-up per sample "
        f"on one keep-alive connection, median of {ns.reps} reps\n"
    )
    print_table(
        ["request", "p50 ms", "p95 ms", "per s"],
        [
            [
                what,
                f"{_median(endpoint[what], 'p50'):.2f}",
                f"{_median(endpoint[what], 'p95'):.2f}",
                f"{_median(endpoint[what], 'per_s'):.0f}",
            ]
            for what in (HEALTH, REFRESH)
        ],
    )
    health_rate = _median(endpoint[HEALTH], "per_s")
    refresh_rate = _median(endpoint[REFRESH], "per_s")
    print(
        f"refresh rotations per second / GET /health per second: {refresh_rate / health_rate:.2f}x "
        f"(time per request {health_rate / refresh_rate:.2f}x); errors {errors}"
    )
    return 1 if errors else 0


def main(argv: list[str] | None = None) -> int:
    configure_logging("WARNING", json=True)
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("-n", "--calls", type=int, default=300, help="measured requests per sample")
    p.add_argument("--warmup", type=int, default=30, help="warm-up requests per sample")
    p.add_argument("--reps", type=int, default=3, help="repetitions (alternating order)")
    p.add_argument("--timeout", type=float, default=900, help="cap for the whole run, seconds")
    ns = p.parse_args(argv)

    async def bounded() -> int:
        try:
            return await asyncio.wait_for(run(ns), ns.timeout)
        except BenchError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1

    return asyncio.run(bounded())


if __name__ == "__main__":
    sys.exit(main())
