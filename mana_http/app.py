"""The Streamable HTTP server as one Starlette app.

Routes:
    /mcp                      MCP endpoint (both protocol eras), behind `McpGuard`
    POST /auth/token          email + password → short-lived JWT (local keys only)
    GET /.well-known/jwks.json  the public signing keys (local keys only)
    GET /health               200 when the database can take a write, else 503 with the reason
    GET /metrics              Prometheus text

Built once per process (or per test) by `build_http_app`; nothing is created per request.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mana_auth.errors import AuthError, LoginThrottled
from mana_auth.keys import KeyStore
from mana_auth.login import LoginThrottle, PasswordLogin
from mana_auth.remote import RemoteJwks
from mana_auth.tokens import (
    DEFAULT_AUDIENCE,
    LOCAL_ISSUER,
    LocalKeys,
    TokenIssuer,
    TokenVerifier,
)
from mana_http.guard import DrainState, McpGuard, OriginGuard, RunningRequests, SingleHeaders
from mana_http.manager import BodyFirstSessionManager
from mana_http.metrics import CONTENT_TYPE, Metrics
from mana_http.sessions import SessionRegistry
from mcp_server import McpAdapter, RequestScopeCaller
from tool_registry.json_input import JsonInputError, loads_json
from tool_registry.pipeline import Pipeline

log = structlog.get_logger("mana.http")

DEFAULT_ALLOWED_ORIGINS = ("http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*")
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
MAX_LOGIN_BODY = 16 * 1024
MCP_PATHS = frozenset({"/mcp", "/mcp/"})


@dataclass(frozen=True)
class HttpConfig:
    host: str = "127.0.0.1"
    port: int = 3069
    allowed_origins: tuple[str, ...] = DEFAULT_ALLOWED_ORIGINS
    session_idle_seconds: float = 1800.0
    sessions_per_user: int = 16
    # the per-user cap never evicts a session used this recently (a new one gets 429 instead)
    session_protect_seconds: float = 600.0
    max_sessions: int = 10_000
    shutdown_grace_seconds: float = 10.0

    @property
    def loopback(self) -> bool:
        return self.host in LOOPBACK_HOSTS


@dataclass
class AuthSetup:
    """How bearer tokens are checked: the data directory's own keys (and then this server also
    issues tokens and publishes its JWKS), or a remote JWKS (a real Mana auth server)."""

    verifier: TokenVerifier
    keys: KeyStore | None = None
    issuer: TokenIssuer | None = None
    remote: RemoteJwks | None = None

    @classmethod
    def local(
        cls, data_dir: Path, *, audience: str = DEFAULT_AUDIENCE, issuer: str | None = None
    ) -> AuthSetup:
        keys = KeyStore(data_dir)
        keys.ensure()
        iss = issuer or LOCAL_ISSUER
        return cls(
            verifier=TokenVerifier(LocalKeys(keys), audience=audience, issuer=iss),
            keys=keys,
            issuer=TokenIssuer(keys, audience=audience, issuer=iss),
        )

    @classmethod
    def remote_jwks(
        cls, url: str, *, audience: str = DEFAULT_AUDIENCE, issuer: str | None = None
    ) -> AuthSetup:
        remote = RemoteJwks(url)
        return cls(verifier=TokenVerifier(remote, audience=audience, issuer=issuer), remote=remote)


@dataclass
class ManaHttpApp:
    """Everything the HTTP server is made of; `asgi` is what uvicorn serves."""

    pipeline: Pipeline
    auth: AuthSetup
    config: HttpConfig
    adapter: McpAdapter
    sessions: SessionRegistry
    metrics: Metrics
    manager: StreamableHTTPSessionManager
    drain: DrainState
    login: PasswordLogin | None
    asgi: ASGIApp = field(init=False)
    _background: set[asyncio.Task[None]] = field(init=False, default_factory=set)

    async def close_sessions(self, session_ids: list[str]) -> None:
        """Terminate sessions in the SDK (a DELETE through its own request path, so its
        bookkeeping stays consistent) after they were dropped from the registry."""
        for session_id in session_ids:
            self.sessions.remove(session_id)
            with contextlib.suppress(Exception):
                await self.manager.handle_request(*_delete_request(session_id))

    def begin_drain(self) -> None:
        """Shutdown started: refuse new MCP requests and end sessions that have no call in
        flight (which closes their GET streams); busy ones end when their calls finish."""
        if self.drain.draining:
            return
        self.drain.draining = True
        idle = self.sessions.idle()
        if idle:
            task = asyncio.get_running_loop().create_task(self.close_sessions(idle))
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def backends_changed(self) -> int:
        """Call after configuring or removing a backend: sessions whose visible tool set changed
        get `notifications/tools/list_changed`. Returns how many were notified."""
        return await self.adapter.push_tools_changed(self.sessions.watches())

    async def _sweep(self) -> None:
        interval = max(0.2, min(self.config.session_idle_seconds / 4, 30.0))
        while True:
            await asyncio.sleep(interval)
            expired = self.sessions.expired()
            if expired:
                log.info("closing idle sessions", count=len(expired))
                await self.close_sessions(expired)
            if self.drain.draining:
                idle = self.sessions.idle()
                if idle:
                    await self.close_sessions(idle)

    @contextlib.asynccontextmanager
    async def lifespan(self, _: Any = None) -> AsyncIterator[None]:
        async with self.manager.run():
            sweeper = asyncio.get_running_loop().create_task(self._sweep())
            try:
                yield
            finally:
                sweeper.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await sweeper
                if self.auth.remote is not None:
                    await self.auth.remote.aclose()

    # -- plain routes ------------------------------------------------------------------------

    async def health(self, request: Request) -> Response:
        """200 only when the database can take a write now (`Database.probe_write`: a short
        `BEGIN IMMEDIATE` and rollback); else 503 with the reason, e.g. another process holding
        the write lock."""
        try:
            problem = await self.pipeline.db.probe_write()
        except Exception as exc:  # e.g. the database is closed: that is the answer, not a crash
            problem = f"{type(exc).__name__}: {exc}"
        if problem is not None:
            return JSONResponse(
                {"status": "unavailable", "database": "cannot-write", "reason": problem},
                status_code=503,
            )
        return JSONResponse({"status": "ok", "database": "ok"})

    async def metrics_text(self, request: Request) -> Response:
        return Response(self.metrics.render(), media_type=CONTENT_TYPE)

    async def jwks(self, request: Request) -> Response:
        if self.auth.keys is None:
            return JSONResponse({"error": "this server verifies tokens of a remote JWKS"}, 404)
        return JSONResponse(self.auth.keys.jwks(), headers={"cache-control": "max-age=60"})

    async def token(self, request: Request) -> Response:
        no_store = {"cache-control": "no-store"}
        if self.login is None:
            return JSONResponse(
                {"error": "token issuing is done by the configured auth server (MANA_JWKS_URL)"},
                404,
            )
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_LOGIN_BODY:
                return JSONResponse({"error": "request body too large"}, 413)
        email, password = _credentials(request.headers.get("content-type", ""), body)
        if not email or not password:
            return JSONResponse(
                {"error": "send a JSON object with 'email' and 'password'"}, 400, no_store
            )
        try:
            client = request.client.host if request.client else ""
            issued = await self.login.login(email, password, client=client)
        except LoginThrottled as exc:
            self.metrics.auth_failure(exc.reason)
            return JSONResponse(
                {"error": exc.message}, 429, {**no_store, "retry-after": str(exc.retry_after)}
            )
        except AuthError as exc:
            self.metrics.auth_failure(exc.reason)
            return JSONResponse({"error": "invalid_grant", "message": exc.message}, 401, no_store)
        return JSONResponse(
            {
                "access_token": issued.token,
                "token_type": "Bearer",
                "expires_in": issued.expires_in(),
                "expires_at": issued.expires_at.isoformat().replace("+00:00", "Z"),
            },
            headers=no_store,
        )


def _credentials(content_type: str, body: bytes) -> tuple[str | None, str | None]:
    data: Any
    if content_type.startswith("application/x-www-form-urlencoded"):
        from urllib.parse import parse_qs

        parsed = parse_qs(body.decode("utf-8", "replace"))
        data = {k: v[0] for k, v in parsed.items() if v}
    else:
        try:
            data = loads_json(body or b"null")
        except JsonInputError:
            return None, None
    if not isinstance(data, dict):
        return None, None
    email, password = data.get("email"), data.get("password")
    return (
        email if isinstance(email, str) else None,
        password if isinstance(password, str) else None,
    )


def _delete_request(session_id: str) -> tuple[Scope, Receive, Send]:
    scope: Scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "DELETE",
        "scheme": "http",
        "path": "/mcp",
        "raw_path": b"/mcp",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"mcp-session-id", session_id.encode()), (b"host", b"127.0.0.1")],
        "client": ("127.0.0.1", 0),
        "server": ("127.0.0.1", 0),
    }

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        return None

    return scope, receive, send


def build_http_app(
    pipeline: Pipeline,
    auth: AuthSetup,
    config: HttpConfig | None = None,
    *,
    login: PasswordLogin | None = None,
) -> ManaHttpApp:
    config = config or HttpConfig()
    sessions = SessionRegistry(
        idle_seconds=config.session_idle_seconds,
        per_user=config.sessions_per_user,
        max_total=config.max_sessions,
        protect_seconds=config.session_protect_seconds,
    )
    metrics = Metrics(gate=pipeline.gate, open_sessions=lambda: len(sessions))
    pipeline.observers.append(metrics.observe)
    adapter = McpAdapter(pipeline, RequestScopeCaller())
    adapter.server.middleware.append(RunningRequests(sessions))
    manager = BodyFirstSessionManager(
        app=adapter.server,
        json_response=False,
        stateless=False,
        # Host/Origin are checked by OriginGuard for every route.
        security_settings=TransportSecuritySettings(enable_dns_rebinding_protection=False),
        session_idle_timeout=config.session_idle_seconds,
        max_sessions=config.max_sessions,
    )
    if login is None and auth.issuer is not None:
        login = PasswordLogin(pipeline.accounts, auth.issuer, LoginThrottle())
    app = ManaHttpApp(
        pipeline=pipeline,
        auth=auth,
        config=config,
        adapter=adapter,
        sessions=sessions,
        metrics=metrics,
        manager=manager,
        drain=DrainState(),
        login=login,
    )
    guard = McpGuard(
        manager,
        verifier=auth.verifier,
        accounts=pipeline.accounts,
        sessions=sessions,
        metrics=metrics,
        drain=app.drain,
        close_sessions=app.close_sessions,
    )
    origin_check: dict[str, Any] = {
        "allowed_origins": config.allowed_origins,
        "loopback_only_hosts": config.loopback,
        "metrics": metrics,
    }
    rest = Starlette(
        routes=[
            Route("/auth/token", endpoint=app.token, methods=["POST"]),
            Route("/.well-known/jwks.json", endpoint=app.jwks, methods=["GET"]),
            Route("/health", endpoint=app.health, methods=["GET"]),
            Route("/metrics", endpoint=app.metrics_text, methods=["GET"]),
        ],
        middleware=[Middleware(OriginGuard, **origin_check)],
        lifespan=app.lifespan,
    )
    # outermost: no layer below may see a repeated identity/session header
    app.asgi = SingleHeaders(_Dispatch(OriginGuard(guard, **origin_check), rest), metrics=metrics)
    return app


class _Dispatch:
    """`/mcp` goes straight to the guard (the hot path skips Starlette's routing and exception
    middleware); everything else, lifespan included, to the Starlette app."""

    def __init__(self, mcp: ASGIApp, rest: ASGIApp) -> None:
        self.mcp = mcp
        self.rest = rest

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] in MCP_PATHS:
            await self.mcp(scope, receive, send)
        else:
            await self.rest(scope, receive, send)
