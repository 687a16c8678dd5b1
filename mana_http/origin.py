"""The Origin/Host check in front of every route, and the CORS answers for allowed browser
origins (the MCP endpoint) and for public documents any origin may read."""

from __future__ import annotations

import re

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mana_http.metrics import Metrics
from mana_http.responses import rpc_error, send_json


def _pattern(allowed: str) -> re.Pattern[str]:
    """`http://localhost:*` matches any port; anything else matches exactly."""
    if allowed.endswith(":*"):
        return re.compile(re.escape(allowed[:-2]) + r"(:\d{1,5})?")
    return re.compile(re.escape(allowed))


class OriginGuard:
    """Browsers send `Origin`; a request with an Origin not on the allowlist is refused (403).
    Requests without Origin (non-browser clients) pass. When bound to loopback the `Host` header
    must name a loopback host too (DNS-rebinding defence) → 421 otherwise. Allowed browser
    origins get minimal CORS headers (and OPTIONS preflights an answer). `public_paths` are
    public documents (e.g. the resource metadata) any origin may read: `*`, no credentials."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        allowed_origins: tuple[str, ...],
        loopback_only_hosts: bool,
        metrics: Metrics,
        public_paths: frozenset[str] = frozenset(),
    ) -> None:
        self.app = app
        self.public_paths = public_paths
        self.origins = [_pattern(o) for o in allowed_origins]
        self.loopback_only_hosts = loopback_only_hosts
        self.metrics = metrics
        self._host = re.compile(r"(127\.0\.0\.1|localhost|\[::1\])(:\d{1,5})?")

    def origin_allowed(self, origin: str) -> bool:
        return any(p.fullmatch(origin) for p in self.origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        origin: bytes | None = None
        host: bytes | None = None
        for name, value in scope["headers"]:
            if name == b"origin":
                origin = value
            elif name == b"host":
                host = value
        if self.loopback_only_hosts and (
            host is None or not self._host.fullmatch(host.decode("latin-1"))
        ):
            self.metrics.auth_failure("host-not-allowed")
            await send_json(send, 421, rpc_error("Invalid Host header", "host-not-allowed"))
            return
        if origin is None:
            await self.app(scope, receive, send)
            return
        if scope["path"] in self.public_paths:
            await self._public(scope, receive, send)
            return
        text = origin.decode("latin-1")
        if not self.origin_allowed(text):
            self.metrics.auth_failure("origin-not-allowed")
            await send_json(send, 403, rpc_error(f"origin {text!r} is not allowed", "origin"))
            return
        await self._with_cors(
            scope,
            receive,
            send,
            [
                (b"access-control-allow-origin", origin),
                (b"vary", b"Origin"),
                (b"access-control-expose-headers", b"Mcp-Session-Id, WWW-Authenticate"),
            ],
            methods=b"GET, POST, DELETE, OPTIONS",
            allow_headers=b"Authorization, Content-Type, Accept, X-Mana-Space, "
            b"Mcp-Session-Id, Mcp-Protocol-Version, Mcp-Method, Mcp-Name, Last-Event-ID",
        )

    async def _public(self, scope: Scope, receive: Receive, send: Send) -> None:
        """A browser reading a public document: any origin, read-only methods."""
        await self._with_cors(
            scope,
            receive,
            send,
            [(b"access-control-allow-origin", b"*")],
            methods=b"GET, OPTIONS",
            allow_headers=b"MCP-Protocol-Version",
        )

    async def _with_cors(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        cors: list[tuple[bytes, bytes]],
        *,
        methods: bytes,
        allow_headers: bytes,
    ) -> None:
        """Answer a preflight (OPTIONS) with `cors` plus the allowed methods and headers, or
        pass the request on and add `cors` to its response."""
        if scope["method"] == "OPTIONS":
            await send(
                {
                    "type": "http.response.start",
                    "status": 204,
                    "headers": [
                        *cors,
                        (b"access-control-allow-methods", methods),
                        (b"access-control-allow-headers", allow_headers),
                        (b"access-control-max-age", b"600"),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": b""})
            return

        async def with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", ()), *cors]}
            await send(message)

        await self.app(scope, receive, with_cors)


__all__ = ["OriginGuard"]
