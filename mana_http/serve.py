"""Run the HTTP app under uvicorn with a graceful, bounded shutdown.

SIGTERM (or SIGINT): uvicorn stops accepting connections; we refuse new MCP requests (503) and
end sessions with no call in flight (so their GET streams close); calls in flight finish, bounded
by `shutdown_grace_seconds`; then the app's lifespan ends and the process exits 0.
"""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

import uvicorn

from mana_http.app import ManaHttpApp


class _Server(uvicorn.Server):
    def __init__(
        self, config: uvicorn.Config, on_exit: Callable[[], None], on_ready: Callable[[], None]
    ) -> None:
        super().__init__(config)
        self._on_exit = on_exit
        self._on_ready = on_ready
        self._loop: asyncio.AbstractEventLoop | None = None

    async def startup(self, sockets: Any = None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().startup(sockets)
        if self.started and not self.should_exit:
            self._on_ready()

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._on_exit)


def _ignore(signum: int, frame: FrameType | None) -> None:
    return None


async def serve_http(app: ManaHttpApp, *, on_ready: Callable[[], None] | None = None) -> int:
    """Serve until SIGTERM/SIGINT; 0 after a clean shutdown, 1 if the server did not start."""
    cfg = app.config
    config = uvicorn.Config(
        app.asgi,
        host=cfg.host,
        port=cfg.port,
        log_level="warning",
        log_config=None,  # uvicorn's loggers propagate to the root: JSON like every other line
        access_log=False,
        loop="asyncio",
        http="h11",
        lifespan="on",
        timeout_graceful_shutdown=max(1, int(cfg.shutdown_grace_seconds)),
        server_header=False,
        # The connection's own address is the client address (the login throttle keys on it).
        # uvicorn would otherwise believe X-Forwarded-For from 127.0.0.1, i.e. from every
        # local client of the default bind, which could pick any address it liked.
        proxy_headers=False,
    )
    server = _Server(config, app.begin_drain, on_ready or (lambda: None))
    # uvicorn re-raises the signal it shut down for once it is done; with the default SIGTERM
    # disposition that would kill the process (exit -15) after our clean shutdown. A no-op
    # handler underneath makes a SIGTERM shutdown end with exit code 0.
    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _ignore) if main else None
    try:
        await server.serve()
    finally:
        if main:
            signal.signal(signal.SIGTERM, previous)
    return 0 if server.started else 1
