"""This server as an OAuth protected resource (RFC 9728): its public URL, the metadata document
remote MCP clients discover the authorization server from, and the `WWW-Authenticate`
challenge every 401 of the MCP endpoint carries (RFC 6750), pointing at that document.

`ResourceServer` is built once by the composition root (`build_http_app`) from `HttpConfig`
and `AuthSetup`; the guard, the routes and the token verifier's accepted audience all read the
resource URL from it, so the URL a client is told and the URL a token must name are one value.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from tool_registry.access_scopes import SCOPES

MCP_PATH = "/mcp"
METADATA_PATH = "/.well-known/oauth-protected-resource"
# RFC 9728 §3.1: the well-known suffix followed by the resource's path
METADATA_PATHS = (METADATA_PATH, METADATA_PATH + MCP_PATH)
RESOURCE_NAME = "Mana"
CACHE_SECONDS = 300
_LOOPBACK_NAMES = frozenset({"localhost"})


def _is_loopback(host: str) -> bool:
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_public_url(text: str) -> str:
    """The externally visible base URL, normalised without a trailing slash. Raises
    `ValueError` with a one-line reason: it must be an absolute http(s) URL without query,
    fragment or credentials, and https unless its host is loopback (tokens travel to it)."""
    url = text.strip().rstrip("/")
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise ValueError(f"{text!r} is not a URL") from None
    if parts.scheme not in ("http", "https") or not host:
        raise ValueError(f"{text!r} is not an absolute http(s) URL (e.g. https://mana.example)")
    if parts.query or parts.fragment or "?" in url or "#" in url:
        raise ValueError(f"{text!r} must not have a query or fragment")
    if parts.username is not None or parts.password is not None:
        raise ValueError(f"{text!r} must not carry credentials")
    if parts.scheme == "http" and not _is_loopback(host):
        raise ValueError(f"{text!r} must be https (plain http only on a loopback host)")
    return url


def loopback_base(host: str, port: int) -> str:
    """The server's own URL when no public URL is configured (what `mana serve` prints)."""
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


def _quoted(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', "'")


@dataclass(frozen=True)
class ResourceServer:
    """The MCP endpoint as a protected resource: `base_url` is the externally visible base
    (MANA_PUBLIC_URL, else loopback), `authorization_servers` the issuers whose tokens it takes
    (an external one with MANA_JWKS_URL, else this server's own base URL)."""

    base_url: str
    authorization_servers: tuple[str, ...]
    scopes: tuple[str, ...] = SCOPES

    @classmethod
    def of(
        cls, *, public_url: str | None, host: str, port: int, external_issuer: str | None
    ) -> ResourceServer:
        base = check_public_url(public_url) if public_url else loopback_base(host, port)
        return cls(base_url=base, authorization_servers=(external_issuer or base,))

    @property
    def resource(self) -> str:
        """The resource identifier: the MCP endpoint URL, also an accepted token audience."""
        return self.base_url + MCP_PATH

    @property
    def metadata_url(self) -> str:
        return self.base_url + METADATA_PATH + MCP_PATH

    def document(self) -> dict[str, object]:
        return {
            "resource": self.resource,
            "authorization_servers": list(self.authorization_servers),
            "scopes_supported": list(self.scopes),
            "bearer_methods_supported": ["header"],
            "resource_name": RESOURCE_NAME,
        }

    def challenge(
        self,
        error: str | None = None,
        description: str | None = None,
        *,
        scope: tuple[str, ...] | None = None,
    ) -> bytes:
        """The `WWW-Authenticate` value of a 401: where to find the metadata and which scopes
        to ask for; `error="invalid_token"` when a token was presented and refused. A 403
        `error="insufficient_scope"` names in `scope` the scopes the request needs."""
        parts = [
            f'Bearer resource_metadata="{self.metadata_url}"',
            f'scope="{" ".join(self.scopes if scope is None else scope)}"',
        ]
        if error:
            parts.append(f'error="{error}"')
        if description:
            parts.append(f'error_description="{_quoted(description)}"')
        return ", ".join(parts).encode()

    async def metadata(self, request: Request) -> Response:
        """`GET` of either metadata path: public, cacheable (CORS: see `OriginGuard`)."""
        return JSONResponse(
            self.document(), headers={"cache-control": f"public, max-age={CACHE_SECONDS}"}
        )


__all__ = [
    "METADATA_PATHS",
    "SCOPES",
    "ResourceServer",
    "check_public_url",
    "loopback_base",
]
