"""Serving one client over stdin/stdout: a stdin reader that can be stopped, and streams that
let calls in flight finish and be answered when the client's stream ends."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any, Protocol, cast

import anyio
import mcp_types as types
import structlog
from mcp.shared.message import SessionMessage

if TYPE_CHECKING:
    from mcp_server import McpAdapter

log = structlog.get_logger("mana.mcp")


class StdinLines:
    """The client's side of stdio as an async iterator of lines. A daemon thread reads a private
    duplicate of fd 0 with `os.read` (fd 0 itself points at the null device meanwhile, so a
    child process cannot steal protocol bytes), so `stop()` ends the iteration at once even
    while the client keeps stdin open (SIGTERM), and the blocked read never holds up exit."""

    def __init__(self, fd: int = 0, *, max_queued: int = 64) -> None:
        self._fd = fd
        self._queue: asyncio.Queue[str | None] = asyncio.Queue()
        self._room = threading.Semaphore(max_queued)  # backpressure on a client that floods
        self._stopped = False
        self._private: int | None = None

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._private = os.dup(self._fd)
        null = os.open(os.devnull, os.O_RDONLY)
        try:
            os.dup2(null, self._fd)
        finally:
            os.close(null)
        threading.Thread(
            target=self._read, args=(loop, self._private), name="mana-stdin", daemon=True
        ).start()

    def restore(self) -> None:
        """Point fd 0 back at the client's stream (the reader thread keeps its own copy)."""
        if self._private is not None:
            os.dup2(self._private, self._fd)

    def stop(self) -> None:
        """Read no further line (SIGTERM): the iteration ends as if stdin had ended."""
        self._stopped = True
        self._queue.put_nowait(None)

    def _read(self, loop: asyncio.AbstractEventLoop, fd: int) -> None:
        def hand_over(line: str | None) -> None:
            self._room.acquire()
            loop.call_soon_threadsafe(self._queue.put_nowait, line)

        pending = b""
        try:
            while True:
                chunk = os.read(fd, 65536)
                if not chunk:
                    break
                *lines, pending = (pending + chunk).split(b"\n")
                for line in lines:
                    hand_over(line.decode("utf-8", "replace") + "\n")
            if pending:
                hand_over(pending.decode("utf-8", "replace"))
            hand_over(None)
        except (OSError, RuntimeError):
            # stdin failed, or the event loop is gone (serving ended): nobody reads any more
            return

    def __aiter__(self) -> StdinLines:
        return self

    async def __anext__(self) -> str:
        line = None if self._stopped else await self._queue.get()
        if line is not None:
            self._room.release()
        if line is None or self._stopped:
            raise StopAsyncIteration
        return line


RequestKey = str | int


class InboundStream(Protocol):
    """What the stdio transport hands the server to read (the SDK's read stream)."""

    def __aiter__(self) -> AsyncIterator[SessionMessage | Exception]: ...


class OutboundStream(Protocol):
    """What the stdio transport hands the server to write to (the SDK's write stream)."""

    async def send(self, item: SessionMessage, /) -> None: ...

    async def aclose(self) -> None: ...


class DrainingStreams:
    """Sits between the stdio transport and the server. Tracks the requests the client sent
    that are not answered yet; when the client's stream ends (stdin EOF, or `StdinLines.stop`
    on SIGTERM) it holds the end back from the server until every one of them was answered or
    `grace_seconds` passed, so calls in flight finish and their responses reach stdout while it
    is still open. Only then does the server see the end (and cancel what still runs)."""

    def __init__(
        self,
        outer_read: InboundStream,
        outer_write: OutboundStream,
        grace_seconds: float,
    ) -> None:
        self._outer_read = outer_read
        self._outer_write = outer_write
        self._grace = grace_seconds
        self._in_send, self.read = anyio.create_memory_object_stream[SessionMessage | Exception]()
        self.write, self._out_recv = anyio.create_memory_object_stream[SessionMessage]()
        self._unanswered: set[RequestKey] = set()
        self._answered_all: anyio.Event | None = None

    async def pump_in(self) -> None:
        async with self._in_send:
            async for item in self._outer_read:
                if isinstance(item, SessionMessage):
                    self._note_inbound(item.message)
                try:
                    await self._in_send.send(item)
                except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                    return  # the server stopped reading
            if self._unanswered:
                log.info(
                    "stdin ended; waiting for calls in flight",
                    in_flight=len(self._unanswered),
                    grace_s=self._grace,
                )
                self._answered_all = anyio.Event()
                with anyio.move_on_after(self._grace):
                    await self._answered_all.wait()
                if self._unanswered:
                    log.warning(
                        "stopping calls still running at the shutdown deadline",
                        count=len(self._unanswered),
                    )

    async def pump_out(self) -> None:
        try:
            async with self._out_recv:
                async for item in self._out_recv:
                    await self._outer_write.send(item)
                    message = item.message
                    if isinstance(message, types.JSONRPCResponse | types.JSONRPCError):
                        self._settled(message.id)
        finally:
            await self._outer_write.aclose()

    def _note_inbound(self, message: types.JSONRPCMessage) -> None:
        if isinstance(message, types.JSONRPCRequest):
            self._unanswered.add(message.id)
        elif (
            isinstance(message, types.JSONRPCNotification)
            and message.method == "notifications/cancelled"
            and isinstance(message.params, Mapping)
        ):
            # A cancelled request is never answered: do not wait for it.
            request_id = message.params.get("requestId")
            if isinstance(request_id, str | int):
                self._settled(request_id)

    def _settled(self, request_id: RequestKey | None) -> None:
        if request_id is not None:
            self._unanswered.discard(request_id)
        if not self._unanswered and self._answered_all is not None:
            self._answered_all.set()


async def serve_stdio(
    adapter: McpAdapter,
    *,
    grace_seconds: float = 10.0,
    stdin: StdinLines | None = None,
) -> None:
    """Serve one client over stdin/stdout until stdin ends or `stdin.stop()` (SIGTERM); then
    the calls in flight finish (bounded by `grace_seconds`) and are answered before stdout is
    released. Nothing but protocol goes to stdout: the transport diverts fd 1 to stderr while it
    runs, and logs go to stderr."""
    from mcp.server.stdio import stdio_server

    lines = stdin or StdinLines()
    lines.start()
    try:
        async with stdio_server(stdin=cast(Any, lines)) as (read, write):
            streams = DrainingStreams(read, write, grace_seconds)
            async with anyio.create_task_group() as tg:
                tg.start_soon(streams.pump_in)
                tg.start_soon(streams.pump_out)
                await adapter.server.run(
                    streams.read, streams.write, adapter.server.create_initialization_options()
                )
    finally:
        lines.restore()
