"""This server as an OAuth protected resource (RFC 9728): its public URL, the metadata document
remote MCP clients discover the authorization server from, and the `WWW-Authenticate`
challenge every 401 of the MCP endpoint carries (RFC 6750), pointing at that document.

`ResourceServer` is built once by the composition root (`build_http_app`) from `HttpConfig`
and `AuthSetup`; the guard, the routes and the token verifier's accepted audience all read the
resource URL from it, so the URL a client is told and the URL a token must name are one value.

Bound to loopback without a public URL, the server answers to each loopback name
(`127.0.0.1`, `localhost`, `[::1]`): `for_scope` gives, per request, the `ResourceServer` of the
name its `Host` used (the Origin/Host check admits no other), so a client given
`http://localhost:3069/mcp` is told that URL, as MCP clients and RFC 8414 require. With a public
URL, or on any other bind, every request gets the one base URL and `Host` is never read.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Scope

from mana_auth.hosts import is_loopback_host
from tool_registry.access_scopes import SCOPES

MCP_PATH = "/mcp"
METADATA_PATH = "/.well-known/oauth-protected-resource"
# RFC 9728 §3.1: the well-known suffix followed by the resource's path
METADATA_PATHS = (METADATA_PATH, METADATA_PATH + MCP_PATH)
RESOURCE_NAME = "Mana"
CACHE_SECONDS = 300
# the loopback host names a request to a loopback-bound server may use, as `Host` spells them
LOOPBACK_ALIASES = ("127.0.0.1", "localhost", "[::1]")


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
    if parts.scheme == "http" and not is_loopback_host(host):
        raise ValueError(f"{text!r} must be https (plain http only on a loopback host)")
    return url


def loopback_base(host: str, port: int) -> str:
    """The server's own URL when no public URL is configured (what `mana serve` prints)."""
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


def _host_name(host: str) -> str:
    """The name part of a `Host` value: `[::1]:3069` → `[::1]`, `localhost:3069` → `localhost`."""
    if host.startswith("["):
        return host[: host.find("]") + 1]
    return host.partition(":")[0]


def _quoted(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', "'")


@dataclass(frozen=True)
class ResourceServer:
    """The MCP endpoint as a protected resource: `base_url` is the externally visible base
    (MANA_PUBLIC_URL, else loopback), `authorization_servers` the issuers whose tokens it takes
    (an external one with MANA_JWKS_URL, else this server's own base URL). `aliases` maps a
    loopback `Host` name to the `ResourceServer` a request using it sees (empty: one base for
    every request)."""

    base_url: str
    authorization_servers: tuple[str, ...]
    scopes: tuple[str, ...] = SCOPES
    aliases: Mapping[str, ResourceServer] = field(
        default_factory=lambda: MappingProxyType({}), compare=False, repr=False
    )

    @classmethod
    def of(
        cls,
        *,
        public_url: str | None,
        host: str,
        port: int,
        external_issuer: str | None,
        loopback: bool = False,
    ) -> ResourceServer:
        """`loopback`: the server is bound to a loopback address and its Origin/Host check
        admits only `LOOPBACK_ALIASES` in `Host`; without a public URL each of those names then
        describes the server to the requests that use it (on `port`)."""
        if public_url:
            return cls._at(check_public_url(public_url), external_issuer)
        canonical = cls._at(loopback_base(host, port), external_issuer)
        if not loopback:
            return canonical
        aliases = {
            name: cls._at(loopback_base(name.strip("[]"), port), external_issuer)
            for name in LOOPBACK_ALIASES
        }
        return cls(
            base_url=canonical.base_url,
            authorization_servers=canonical.authorization_servers,
            aliases=MappingProxyType(aliases),
        )

    @classmethod
    def _at(cls, base: str, external_issuer: str | None) -> ResourceServer:
        """The resource at `base`; the built-in authorization server's issuer is `base` too."""
        return cls(base_url=base, authorization_servers=(external_issuer or base,))

    def for_host(self, host: str | None) -> ResourceServer:
        """The resource as a request whose `Host` is `host` sees it: its loopback alias when
        there are aliases and `host` names one (with any port: the server's own is used), else
        this one."""
        if not self.aliases or host is None:
            return self
        return self.aliases.get(_host_name(host), self)

    def for_scope(self, scope: Scope) -> ResourceServer:
        """`for_host` of an ASGI request's `Host` header (sent once: `SingleHeaders` refuses a
        repeated one before the Origin/Host check sees it)."""
        if not self.aliases:
            return self
        for name, value in scope["headers"]:
            if name == b"host":
                return self.for_host(value.decode("latin-1"))
        return self

    @property
    def sites(self) -> tuple[ResourceServer, ...]:
        """Every way this server describes itself: the canonical one, then each alias."""
        seen = {self.base_url: self}
        for alias in self.aliases.values():
            seen.setdefault(alias.base_url, alias)
        return tuple(seen.values())

    @property
    def resources(self) -> tuple[str, ...]:
        """Every resource URL a token of this server may be issued for (the audiences)."""
        return tuple(site.resource for site in self.sites)

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
        """`GET` of either metadata path: public, cacheable (CORS: see `OriginGuard`); it
        names the resource as the request's `Host` reached it (`for_scope`)."""
        return JSONResponse(
            self.for_scope(request.scope).document(),
            headers={"cache-control": f"public, max-age={CACHE_SECONDS}"},
        )


__all__ = [
    "LOOPBACK_ALIASES",
    "METADATA_PATHS",
    "SCOPES",
    "ResourceServer",
    "check_public_url",
    "loopback_base",
]
