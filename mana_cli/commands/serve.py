"""`mana serve --stdio --as EMAIL [--space ID|SLUG]` and `mana serve --http [--host] [--port]
[--workers N]`: the MCP server."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection
from typing import Any

import structlog

from mana_cli.config import Raw, Settings
from mana_cli.runtime import Runtime, open_runtime
from tool_registry.errors import ManaError, ValidationFailed
from tool_registry.logging import configure_logging
from tool_registry.membership import require_member

log = structlog.get_logger("mana.serve")


def register(sub: Any) -> None:
    p = sub.add_parser(
        "serve",
        help="run the MCP server (stdio for a local client, Streamable HTTP for many users)",
        description=(
            "stdio: one user, identity from --as/--space or MANA_USER/MANA_SPACE; only protocol "
            "on stdout, logs on stderr. HTTP: endpoint /mcp, every request needs "
            "'Authorization: Bearer <JWT>' (see `mana token issue`); 'X-Mana-Space' selects the "
            "space per request."
        ),
    )
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--stdio", action="store_true", help="serve one client over stdin/stdout")
    mode.add_argument("--http", action="store_true", help="serve Streamable HTTP on /mcp")
    p.add_argument("--as", dest="as_email", metavar="EMAIL", help="stdio: act as this user")
    p.add_argument("--space", metavar="ID|SLUG", help="stdio: space (default: personal)")
    p.add_argument("--host", help="HTTP: bind address (default 127.0.0.1, env MANA_HOST)")
    p.add_argument("--port", type=int, help="HTTP: port (default 3069, env MANA_PORT)")
    p.add_argument(
        "--workers",
        metavar="N",
        help="HTTP: N server processes on one port, each with its own database pool; N > 1 "
        "needs PostgreSQL (--database-url). Default 1",
    )
    p.set_defaults(handler=serve)


async def serve(args: argparse.Namespace, settings: Settings) -> int:
    if args.stdio:
        if args.host is not None or args.port is not None or args.workers is not None:
            raise ValidationFailed("--host/--port/--workers apply to --http only")
        settings = settings.with_flags(user=args.as_email, space=args.space)
        return await serve_stdio(settings)
    if args.as_email is not None or args.space is not None:
        raise ValidationFailed(
            "--as/--space apply to --stdio only; over HTTP the token names the user and the "
            "X-Mana-Space header the space"
        )
    settings = settings.with_flags(host=args.host, port=args.port)
    workers = (
        1
        if args.workers is None
        else Raw(args.workers, "--workers", flag=True).integer(low=1, high=MAX_WORKERS)
    )
    if workers == 1:
        return await serve_http(settings)
    return await serve_http_workers(settings, workers)


MAX_WORKERS = 64


async def serve_stdio(settings: Settings) -> int:
    """Serve until the client closes stdin, or SIGTERM/SIGINT: either way the calls in flight
    finish (bounded by the shutdown grace) and are answered, the audit log is flushed (the
    runtime closes) and the exit code is 0, as over HTTP."""
    from mcp_server import StdinLines, stdio_adapter
    from mcp_server import serve_stdio as run_stdio

    if not settings.user:
        raise ValidationFailed("give --as EMAIL (or set MANA_USER) to say who the client acts as")
    async with open_runtime(settings) as rt:
        user = await rt.accounts.require_user(settings.user)
        access = await require_member(rt.accounts, user.id, settings.space)
        log.info(
            "serving MCP over stdio", user=user.email, space=access.space.slug, role=access.role
        )
        stdin = StdinLines()
        with _stop_on_signals(stdin.stop):
            await run_stdio(
                stdio_adapter(rt.pipeline, user_id=user.id, space=access.space.id),
                grace_seconds=float(settings.shutdown_grace_seconds),
                stdin=stdin,
            )
    return 0


@contextlib.contextmanager
def _stop_on_signals(stop: Callable[[], None]) -> Iterator[None]:
    """SIGTERM and SIGINT call `stop` (once each is enough) instead of killing the process,
    while the block runs; only possible on the main thread."""
    loop = asyncio.get_running_loop()
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    signals = (signal.SIGTERM, signal.SIGINT)
    for sig in signals:
        loop.add_signal_handler(sig, _on_signal, sig, stop)
    try:
        yield
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)


def _on_signal(sig: signal.Signals, stop: Callable[[], None]) -> None:
    log.info("stopping: no new requests; finishing calls in flight", signal=sig.name)
    stop()


def build_app(rt: Runtime) -> Any:
    """The HTTP app for this runtime (local signing keys, or a remote JWKS when configured)."""
    from mana_http import AuthSetup, HttpConfig, build_http_app

    s = rt.settings
    if s.jwks_url:
        auth = AuthSetup.remote_jwks(
            s.jwks_url, audience=s.jwt_audience, issuer=s.jwt_issuer, oauth_issuer=s.oauth_issuer
        )
    else:
        auth = AuthSetup.local(s.data_dir, audience=s.jwt_audience, issuer=s.jwt_issuer)
    config = HttpConfig(
        host=s.host,
        port=s.port,
        allowed_origins=s.allowed_origins,
        session_idle_seconds=float(s.session_idle_seconds),
        sessions_per_user=s.sessions_per_user,
        session_protect_seconds=float(s.session_protect_seconds),
        shutdown_grace_seconds=float(s.shutdown_grace_seconds),
        public_url=s.public_url,
        oauth_loopback_clients=s.oauth_loopback_clients,
    )
    return build_http_app(rt.pipeline, auth, config)


def endpoint_url(settings: Settings) -> str:
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    return f"http://{host}:{settings.port}/mcp"


async def serve_http(
    settings: Settings,
    *,
    before: Callable[[Runtime], Any] | None = None,
    on_ready: Callable[[], None] | None = None,
    create: bool = False,
) -> int:
    """Serve MCP over HTTP; `create` lets `mana run` create the database on first start."""
    from mana_http import serve_http as run_http

    _warn_if_exposed(settings)
    async with open_runtime(settings, create=create) as rt:
        if before is not None:
            await before(rt)
        app = build_app(rt)

        def ready() -> None:
            log.info(
                "serving MCP over HTTP",
                url=endpoint_url(settings),
                database=settings.database_label,
                env=settings.env,
                tools=len(rt.registry),
            )
            if on_ready is not None:
                on_ready()
            else:
                print(f"Mana MCP server listening on {endpoint_url(settings)}", flush=True)
            sys.stdout.flush()

        return await run_http(app, on_ready=ready)


def _warn_if_exposed(settings: Settings) -> None:
    if settings.host not in ("127.0.0.1", "localhost", "::1"):
        log.warning(
            "binding to a non-loopback address: every request still needs a valid token, but "
            "put TLS (a reverse proxy) in front and set MANA_ALLOWED_ORIGINS for browsers",
            host=settings.host,
        )


async def serve_http_workers(settings: Settings, workers: int) -> int:
    """`--workers N`: this process checks the database and the signing keys once, binds the
    port, then supervises N worker processes serving it (see `mana_http.serve.WorkerPool`).

    PostgreSQL only: workers are separate processes that must share rate limits, sessions and
    tool-list notifications through the database, and the embedded SQLite file has one writer
    and no cross-process notifications."""
    from mana_auth import KeyStore
    from mana_http.serve import WorkerPool, bind_socket

    if settings.database_url is None:
        raise ValidationFailed(
            f"--workers {workers} needs PostgreSQL (--database-url or MANA_DATABASE_URL): "
            "processes sharing the embedded SQLite file queue on its single writer and cannot "
            "notify each other; serve it with --workers 1, or move it with `mana db copy`"
        )
    _warn_if_exposed(settings)
    async with open_runtime(settings) as rt:  # one clear error now, not one per worker
        tools = len(rt.registry)
    if not settings.jwks_url:
        KeyStore(settings.data_dir).ensure()  # created once here, never raced by the workers
    pool = WorkerPool(
        target=run_worker,
        payload=settings,
        sock=bind_socket(settings.host, settings.port, reuse_port=True),
        count=workers,
        grace_seconds=float(settings.shutdown_grace_seconds),
    )

    def ready() -> None:
        log.info(
            "serving MCP over HTTP",
            url=endpoint_url(settings),
            database=settings.database_label,
            env=settings.env,
            tools=tools,
            workers=workers,
        )
        print(f"Mana MCP server listening on {endpoint_url(settings)}", flush=True)

    return await pool.run(ready)


def run_worker(sock: socket.socket, ready_pipe: Connection, settings: Settings) -> None:
    """A worker process of `serve_http_workers` (spawned: a fresh interpreter): its own
    runtime and database pool, serving the inherited socket; sends its pid once it serves."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent forwards SIGTERM (see serve.py)
    configure_logging(settings.log_level, json=settings.log_json)

    def ready() -> None:
        log.info("worker serving", pid=os.getpid())
        ready_pipe.send(os.getpid())
        ready_pipe.close()

    try:
        code = asyncio.run(_serve_worker(settings, sock, ready))
    except ManaError as exc:
        log.error(exc.message, reason=exc.reason, pid=os.getpid())
        code = 1
    sys.exit(code)


async def _serve_worker(settings: Settings, sock: socket.socket, ready: Callable[[], None]) -> int:
    from mana_http import serve_http as run_http

    async with open_runtime(settings) as rt:
        return await run_http(build_app(rt), on_ready=ready, sock=sock)
