"""Client ID Metadata Documents (draft-ietf-oauth-client-id-metadata-document, the MCP
2025-11-25 authorization spec's preferred client registration): a `client_id` that is an https
URL names a JSON document the client publishes about itself, which this server fetches.

Fetching a URL a stranger chose is a server-side request forgery risk, so every fetch here
resolves the host itself, refuses any address that is not public (private, loopback,
link-local, multicast, reserved, unspecified, or such an address embedded in IPv6), then
connects to exactly the checked address (the URL carries the IP; `Host` and the TLS server
name carry the real name, so certificates still verify). No redirects are followed, the whole
fetch has one time limit and the body is capped while it streams. Loopback documents are
fetched only for origins an operator allowlisted (`MANA_OAUTH_LOOPBACK_CLIENTS`: development
and tests).

This module knows URLs, addresses and HTTP; the client metadata inside the document is
validated by `mana_oauth.clients` with the same rules as dynamic registration.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import re
import socket
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import anyio
import httpx

from mana_auth.hosts import is_loopback_host

DEFAULT_CACHE_SECONDS = 3600.0
MAX_URL_LENGTH = 2000
_DEFAULT_PORTS = {"http": 80, "https": 443}
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_MAX_AGE = re.compile(r"(?:^|,)\s*(?:s-maxage|max-age)\s*=\s*\"?(\d{1,10})\"?\s*(?:,|$)", re.I)
_UNCACHEABLE = re.compile(r"(?:^|,)\s*(?:no-store|no-cache)\s*(?:,|=|$)", re.I)
_PRINTABLE_ASCII = re.compile(r"[\x21-\x7e]+")
_USER_AGENT = "Mana-OAuth (client metadata document fetch)"

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Awaitable[Sequence[str]]]
"""`(host, port) -> addresses` as text; the fetcher checks every one before connecting."""


class CimdError(Exception):
    """A metadata document URL or its fetch was refused; `description` names the URL and what
    was wrong (the client registry turns it into an `invalid_client` OAuth error)."""

    def __init__(self, description: str) -> None:
        super().__init__(description)
        self.description = description


def is_metadata_url(client_id: str) -> bool:
    """Whether a `client_id` names a metadata document (an http(s) URL) rather than a client
    this server registered itself. Whether the URL is acceptable is `check_url`'s question."""
    return client_id.startswith(("https://", "http://"))


def _origin_key(scheme: str, host: str, port: int | None) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"{scheme}://{shown.lower()}:{port or _DEFAULT_PORTS[scheme]}"


def parse_loopback_origins(text: str) -> frozenset[str]:
    """`MANA_OAUTH_LOOPBACK_CLIENTS`: comma-separated origins such as `http://127.0.0.1:8123`
    whose metadata documents may be fetched from loopback. Raises `ValueError` with a one-line
    reason for an entry that is not a bare http(s) origin on a loopback host."""
    origins: set[str] = set()
    for raw in text.split(","):
        entry = raw.strip().rstrip("/")
        if not entry:
            continue
        try:
            parts = urlsplit(entry)
            port = parts.port
        except ValueError:
            raise ValueError(f"{entry!r} is not an origin (e.g. http://127.0.0.1:8123)") from None
        host = parts.hostname
        if (
            parts.scheme not in _DEFAULT_PORTS
            or not host
            or parts.path
            or parts.query
            or parts.fragment
            or parts.username is not None
        ):
            raise ValueError(f"{entry!r} is not an origin (e.g. http://127.0.0.1:8123)")
        if not is_loopback_host(host):
            raise ValueError(f"{entry!r} is not a loopback origin (127.0.0.1, ::1 or localhost)")
        origins.add(_origin_key(parts.scheme, host, port))
    return frozenset(origins)


@dataclass(frozen=True)
class CimdPolicy:
    """Limits of metadata document fetches. `loopback_origins` (MANA_OAUTH_LOOPBACK_CLIENTS)
    are origins like `http://127.0.0.1:8123` whose documents may be fetched over plain http
    from loopback; `max_bytes` caps the body, `timeout` the whole fetch (seconds), and a
    document's `Cache-Control: max-age` is clamped to [`min_cache`, `max_cache`] seconds."""

    loopback_origins: frozenset[str] = frozenset()
    max_bytes: int = 5120
    timeout: float = 5.0
    min_cache: float = 300.0
    max_cache: float = 86400.0
    _loopback_keys: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        keys = parse_loopback_origins(",".join(self.loopback_origins))
        object.__setattr__(self, "_loopback_keys", keys)

    def loopback_allowed(self, scheme: str, host: str, port: int | None) -> bool:
        return _origin_key(scheme, host, port) in self._loopback_keys

    def cache_seconds(self, cache_control: str | None) -> float:
        """How long a fetched document is trusted: its max-age clamped to the policy's
        bounds; one hour when the server says nothing; the minimum for no-store/no-cache."""
        wanted = DEFAULT_CACHE_SECONDS
        if cache_control:
            if _UNCACHEABLE.search(cache_control):
                wanted = 0.0
            elif match := _MAX_AGE.search(cache_control):
                wanted = float(match.group(1))
        return min(max(wanted, self.min_cache), self.max_cache)


@dataclass(frozen=True)
class MetadataUrl:
    """A `client_id` URL that passed the shape checks: what to resolve and how to name it."""

    url: str
    scheme: str
    host: str
    port: int
    loopback_allowed: bool

    @property
    def host_header(self) -> str:
        shown = f"[{self.host}]" if ":" in self.host else self.host
        if self.port == _DEFAULT_PORTS[self.scheme]:
            return shown
        return f"{shown}:{self.port}"


def check_url(url: str, policy: CimdPolicy) -> MetadataUrl:
    """The draft's URL rules: https (http only for an allowlisted loopback origin), a host, a
    path other than `/` without `.`/`..` segments, no credentials, no fragment; and printable
    ASCII only, so the URL is the same string to every parser. Raises `CimdError`."""
    if len(url) > MAX_URL_LENGTH:
        raise CimdError(f"client_id URL is longer than {MAX_URL_LENGTH} characters")
    if not _PRINTABLE_ASCII.fullmatch(url):
        raise CimdError(
            f"client_id {url!r} must be printable ASCII without spaces "
            "(percent-encoded, an IDN host in its xn-- form)"
        )
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise CimdError(f"client_id {url!r} is not a valid URL") from None
    host = parts.hostname
    if parts.scheme not in _DEFAULT_PORTS or not host:
        raise CimdError(f"client_id {url!r} is not an absolute https URL")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise CimdError(f"client_id {url!r} must not carry credentials")
    if parts.fragment or "#" in url:
        raise CimdError(f"client_id {url!r} must not have a fragment")
    if len(parts.path) <= 1:
        raise CimdError(f"client_id {url!r} must have a path naming the metadata document")
    if any(segment in (".", "..") for segment in parts.path.split("/")):
        raise CimdError(f"client_id {url!r} must not contain '.' or '..' path segments")
    loopback = policy.loopback_allowed(parts.scheme, host, port)
    if parts.scheme == "http" and not loopback:
        raise CimdError(
            f"client_id {url!r} must be https (plain http only for an allowlisted loopback origin)"
        )
    return MetadataUrl(
        url=url,
        scheme=parts.scheme,
        host=host,
        port=port or _DEFAULT_PORTS[parts.scheme],
        loopback_allowed=loopback,
    )


def _embedded_ipv4(address: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """IPv4 addresses an IPv6 address reaches through (mapped, 6to4, NAT64, Teredo)."""
    found: list[ipaddress.IPv4Address] = []
    if address.ipv4_mapped is not None:
        found.append(address.ipv4_mapped)
    if address.sixtofour is not None:
        found.append(address.sixtofour)
    if address.teredo is not None:
        found.extend(address.teredo)
    if address in _NAT64:
        found.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    return found


def address_refusal(text: str, *, loopback_ok: bool) -> str | None:
    """Why a resolved address may not be fetched from, or None when it may: it must be
    public (global unicast), also every IPv4 address it embeds; loopback only when allowed."""
    try:
        address: Address = ipaddress.ip_address(text)
    except ValueError:
        return f"{text!r} is not an IP address"
    if isinstance(address, ipaddress.IPv6Address):
        address = address.ipv4_mapped or address
    if loopback_ok and address.is_loopback:
        return None
    candidates: list[Address] = [address]
    if isinstance(address, ipaddress.IPv6Address):
        candidates[:0] = _embedded_ipv4(address)
    for candidate in candidates:
        if candidate.is_loopback:
            return f"{candidate} is a loopback address"
        if candidate.is_link_local:
            return f"{candidate} is a link-local address"
        if candidate.is_multicast:
            return f"{candidate} is a multicast address"
        if candidate.is_unspecified:
            return f"{candidate} is the unspecified address"
        if candidate.is_private:
            return f"{candidate} is a private address"
        if candidate.is_reserved or not candidate.is_global:
            return f"{candidate} is not a public address"
    return None


async def system_resolver(host: str, port: int) -> list[str]:
    """The host's addresses from the operating system's resolver (without IPv6 zone ids)."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]).split("%", 1)[0] for info in infos]


@dataclass(frozen=True)
class FetchedDocument:
    """A metadata document as fetched: the JSON object and how long it may be cached."""

    document: dict[str, Any]
    cache_seconds: float


def _json_content_type(value: str | None) -> bool:
    media = (value or "").split(";", 1)[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


class CimdFetcher:
    """Fetches metadata documents under a `CimdPolicy` (see the module docstring for the SSRF
    rules). `resolver` and `transport` are injectable so tests control DNS and the wire."""

    def __init__(
        self,
        policy: CimdPolicy,
        *,
        resolver: Resolver | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.policy = policy
        self._resolver: Resolver = resolver or system_resolver
        self._transport = transport

    async def fetch(self, url: str) -> FetchedDocument:
        """Resolve, check, fetch and parse the document at `url`. Raises `CimdError` naming
        the URL for every refusal (bad URL, refused address, redirect, non-200, not JSON, too
        large, too slow, unreachable)."""
        target = check_url(url, self.policy)
        try:
            with anyio.fail_after(self.policy.timeout):
                addresses = await self._checked_addresses(target)
                return await self._get(target, addresses)
        except TimeoutError:
            raise CimdError(
                f"fetching {url!r} took longer than {self.policy.timeout:g} s"
            ) from None

    async def _checked_addresses(self, target: MetadataUrl) -> list[str]:
        """Every address of the host, each checked before any connection is made."""
        try:
            addresses = list(await self._resolver(target.host, target.port))
        except OSError as exc:
            raise CimdError(f"cannot resolve the host of {target.url!r}: {exc}") from None
        if not addresses:
            raise CimdError(f"the host of {target.url!r} has no address")
        for address in addresses:
            reason = address_refusal(address, loopback_ok=target.loopback_allowed)
            if reason is not None:
                raise CimdError(f"{target.url!r} resolves to a refused address: {reason}")
        return list(dict.fromkeys(addresses))

    async def _get(self, target: MetadataUrl, addresses: list[str]) -> FetchedDocument:
        async with httpx.AsyncClient(
            transport=self._transport,
            follow_redirects=False,
            trust_env=False,
            timeout=self.policy.timeout,
        ) as client:
            response = await self._send(client, target, addresses)
            try:
                body = await self._body(target, response)
            finally:
                await response.aclose()
        document = _parse(target.url, body)
        return FetchedDocument(
            document=document,
            cache_seconds=self.policy.cache_seconds(response.headers.get("cache-control")),
        )

    async def _send(
        self, client: httpx.AsyncClient, target: MetadataUrl, addresses: list[str]
    ) -> httpx.Response:
        """GET the document from the checked addresses in turn (the next one only when a
        connection cannot be made): the URL names the address, `Host` and the TLS server
        name the host, so nothing resolves the name again."""
        headers = {
            "Host": target.host_header,
            "Accept": "application/json",
            "Accept-Encoding": "identity",
            "User-Agent": _USER_AGENT,
        }
        extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
        failure: httpx.HTTPError | None = None
        try:
            url = httpx.URL(target.url)
        except httpx.InvalidURL as exc:
            raise CimdError(f"client_id {target.url!r} is not a valid URL: {exc}") from None
        for address in addresses:
            pinned = url.copy_with(host=address)
            request = client.build_request("GET", pinned, headers=headers, extensions=extensions)
            try:
                return await client.send(request, stream=True)
            except httpx.ConnectError as exc:
                failure = exc
            except httpx.HTTPError as exc:
                raise CimdError(f"cannot fetch {target.url!r}: {exc!r}") from None
        raise CimdError(f"cannot connect to the host of {target.url!r}: {failure!r}")

    async def _body(self, target: MetadataUrl, response: httpx.Response) -> bytes:
        if response.is_redirect:
            raise CimdError(
                f"{target.url!r} answered a redirect ({response.status_code}); "
                "metadata documents are not fetched through redirects"
            )
        if response.status_code != 200:
            raise CimdError(f"{target.url!r} answered HTTP {response.status_code}")
        if not _json_content_type(response.headers.get("content-type")):
            raise CimdError(f"{target.url!r} is not served as application/json")
        limit = self.policy.max_bytes
        declared = response.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise CimdError(f"{target.url!r} is larger than {limit} bytes")
        chunks: list[bytes] = []
        size = 0
        try:
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > limit:
                    raise CimdError(f"{target.url!r} is larger than {limit} bytes")
                chunks.append(chunk)
        except httpx.HTTPError as exc:
            raise CimdError(f"cannot read {target.url!r}: {exc!r}") from None
        return b"".join(chunks)


def _parse(url: str, body: bytes) -> dict[str, Any]:
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise CimdError(f"{url!r} is not valid JSON") from None
    if not isinstance(document, dict):
        raise CimdError(f"{url!r} is not a JSON object")
    return document


def check_document(url: str, document: Mapping[str, Any]) -> dict[str, Any]:
    """The draft's rules for the document itself: its `client_id` equals the URL exactly, it
    names redirect URIs, and it describes a public client (no `client_secret`; the token
    endpoint auth method is `none`, the default here). Returns the metadata to validate."""
    if document.get("client_id") != url:
        raise CimdError(f"the client_id inside {url!r} is not that URL")
    for secret in ("client_secret", "client_secret_expires_at"):
        if secret in document:
            raise CimdError(f"{url!r} must not carry {secret} (a metadata document is public)")
    method = document.get("token_endpoint_auth_method", "none")
    if method != "none":
        raise CimdError(
            f"{url!r} asks for token_endpoint_auth_method {method!r}; only 'none' is supported"
        )
    if not document.get("redirect_uris"):
        raise CimdError(f"{url!r} names no redirect_uris")
    return dict(document)


__all__ = [
    "DEFAULT_CACHE_SECONDS",
    "CimdError",
    "CimdFetcher",
    "CimdPolicy",
    "FetchedDocument",
    "MetadataUrl",
    "Resolver",
    "address_refusal",
    "check_document",
    "check_url",
    "is_metadata_url",
    "parse_loopback_origins",
    "system_resolver",
]
