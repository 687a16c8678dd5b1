"""The Origin/Host check in front of every route, and the CORS answers for allowed browser
origins (the MCP endpoint) and for public endpoints any origin may call (documents such as the
resource metadata, the authorization server's token, revocation and registration endpoints)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mana_http.metrics import Metrics
from mana_http.responses import rpc_error, send_json


def _pattern(allowed: str) -> re.Pattern[str]:
    """`http://localhost:*` matches any port; anything else matches exactly."""
    if allowed.endswith(":*"):
        return re.compile(re.escape(allowed[:-2]) + r"(:\d{1,5})?")
    return re.compile(re.escape(allowed))


@dataclass(frozen=True)
class PublicEndpoint:
    """A route any browser origin may call without credentials (`Access-Control-Allow-Origin:
    *`, never cookies): its preflight allows exactly `methods` (plus OPTIONS) and the request
    `headers` a browser-based client sends beyond the CORS-safelisted ones. Such a route must
    not rely on ambient authority (cookies): whatever it needs comes in the request itself."""

    methods: tuple[str, ...] = ("GET",)
    headers: tuple[str, ...] = ("MCP-Protocol-Version",)

    def allow_methods(self) -> bytes:
        return ", ".join((*self.methods, "OPTIONS")).encode("latin-1")

    def allow_headers(self) -> bytes:
        return ", ".join(self.headers).encode("latin-1")


# a public document: read-only, with the MCP client's protocol version header
PUBLIC_DOCUMENT = PublicEndpoint()


class OriginGuard:
    """Browsers send `Origin`; a request with an Origin not on the allowlist is refused (403).
    Requests without Origin (non-browser clients) pass. When bound to loopback the `Host` header
    must name a loopback host too (DNS-rebinding defence) → 421 otherwise. Allowed browser
    origins get minimal CORS headers (and OPTIONS preflights an answer). `public_endpoints`
    (path → `PublicEndpoint`) may be called from any origin: `*`, no credentials;
    `public_paths` is shorthand for public GET documents (e.g. the resource metadata)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        allowed_origins: tuple[str, ...],
        loopback_only_hosts: bool,
        metrics: Metrics,
        public_paths: frozenset[str] = frozenset(),
        public_endpoints: Mapping[str, PublicEndpoint] = MappingProxyType({}),
    ) -> None:
        self.app = app
        self.public: dict[str, PublicEndpoint] = {
            **dict.fromkeys(public_paths, PUBLIC_DOCUMENT),
            **public_endpoints,
        }
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
        public = self.public.get(scope["path"])
        if public is not None:
            await self._with_cors(
                scope,
                receive,
                send,
                [(b"access-control-allow-origin", b"*")],
                methods=public.allow_methods(),
                allow_headers=public.allow_headers(),
            )
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


__all__ = ["PUBLIC_DOCUMENT", "OriginGuard", "PublicEndpoint"]
