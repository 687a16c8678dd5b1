"""A plain round-robin HTTP/1.1 reverse proxy on 127.0.0.1 for tests and benchmarks: what an
operator puts in front of several `mana serve --http` replicas, without any stickiness.

Every request goes to the next backend in turn (request by request: the proxy answers each
client connection once, with `Connection: close`, so a client's next request opens a new
connection and lands on the next backend). Responses are streamed through as they arrive, so
SSE answers and long-lived GET streams work; when the client goes away the backend connection
is closed too. Bodies sent with `Content-Length` or chunked are forwarded unchanged.

    async with RoundRobinProxy([("127.0.0.1", a.port), ("127.0.0.1", b.port)]) as proxy:
        url = proxy.url + "/mcp"
        ...
        proxy.routed  # [(method, path, backend index), ...] in arrival order

`set_headers` are put on every forwarded request in place of the client's own header of the
same name (e.g. an `Authorization` for a client that cannot send one).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from types import TracebackType

_MAX_HEAD = 64 * 1024
_HOP_BY_HOP = frozenset({b"connection", b"keep-alive", b"proxy-connection"})


class RoundRobinProxy:
    def __init__(
        self,
        backends: Sequence[tuple[str, int]],
        *,
        host: str = "127.0.0.1",
        set_headers: Sequence[tuple[str, str]] = (),
    ) -> None:
        if not backends:
            raise ValueError("a proxy needs at least one backend")
        self.backends = list(backends)
        self.host = host
        self.port = 0
        self.routed: list[tuple[str, str, int]] = []
        self._set = [(k.encode("latin-1"), b" " + v.encode("latin-1")) for k, v in set_headers]
        self._turn = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def served_by(self, index: int) -> int:
        """How many requests backend `index` got."""
        return sum(1 for _, _, i in self.routed if i == index)

    async def __aenter__(self) -> RoundRobinProxy:
        self._server = await asyncio.start_server(self._accept, self.host, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._server is not None:
            await self._server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._one_request(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass  # a client or backend that went away ends its exchange
        finally:
            self._tasks.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _one_request(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        if len(head) > _MAX_HEAD:
            return
        request_line, *header_lines = head[:-4].split(b"\r\n")
        method, path, _ = request_line.decode("latin-1").split(" ", 2)
        headers = [line.split(b":", 1) for line in header_lines if b":" in line]
        body = await _body(reader, headers)
        index = self._turn % len(self.backends)
        self._turn += 1
        self.routed.append((method, path, index))
        upstream_reader, upstream_writer = await asyncio.open_connection(*self.backends[index])
        try:
            replaced = _HOP_BY_HOP | {k.lower() for k, _ in self._set}
            kept = [(k, v) for k, v in headers if k.strip().lower() not in replaced]
            kept += self._set
            upstream_writer.write(
                request_line
                + b"\r\n"
                + b"".join(k + b":" + v + b"\r\n" for k, v in kept)
                + b"Connection: close\r\n\r\n"
                + body
            )
            await upstream_writer.drain()
            await _pipe_until_either_ends(upstream_reader, writer, reader)
        finally:
            upstream_writer.close()
            with contextlib.suppress(ConnectionError):
                await upstream_writer.wait_closed()


async def _body(reader: asyncio.StreamReader, headers: list[list[bytes]]) -> bytes:
    """The raw request body (chunked framing kept as sent)."""
    fields = {k.strip().lower(): v.strip() for k, v in headers}
    if fields.get(b"transfer-encoding", b"").lower() == b"chunked":
        raw = b""
        while True:
            size_line = await reader.readuntil(b"\r\n")
            raw += size_line
            size = int(size_line.split(b";", 1)[0], 16)
            if size == 0:
                raw += await reader.readuntil(b"\r\n")  # trailers are not used by MCP clients
                return raw
            raw += await reader.readexactly(size + 2)
    length = int(fields.get(b"content-length", b"0") or b"0")
    return await reader.readexactly(length) if length else b""


async def _pipe_until_either_ends(
    upstream: asyncio.StreamReader, client: asyncio.StreamWriter, client_in: asyncio.StreamReader
) -> None:
    """Copy the backend's response to the client until the backend closes, or stop early
    when the client closes its side (e.g. it ended a GET stream)."""

    async def copy() -> None:
        while chunk := await upstream.read(65536):
            client.write(chunk)
            await client.drain()

    async def client_gone() -> None:
        while await client_in.read(65536):
            pass

    copying = asyncio.ensure_future(copy())
    watching = asyncio.ensure_future(client_gone())
    try:
        await asyncio.wait({copying, watching}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (copying, watching):
            task.cancel()
        for task in (copying, watching):
            with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                await task


__all__ = ["RoundRobinProxy"]
