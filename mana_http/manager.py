"""The `mcp` session manager, handed only requests that fully arrived.

A client that drops its connection before the server has read its POST body (a cancelled or
timed-out call, a closed tab) leaves a request that can never be answered. The SDK reads the
body itself and treats the disconnect as a failure (a logged traceback on the 2025-11-25 path,
an exception out of the ASGI app on the 2026-07-28 path). Reading the body first, bounded like
the SDK bounds it, lets such a request end quietly, before any of it runs.
"""

from __future__ import annotations

from collections import deque

import structlog
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from starlette.types import Message, Receive, Scope, Send

log = structlog.get_logger("mana.http")


class BodyFirstSessionManager(StreamableHTTPSessionManager):
    async def handle_request(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            replay = await _whole_body(receive, self.max_request_body_size)
            if replay is None:
                log.debug("client left before its request arrived", path=scope["path"])
                return
            receive = replay
        await super().handle_request(scope, receive, send)


async def _whole_body(receive: Receive, limit: int) -> Receive | None:
    """A `receive` that replays the request body read now, or None when the client
    disconnected before the body was complete. Past `limit` bytes it stops reading and leaves
    the rest (and the 413) to the SDK."""
    cached: deque[Message] = deque()
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        cached.append(message)
        size += len(message.get("body", b""))
        if not message.get("more_body", False) or size > limit:
            break

    async def replay() -> Message:
        if cached:
            return cached.popleft()
        return await receive()

    return replay
