"""Run the HTTP app under uvicorn with a graceful, bounded shutdown, in one process or as a
supervised pool of worker processes sharing one listening socket.

SIGTERM (or SIGINT): uvicorn stops accepting connections; we refuse new MCP requests (503) and
end sessions with no call in flight (so their GET streams close); calls in flight finish, bounded
by `shutdown_grace_seconds`; then the app's lifespan ends and the process exits 0.

Workers (`WorkerPool`): the parent binds the port and starts N spawned processes that each
serve it with their own runtime (database pool included). Where the system has SO_REUSEPORT,
each worker gets a listening socket of its own on that port and the kernel spreads new
connections evenly over them (on one shared socket, the worker that wakes first accepts a whole
burst of connections and the others idle). A worker that dies is replaced at once on the same
socket (connections queued meanwhile wait for it, none is reset); a slot whose workers keep
failing to start has its socket closed, so the kernel sends new connections to the living ones
until a replacement binds a new one. The parent only supervises: a worker that dies is replaced, SIGTERM
or SIGINT is forwarded as SIGTERM to every worker (each drains as above), and start-up failures
that keep repeating end the pool with an error. Each worker's responses carry `Mana-Worker: PID`.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from types import FrameType
from typing import Any

import structlog
import uvicorn
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mana_http.app import ManaHttpApp
from tool_registry.errors import ManaError

log = structlog.get_logger("mana.serve")

WORKER_HEADER = b"mana-worker"
# Consecutive workers that die before they are ready, after which a pool that has not served
# yet gives up. Once it served, such a worker is replaced after a growing delay instead: the
# others keep serving (e.g. through a database outage) while it is retried.
MAX_START_FAILURES = 3
RESTART_BACKOFF_SECONDS = 0.5
MAX_RESTART_DELAY_SECONDS = 30.0
# How long the parent gives a worker to stop after SIGTERM beyond the shutdown grace.
STOP_MARGIN_SECONDS = 15.0


class ListenFailed(ManaError):
    """The address cannot be bound (in use, not local, no permission)."""

    reason = "listen-failed"


class WorkersFailed(ManaError):
    """Workers keep dying before they can serve (see their log lines above)."""

    reason = "workers-failed"


class _Server(uvicorn.Server):
    def __init__(
        self,
        config: uvicorn.Config,
        on_exit: Callable[[], None],
        on_ready: Callable[[], None],
        *,
        supervised: bool = False,
    ) -> None:
        super().__init__(config)
        self._on_exit = on_exit
        self._on_ready = on_ready
        self._supervised = supervised
        self._loop: asyncio.AbstractEventLoop | None = None

    async def startup(self, sockets: Any = None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().startup(sockets)
        if self.started and not self.should_exit:
            self._on_ready()

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # A supervised worker stops on its parent's SIGTERM only: Ctrl-C reaches the whole
        # process group, and a second signal would make uvicorn abandon calls in flight.
        if self._supervised and sig == signal.SIGINT:
            return
        super().handle_exit(sig, frame)
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._on_exit)


def _ignore(signum: int, frame: FrameType | None) -> None:
    return None


class _WorkerHeader:
    """Adds `Mana-Worker: <pid>` to every HTTP response, so an operator (and the tests) can see
    which worker process served a request."""

    def __init__(self, app: ASGIApp, pid: int) -> None:
        self._app = app
        self._value = str(pid).encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return

        async def send_with_header(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = dict(message)
                message["headers"] = [*message.get("headers", []), (WORKER_HEADER, self._value)]
            await send(message)

        await self._app(scope, receive, send_with_header)


async def serve_http(
    app: ManaHttpApp,
    *,
    on_ready: Callable[[], None] | None = None,
    sock: socket.socket | None = None,
) -> int:
    """Serve until SIGTERM/SIGINT; 0 after a clean shutdown, 1 if the server did not start.

    `sock`: an already listening socket shared with other workers (see `WorkerPool`); then this
    process is a supervised worker: it names itself in a `Mana-Worker` header, ignores SIGINT
    (its parent forwards SIGTERM) and stops by itself if the parent dies."""
    cfg = app.config
    asgi: ASGIApp = app.asgi if sock is None else _WorkerHeader(app.asgi, os.getpid())
    config = uvicorn.Config(
        asgi,
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
    server = _Server(
        config, app.begin_drain, on_ready or (lambda: None), supervised=sock is not None
    )
    # uvicorn re-raises the signal it shut down for once it is done; with the default SIGTERM
    # disposition that would kill the process (exit -15) after our clean shutdown. A no-op
    # handler underneath makes a SIGTERM shutdown end with exit code 0.
    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _ignore) if main else None
    try:
        with _stop_when_parent_dies(server) if sock is not None else contextlib.nullcontext():
            await server.serve(sockets=None if sock is None else [sock])
    finally:
        if main:
            signal.signal(signal.SIGTERM, previous)
    return 0 if server.started else 1


@contextlib.contextmanager
def _stop_when_parent_dies(server: _Server) -> Any:
    """A worker whose supervisor vanished (SIGKILL, crash) shuts down gracefully instead of
    serving on unsupervised: the parent's sentinel becomes readable when it exits."""
    parent = multiprocessing.parent_process()
    if parent is None:
        yield
        return
    loop = asyncio.get_running_loop()
    sentinel = parent.sentinel

    def gone() -> None:
        loop.remove_reader(sentinel)
        log.warning("the supervising process is gone: stopping this worker", pid=os.getpid())
        server.handle_exit(signal.SIGTERM, None)

    loop.add_reader(sentinel, gone)
    try:
        yield
    finally:
        loop.remove_reader(sentinel)


def bind_socket(host: str, port: int, *, reuse_port: bool = False) -> socket.socket:
    """A listening TCP socket on host:port that worker processes can inherit; with `reuse_port`
    (where the system has SO_REUSEPORT) more sockets may listen on the same port beside it (see
    `WorkerPool`). An address that cannot be bound is one `ListenFailed` line."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port and hasattr(socket, "SO_REUSEPORT"):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        shown = f"[{host}]" if ":" in host else host
        raise ListenFailed(f"cannot listen on {shown}:{port}: {exc.strerror or exc}") from None
    sock.set_inheritable(True)
    return sock


# A worker process's entry point: a top-level function (spawned processes import it by name)
# taking the shared socket, the pipe end on which it sends its pid once it serves, and the
# pool's payload (e.g. the settings it builds its runtime from).
WorkerTarget = Callable[[socket.socket, Connection, Any], None]


@dataclass
class _Worker:
    process: BaseProcess
    ready_pipe: Connection
    ready: bool = False

    def poll_ready(self) -> bool:
        """True once the worker has said it serves (a dead worker's EOF is not readiness)."""
        if not self.ready and self.ready_pipe.poll():
            try:
                self.ready_pipe.recv()
            except EOFError:
                return False
            self.ready = True
            return True
        return False


def _reuses_port(sock: socket.socket) -> bool:
    return hasattr(socket, "SO_REUSEPORT") and bool(
        sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT)
    )


@dataclass
class WorkerPool:
    """N worker processes serving one port, supervised by this process. When `sock` was bound
    with `reuse_port`, every worker gets a socket of its own on that port (`sock` is the first
    slot's); else they all share `sock`."""

    target: WorkerTarget
    payload: Any
    sock: socket.socket
    count: int
    grace_seconds: float
    max_start_failures: int = MAX_START_FAILURES
    restart_backoff_seconds: float = RESTART_BACKOFF_SECONDS
    poll_seconds: float = 0.1
    _ctx: Any = field(init=False, default_factory=lambda: multiprocessing.get_context("spawn"))
    _stop: asyncio.Event = field(init=False, default_factory=asyncio.Event)
    _socks: dict[int, socket.socket] = field(init=False, default_factory=dict)
    _address: tuple[str, int] | None = field(init=False, default=None)

    def _socket_for(self, slot: int) -> socket.socket:
        """The listening socket the worker of `slot` serves: its own one when the port is
        reused (bound anew after its previous worker died), else the shared one."""
        if not _reuses_port(self.sock):
            return self.sock
        sock = self._socks.get(slot)
        if sock is None:
            if self._address is None:  # the first slot serves the socket the pool was given
                self._address = self.sock.getsockname()[:2]
                sock = self.sock
            else:
                host, port = self._address
                sock = bind_socket(host, port, reuse_port=True)
            self._socks[slot] = sock
        return sock

    def _release_socket(self, slot: int, workers: list[_Worker]) -> None:
        """Close the socket of a slot whose worker keeps failing to start (its replacement
        waits a while), so the kernel stops queueing connections nobody accepts, while another
        worker still listens on the port (the port stays ours). A worker that dies after it
        served keeps its socket: the replacement, started at once, accepts what queued."""
        if not _reuses_port(self.sock) or slot not in self._socks:
            return
        others = [w for j, w in enumerate(workers) if j != slot and w.process.exitcode is None]
        if others:
            self._socks.pop(slot).close()

    def stop(self) -> None:
        """Stop the pool as SIGTERM would (from the loop running `run`)."""
        self._stop.set()

    def _start(self, slot: int) -> _Worker:
        reader, writer = self._ctx.Pipe(duplex=False)
        sock = self._socket_for(slot)
        process = self._ctx.Process(
            target=self.target, args=(sock, writer, self.payload), name="mana-worker"
        )
        process.start()
        writer.close()
        log.info("worker started", pid=process.pid)
        return _Worker(process, reader)

    async def run(self, on_ready: Callable[[], None]) -> int:
        """Supervise until SIGTERM/SIGINT (or `stop()`), then stop every worker; `on_ready`
        runs once, when the first N workers all serve. Returns 0 when every worker stopped
        cleanly, else 1; raises `WorkersFailed` when workers keep dying before the pool first
        served (see MAX_START_FAILURES)."""
        loop = asyncio.get_running_loop()
        stop = self._stop
        signals = (signal.SIGTERM, signal.SIGINT)
        main = threading.current_thread() is threading.main_thread()
        if main:
            for sig in signals:
                loop.add_signal_handler(sig, stop.set)
        workers: list[_Worker] = []
        try:
            workers = [self._start(slot) for slot in range(self.count)]
            await self._supervise(workers, stop, on_ready)
        finally:
            if main:
                for sig in signals:
                    loop.remove_signal_handler(sig)
            self.sock.close()
            for sock in self._socks.values():
                sock.close()
            clean = await self._stop_all(workers)
        return 0 if clean else 1

    async def _supervise(
        self, workers: list[_Worker], stop: asyncio.Event, on_ready: Callable[[], None]
    ) -> None:
        announced = False
        failures = 0  # workers in a row that exited before serving
        restart_at: dict[int, float] = {}  # slot -> when its replacement starts
        while not stop.is_set():
            now = time.monotonic()
            for i, worker in enumerate(workers):
                if worker.poll_ready():
                    failures = 0
                code = worker.process.exitcode
                if code is None:
                    continue
                if i not in restart_at:
                    delay = 0.0
                    if not worker.ready:
                        failures += 1
                        if not announced and failures >= self.max_start_failures:
                            raise WorkersFailed(
                                f"{failures} worker processes in a row exited before serving "
                                f"(last exit code {code}); see their log lines above"
                            )
                        delay = min(
                            MAX_RESTART_DELAY_SECONDS,
                            self.restart_backoff_seconds * 2 ** (failures - 1),
                        )
                    log.warning(
                        "worker exited: starting another",
                        pid=worker.process.pid,
                        exit_code=code,
                        served=worker.ready,
                        after_seconds=delay,
                    )
                    restart_at[i] = now + delay
                    if delay > 0:
                        self._release_socket(i, workers)
                if now >= restart_at[i]:
                    del restart_at[i]
                    worker.ready_pipe.close()
                    workers[i] = self._start(i)
            if not announced and all(w.ready for w in workers):
                announced = True
                on_ready()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.poll_seconds)
        log.info("stopping: forwarding SIGTERM to every worker", workers=len(workers))

    async def _stop_all(self, workers: list[_Worker]) -> bool:
        """SIGTERM every live worker, wait for each to drain (bounded), SIGKILL stragglers.
        True when each of them ended with exit code 0 (workers that had already exited were
        reported when they did)."""
        workers = [w for w in workers if w.process.exitcode is None]
        for worker in workers:
            if worker.process.exitcode is None and worker.process.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(worker.process.pid, signal.SIGTERM)
        processes = [w.process for w in workers]
        await asyncio.to_thread(_join_all, processes, self.grace_seconds + STOP_MARGIN_SECONDS)
        clean = True
        for worker in workers:
            if worker.process.exitcode is None:
                log.error("worker did not stop in time: killing it", pid=worker.process.pid)
                worker.process.kill()
            worker.process.join(5)
            worker.ready_pipe.close()
            # A worker still starting has nothing in flight: SIGTERM ending it is a clean stop.
            stopped_starting = not worker.ready and worker.process.exitcode == -signal.SIGTERM
            if worker.process.exitcode != 0 and not stopped_starting:
                clean = False
                log.warning(
                    "worker ended uncleanly", pid=worker.process.pid, code=worker.process.exitcode
                )
        return clean


def _join_all(processes: list[BaseProcess], timeout: float) -> None:
    """Block until every process has exited or `timeout` seconds have passed."""
    deadline = time.monotonic() + timeout
    pending = [p.sentinel for p in processes if p.exitcode is None]
    while pending and (left := deadline - time.monotonic()) > 0:
        done = wait(pending, left)
        pending = [s for s in pending if s not in done]
