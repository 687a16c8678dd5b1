"""The Streamable HTTP server as one Starlette app.

Routes:
    /mcp                      MCP endpoint (both protocol eras), behind `McpGuard`
    POST /auth/token          email + password → short-lived JWT (local keys only)
    GET /.well-known/jwks.json  the public signing keys (local keys only; public like the metadata)
    GET /.well-known/oauth-protected-resource[/mcp]  RFC 9728 resource metadata (public)
    /oauth/authorize, /oauth/token, /oauth/revoke, /oauth/register and the RFC 8414 metadata
                              the built-in OAuth authorization server (`mana_oauth.server`;
                              local keys only, absent with MANA_JWKS_URL)
    GET /health               200 when the database can take a write, else 503 with the reason
    GET /metrics              Prometheus text

Built once per process (or per test) by `build_http_app`; nothing is created per request.

Several processes may serve one database (replicas behind a load balancer, no stickiness
needed): 2025-11-25 sessions are registered in the database and any replica serves any
session (`mana_http.sessions`), session events (ended, tool list changed, resource updated)
travel between them on PostgreSQL's LISTEN/NOTIFY (`mana_http.notify`), and a client's answer
to a request one replica sent reaches that replica whichever one it was POSTed to
(`mana_http.answers`).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import mcp_types as types
import structlog
from mcp.server.transport_security import TransportSecuritySettings
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

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
from mana_http.answers import ANSWER, AnswerRelay
from mana_http.guard import DrainState, McpGuard, RunningRequests, SingleHeaders
from mana_http.manager import BodyFirstSessionManager
from mana_http.metrics import CONTENT_TYPE, Metrics
from mana_http.notify import ENDED, LIST_CHANGED, RESOURCE_UPDATED, SessionBus, bus_for
from mana_http.origin import OriginGuard, PublicEndpoint
from mana_http.resource_metadata import METADATA_PATHS, ResourceServer
from mana_http.session_state import DatabaseSessionState
from mana_http.sessions import SessionRegistry, seen_names
from mana_oauth.cimd import CimdPolicy
from mana_oauth.clients import ClientRegistry
from mana_oauth.connections import CACHE_SECONDS as GRANT_CACHE_SECONDS
from mana_oauth.connections import GrantCheck
from mana_oauth.metadata import JWKS_PATH, REGISTER_PATH, REVOKE_PATH, TOKEN_PATH
from mana_oauth.metadata import METADATA_PATHS as AS_METADATA_PATHS
from mana_oauth.server import AuthorizationServer
from mana_oauth.store import OAuthStore
from mcp_server import McpAdapter, RequestScopeCaller
from tool_registry.json_input import JsonInputError, loads_json
from tool_registry.pipeline import Pipeline
from tool_registry.store.postgres import DatabaseUnavailable

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
    # how often session activity is written to the shared registry (see mana_http.sessions)
    session_touch_seconds: float = 1.0
    max_sessions: int = 10_000
    shutdown_grace_seconds: float = 10.0
    # the externally visible base URL (MANA_PUBLIC_URL, e.g. behind a proxy); None: loopback
    public_url: str | None = None
    # origins whose client metadata documents may be fetched from loopback
    # (MANA_OAUTH_LOOPBACK_CLIENTS; development and tests)
    oauth_loopback_clients: frozenset[str] = frozenset()
    # how long a replica may go on trusting that an OAuth connection is live (a revocation
    # anywhere takes effect within this)
    grant_cache_seconds: float = GRANT_CACHE_SECONDS

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
    # the external authorization server the resource metadata names (remote JWKS only)
    external_issuer: str | None = None

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
        cls,
        url: str,
        *,
        audience: str = DEFAULT_AUDIENCE,
        issuer: str | None = None,
        oauth_issuer: str | None = None,
    ) -> AuthSetup:
        """`oauth_issuer` (MANA_OAUTH_ISSUER) names the authorization server clients sign in
        at; without it, the tokens' expected `issuer` (MANA_JWT_ISSUER)."""
        remote = RemoteJwks(url)
        return cls(
            verifier=TokenVerifier(remote, audience=audience, issuer=issuer),
            remote=remote,
            external_issuer=oauth_issuer or issuer,
        )


@dataclass
class ManaHttpApp:
    """Everything the HTTP server is made of; `asgi` is what uvicorn serves."""

    pipeline: Pipeline
    auth: AuthSetup
    config: HttpConfig
    adapter: McpAdapter
    sessions: SessionRegistry
    metrics: Metrics
    manager: BodyFirstSessionManager
    drain: DrainState
    login: PasswordLogin | None
    bus: SessionBus
    resource: ResourceServer
    # answers to requests this process sent that clients POSTed to another replica
    answers: AnswerRelay
    # the built-in authorization server; None with an external issuer (MANA_JWKS_URL)
    oauth: AuthorizationServer | None = None
    # this process, as named in a session row's `listener` (the holder of its GET stream)
    instance: str = field(default_factory=lambda: uuid.uuid4().hex)
    asgi: ASGIApp = field(init=False)
    _background: set[asyncio.Task[None]] = field(init=False, default_factory=set)

    async def close_sessions(self, session_ids: list[str]) -> None:
        """End sessions for every replica: delete their rows, close them here, and tell the
        other replicas to close theirs."""
        if not session_ids:
            return
        await self.sessions.remove(session_ids)
        await self.close_local(session_ids)
        for session_id in session_ids:
            await self.bus.publish(ENDED, session_id)

    async def close_local(self, session_ids: list[str]) -> None:
        """Close this process's transports of these sessions (their GET streams end); the
        sessions themselves are untouched."""
        for session_id in session_ids:
            self.sessions.detach(session_id)
            await self.manager.end_local(session_id)

    def begin_drain(self) -> None:
        """Shutdown started: refuse new MCP requests and close the sessions here that have no
        call in flight (which ends their GET streams); busy ones close when their calls finish.
        The sessions stay open for the other replicas (and this one after a restart)."""
        if self.drain.draining:
            return
        self.drain.draining = True
        idle = self.sessions.idle()
        if idle:
            task = asyncio.get_running_loop().create_task(self.close_local(idle))
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def backends_changed(self) -> int:
        """Call after configuring or removing a backend: sessions (on any replica) with a GET
        stream open whose visible tool set, as this process now computes it, differs from the
        one they last saw get `notifications/tools/list_changed`. A session without a GET
        stream keeps its old view, so its next call carries the notification on that call's
        own response. Returns how many were notified."""
        sent = 0
        for row in await self.sessions.listening():
            if row.space_type is None or row.tools_seen is None:
                continue
            now = self.adapter.catalog.names(row.space_type)
            if now == seen_names(row.tools_seen):
                continue
            if await self.sessions.replace_seen(row.id, row.tools_seen, now):
                await self.bus.publish(LIST_CHANGED, row.id)
                sent += 1
        return sent

    async def on_session_event(self, kind: str, session_id: str, detail: str) -> None:
        """A session event from any process (this one included)."""
        if kind == ENDED:
            await self.close_local([session_id])
            return
        if kind == ANSWER:
            await self.answers.on_event(session_id, detail)
            return
        entry = self.sessions.get(session_id)
        connection = self.manager.connections.get(session_id)
        if entry is None or not entry.watch.listening or connection is None:
            return  # its GET stream is elsewhere, or nowhere (the message is advisory)
        if kind == LIST_CHANGED:
            notification = types.ToolListChangedNotification()
            await connection.notify(notification.method, None)
        elif kind == RESOURCE_UPDATED and detail:
            await connection.send_resource_updated(detail)

    async def resync(self) -> None:
        """After missing events: close what ended elsewhere meanwhile, take the answers
        relayed here meanwhile."""
        await self.close_local(await self.sessions.vanished())
        await self.answers.collect()

    async def _sweep(self) -> None:
        interval = max(0.2, min(self.config.session_idle_seconds / 4, 30.0))
        tick = min(interval, self.sessions.touch_seconds)
        loop = asyncio.get_running_loop()
        next_sweep = loop.time() + interval
        while True:
            await asyncio.sleep(tick)
            try:
                await self.sessions.flush()
                if loop.time() >= next_sweep:
                    next_sweep = loop.time() + interval
                    await self._expire()
            except DatabaseUnavailable as exc:
                log.warning("session sweep skipped: database unavailable", error=exc.message)
            except Exception:  # the sweeper must outlive one bad round; the next one retries
                log.exception("session sweep failed")
            if self.drain.draining:
                idle = self.sessions.idle()
                if idle:
                    await self.close_local(idle)

    async def _expire(self) -> None:
        await self.answers.expire()
        expired = await self.sessions.expired()
        if expired:
            log.info("closing idle sessions", count=len(expired))
            await self.close_local(expired)
            for session_id in expired:
                await self.bus.publish(ENDED, session_id)
        # ended on another replica (an event this process missed, or SQLite: no events)
        await self.close_local(await self.sessions.vanished())

    @contextlib.asynccontextmanager
    async def lifespan(self, _: Any = None) -> AsyncIterator[None]:
        async with (
            self.manager.run(),
            self.bus.listening(self.on_session_event, self.resync),
        ):
            sweeper = asyncio.get_running_loop().create_task(self._sweep())
            try:
                yield
            finally:
                sweeper.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await sweeper
                with contextlib.suppress(DatabaseUnavailable):
                    await self.sessions.flush()
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


def build_http_app(
    pipeline: Pipeline,
    auth: AuthSetup,
    config: HttpConfig | None = None,
    *,
    login: PasswordLogin | None = None,
) -> ManaHttpApp:
    config = config or HttpConfig()
    sessions = SessionRegistry(
        pipeline.db,
        idle_seconds=config.session_idle_seconds,
        per_user=config.sessions_per_user,
        max_total=config.max_sessions,
        protect_seconds=config.session_protect_seconds,
        touch_seconds=config.session_touch_seconds,
    )
    metrics = Metrics(gate=pipeline.gate, open_sessions=lambda: len(sessions))
    pipeline.observers.append(metrics.observe)
    bus = bus_for(pipeline.db)
    # this process, in session rows (`listener`) and in the ids of the requests it sends
    instance = uuid.uuid4().hex
    adapter = McpAdapter(
        pipeline,
        RequestScopeCaller(),
        state=DatabaseSessionState(pipeline.db, pipeline.accounts, bus.publish),
    )
    # subscribers of a resource a call changed hear of it (on whichever replica listens)
    pipeline.observers.append(adapter.changes.observe)
    adapter.server.middleware.append(RunningRequests(sessions))
    manager = BodyFirstSessionManager(
        app=adapter.server,
        json_response=False,
        stateless=False,
        # Host/Origin are checked by OriginGuard for every route.
        security_settings=TransportSecuritySettings(enable_dns_rebinding_protection=False),
        session_idle_timeout=config.session_idle_seconds,
        max_sessions=config.max_sessions,
        instance=instance,
    )
    answers = AnswerRelay(
        pipeline.db, bus.publish, manager.deliver, instance=instance, metrics=metrics
    )
    resource = ResourceServer.of(
        public_url=config.public_url,
        host=config.host,
        port=config.port,
        external_issuer=auth.external_issuer,
        # the Origin/Host check below admits only loopback names: each may name the server
        loopback=config.loopback,
    )
    if login is None and auth.issuer is not None:
        login = PasswordLogin(pipeline.accounts, auth.issuer, LoginThrottle())
    oauth = _authorization_server(pipeline, auth, config, resource, login, metrics)
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
        bus=bus,
        resource=resource,
        answers=answers,
        oauth=oauth,
        instance=instance,
    )
    # tokens for the local audience or for this resource (RFC 8707), under any of its names
    verifier = auth.verifier
    for audience in resource.resources:
        verifier = verifier.accepting(audience)
    guard = McpGuard(
        manager,
        verifier=verifier,
        accounts=pipeline.accounts,
        sessions=sessions,
        metrics=metrics,
        drain=app.drain,
        close_sessions=app.close_sessions,
        close_local=app.close_local,
        instance=app.instance,
        tool_view=adapter.catalog.names,
        resource=resource,
        registry=pipeline.registry,
        # a revoked connection's access tokens are refused within `grant_cache_seconds`
        grants=(
            GrantCheck(oauth.store, cache_seconds=config.grant_cache_seconds)
            if oauth is not None
            else None
        ),
        answers=answers,
    )
    public_paths = frozenset((*METADATA_PATHS, JWKS_PATH))
    public_endpoints: dict[str, PublicEndpoint] = {}
    allowed_origins = config.allowed_origins
    if oauth is not None:
        public_paths |= frozenset(AS_METADATA_PATHS)
        # browser-based clients call these without cookies; the sign-in pages are not public
        public_endpoints = dict.fromkeys((TOKEN_PATH, REVOKE_PATH, REGISTER_PATH), OAUTH_CLIENT_API)
        # the sign-in and consent forms post from this server's own origin (any of its names)
        allowed_origins = (
            *allowed_origins,
            *(_origin_of(site.base_url) for site in resource.sites),
        )
    origin_check: dict[str, Any] = {
        "allowed_origins": allowed_origins,
        "loopback_only_hosts": config.loopback,
        "metrics": metrics,
        "public_paths": public_paths,
        "public_endpoints": public_endpoints,
    }
    rest = Starlette(
        routes=[
            Route("/auth/token", endpoint=app.token, methods=["POST"]),
            Route(JWKS_PATH, endpoint=app.jwks, methods=["GET"]),
            *(Route(path, endpoint=resource.metadata, methods=["GET"]) for path in METADATA_PATHS),
            Route("/health", endpoint=app.health, methods=["GET"]),
            Route("/metrics", endpoint=app.metrics_text, methods=["GET"]),
            *(oauth.routes() if oauth is not None else ()),
        ],
        middleware=[Middleware(OriginGuard, **origin_check)],
        lifespan=app.lifespan,
    )
    # outermost: no layer below may see a repeated identity/session header
    app.asgi = SingleHeaders(_Dispatch(OriginGuard(guard, **origin_check), rest), metrics=metrics)
    return app


OAUTH_CLIENT_API = PublicEndpoint(methods=("POST",), headers=("Content-Type", "Authorization"))


def _origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _authorization_server(
    pipeline: Pipeline,
    auth: AuthSetup,
    config: HttpConfig,
    resource: ResourceServer,
    login: PasswordLogin | None,
    metrics: Metrics,
) -> AuthorizationServer | None:
    """The built-in authorization server, when this server signs its own tokens (local keys);
    with an external issuer (MANA_JWKS_URL) there is none and its routes answer 404."""
    if auth.issuer is None or auth.keys is None or login is None:
        return None
    store = OAuthStore(pipeline.db)
    return AuthorizationServer(
        store=store,
        clients=ClientRegistry(store, CimdPolicy(loopback_origins=config.oauth_loopback_clients)),
        login=login,
        accounts=pipeline.accounts,
        issuer=auth.issuer,
        keys=auth.keys,
        resource=resource,
        on_login_failure=metrics.auth_failure,
    )


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
