"""The OAuth clients the authorization server knows: clients that describe themselves with a
Client ID Metadata Document (`client_id` is an https URL, fetched by `mana_oauth.cimd` and
cached in the store, so replicas share it) and clients registered with RFC 7591 dynamic
registration (this server issues their `client_id`, and a secret to confidential ones).

Both kinds pass the same metadata rules (`validate_metadata`): authlib's RFC 7591 claims
(`ClientMetadataClaims`) for the values, plus this server's limits (sizes, supported grant and
response types, auth methods) and redirect URI rules (`redirect_uri_refusal`). The
authorization server sees either kind as one `Client`.
"""

from __future__ import annotations

import asyncio
import hmac
import re
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol
from urllib.parse import urlsplit

from authlib.oauth2.rfc7591 import ClientMetadataClaims
from joserfc.errors import JoseError

from mana_auth.hosts import is_loopback_host
from mana_oauth.cimd import (
    CimdError,
    CimdFetcher,
    CimdPolicy,
    check_document,
    is_metadata_url,
)
from mana_oauth.store import ClientRecord, new_secret, secret_hash

ClientErrorCode = Literal[
    "invalid_client", "invalid_request", "invalid_client_metadata", "invalid_redirect_uri"
]

GRANT_TYPES = ("authorization_code", "refresh_token")
RESPONSE_TYPES = ("code",)
AUTH_METHODS = ("none", "client_secret_post", "client_secret_basic")
PUBLIC_AUTH_METHOD = "none"
DEFAULT_GRANT_TYPES = ("authorization_code",)
"""RFC 7591 §2: a client that names no grant types uses the authorization code grant only."""
DCR_CLIENT_PREFIX = "mana_client_"

MAX_REDIRECT_URIS = 20
MAX_URI_LENGTH = 2000
MAX_TEXT_LENGTH = 200
MAX_SCOPE_LENGTH = 1000
MAX_LIST_ITEMS = 10
_URI_FIELDS = ("client_uri", "logo_uri", "tos_uri", "policy_uri")
_TEXT_FIELDS = {
    "client_name": MAX_TEXT_LENGTH,
    "token_endpoint_auth_method": MAX_TEXT_LENGTH,
    "software_id": MAX_TEXT_LENGTH,
    "software_version": MAX_TEXT_LENGTH,
    "scope": MAX_SCOPE_LENGTH,
}
_LIST_FIELDS = {
    "redirect_uris": MAX_REDIRECT_URIS,
    "grant_types": MAX_LIST_ITEMS,
    "response_types": MAX_LIST_ITEMS,
    "contacts": MAX_LIST_ITEMS,
}
# Key material and signed statements serve auth methods this server does not offer.
_IGNORED_FIELDS = frozenset({"jwks", "jwks_uri", "software_statement"})
_SCHEME = re.compile(r"[a-z][a-z0-9+.\-]*")
# Schemes that run code, read local data or leave the browser's navigation: never a redirect.
_REFUSED_SCHEMES = frozenset(
    {"javascript", "vbscript", "data", "file", "blob", "about", "filesystem", "view-source"}
)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class ClientError(Exception):
    """A client was refused: `error` is the OAuth error code the endpoint answers with,
    `description` says what was wrong (safe to show; pages escape it)."""

    def __init__(self, error: ClientErrorCode, description: str) -> None:
        super().__init__(f"{error}: {description}")
        self.error: ClientErrorCode = error
        self.description = description


def _shown(value: str, limit: int = 120) -> str:
    return repr(value if len(value) <= limit else value[:limit] + "…")


@dataclass(frozen=True)
class Client:
    """What the authorization server needs of any client, whichever way it registered."""

    client_id: str
    kind: Literal["cimd", "dcr"]
    name: str
    redirect_uris: tuple[str, ...]
    token_endpoint_auth_method: str
    client_uri: str | None
    logo_uri: str | None
    grant_types: tuple[str, ...]

    @classmethod
    def of(cls, record: ClientRecord) -> Client:
        metadata = record.metadata
        return cls(
            client_id=record.client_id,
            kind=record.kind,
            name=str(metadata.get("client_name") or record.client_id),
            redirect_uris=tuple(metadata.get("redirect_uris") or ()),
            token_endpoint_auth_method=str(
                metadata.get("token_endpoint_auth_method") or PUBLIC_AUTH_METHOD
            ),
            client_uri=metadata.get("client_uri"),
            logo_uri=metadata.get("logo_uri"),
            grant_types=tuple(metadata.get("grant_types") or DEFAULT_GRANT_TYPES),
        )

    @property
    def is_public(self) -> bool:
        return self.token_endpoint_auth_method == PUBLIC_AUTH_METHOD

    def redirect_allowed(self, uri: str) -> bool:
        """Exact string comparison with a registered redirect URI: no normalisation, no
        prefix or pattern match (OAuth 2.1 §2.3.1, RFC 9700 §4.1.3)."""
        return uri in self.redirect_uris

    @property
    def redirect_host(self) -> str:
        """Where the first redirect URI sends the user, for the consent page: its host (and
        port), or `scheme:` for a native app's private-use scheme without a host."""
        if not self.redirect_uris:
            return ""
        parts = urlsplit(self.redirect_uris[0])
        host = parts.netloc.rpartition("@")[2]
        return host or f"{parts.scheme}:"


def redirect_uri_refusal(uri: object) -> str | None:
    """Why `uri` cannot be a registered redirect URI, or None: an absolute URI without
    fragment or credentials, at most `MAX_URI_LENGTH` long; https, plain http only on a
    loopback host (RFC 8252 §7.3), or a native app's private-use scheme (RFC 8252 §7.1, e.g.
    `cursor://…`, `com.example.app:/cb`); never a scheme like javascript:, data: or file:."""
    if not isinstance(uri, str) or not uri:
        return "a redirect URI must be a non-empty string"
    if len(uri) > MAX_URI_LENGTH:
        return f"redirect URI {_shown(uri)} is longer than {MAX_URI_LENGTH} characters"
    if any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in uri):
        return f"redirect URI {_shown(uri)} contains whitespace or control characters"
    if "#" in uri:
        return f"redirect URI {_shown(uri)} must not have a fragment"
    try:
        parts = urlsplit(uri)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        return f"redirect URI {_shown(uri)} is not a valid URI"
    scheme = parts.scheme
    if not scheme or not _SCHEME.fullmatch(scheme):
        return f"redirect URI {_shown(uri)} is not an absolute URI"
    if scheme in _REFUSED_SCHEMES:
        return f"redirect URI {_shown(uri)} uses the refused scheme {scheme}:"
    if "@" in parts.netloc:
        return f"redirect URI {_shown(uri)} must not carry credentials"
    host = parts.hostname
    if scheme in ("http", "https"):
        if not host:
            return f"redirect URI {_shown(uri)} has no host"
        if scheme == "http" and not is_loopback_host(host):
            return f"redirect URI {_shown(uri)} must be https (plain http only on loopback)"
        return None
    if not (parts.netloc or parts.path):
        return f"redirect URI {_shown(uri)} has nothing after its scheme"
    return None


def _check_shapes(metadata: Mapping[str, Any]) -> None:
    """Types and sizes authlib's claims leave open: strings are strings, lists are lists of
    strings, and nothing is unboundedly long."""
    for name, limit in _TEXT_FIELDS.items():
        value = metadata.get(name)
        if value is not None and (not isinstance(value, str) or len(value) > limit):
            raise ClientError(
                "invalid_client_metadata", f"{name} must be a string of at most {limit} characters"
            )
        if value is not None and _CONTROL.search(value):
            raise ClientError("invalid_client_metadata", f"{name} contains control characters")
    for name in _URI_FIELDS:
        value = metadata.get(name)
        if value is None:
            continue
        if not isinstance(value, str) or len(value) > MAX_URI_LENGTH:
            raise ClientError(
                "invalid_client_metadata",
                f"{name} must be a URL of at most {MAX_URI_LENGTH} characters",
            )
        if urlsplit(value).scheme not in ("https", "http"):
            raise ClientError("invalid_client_metadata", f"{name} must be an http(s) URL")
    for name, most in _LIST_FIELDS.items():
        value = metadata.get(name)
        if value is None:
            continue
        error: ClientErrorCode = (
            "invalid_redirect_uri" if name == "redirect_uris" else "invalid_client_metadata"
        )
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise ClientError(error, f"{name} must be a list of strings")
        if len(value) > most:
            raise ClientError(error, f"{name} may hold at most {most} entries")
        if name != "redirect_uris" and any(len(item) > MAX_TEXT_LENGTH for item in value):
            raise ClientError(
                error, f"each entry of {name} must be at most {MAX_TEXT_LENGTH} characters"
            )


def _claims_options(auth_methods: tuple[str, ...]) -> dict[str, Any]:
    """authlib's value checks for this server's supported types and methods (built per
    validation: authlib consumes the `validate` hooks of the options it is given)."""
    options: dict[str, Any] = ClientMetadataClaims.get_claims_options(
        {
            "response_types_supported": list(RESPONSE_TYPES),
            "grant_types_supported": list(GRANT_TYPES),
            "token_endpoint_auth_methods_supported": list(auth_methods),
        }
    )
    return options


class _Claims(ClientMetadataClaims):  # type: ignore[misc]  # authlib is untyped
    """authlib's RFC 7591 claims; redirect URIs are checked by `redirect_uri_refusal` (which
    also admits native apps' private-use schemes, which have no host)."""

    def validate_redirect_uris(self) -> None:
        return None


def validate_metadata(
    raw: Mapping[str, Any], *, auth_methods: tuple[str, ...] = AUTH_METHODS
) -> dict[str, Any]:
    """The client metadata this server stores: the RFC 7591 fields of `raw` (others, and
    nulls, are ignored, as §2 allows), validated, with defaults filled in
    (`token_endpoint_auth_method` none, `response_types` code, `grant_types`
    authorization_code). Raises `ClientError` with `invalid_redirect_uri` or
    `invalid_client_metadata`."""
    metadata = {
        name: value
        for name, value in raw.items()
        if name in ClientMetadataClaims.REGISTERED_CLAIMS
        and name not in _IGNORED_FIELDS
        and value is not None  # JSON null: as if absent (serialisers often write them)
    }
    _check_shapes(metadata)
    uris = metadata.get("redirect_uris")
    if not uris:
        raise ClientError("invalid_redirect_uri", "redirect_uris is required")
    for uri in uris:
        reason = redirect_uri_refusal(uri)
        if reason is not None:
            raise ClientError("invalid_redirect_uri", reason)
    metadata.setdefault("token_endpoint_auth_method", PUBLIC_AUTH_METHOD)
    claims = _Claims(metadata, {}, _claims_options(auth_methods), {})
    try:
        claims.validate()
    except JoseError as exc:
        claim = str(getattr(exc, "claim", "") or "metadata")
        hints = {
            "grant_types": "must be a subset of " + ", ".join(GRANT_TYPES),
            "response_types": 'must be ["code"]',
            "token_endpoint_auth_method": "must be one of " + ", ".join(auth_methods),
        }
        raise ClientError(
            "invalid_client_metadata", f"{claim} {hints.get(claim, 'is not valid')}"
        ) from None
    validated: dict[str, Any] = dict(claims.get_registered_claims())
    validated.setdefault("response_types", list(RESPONSE_TYPES))
    validated.setdefault("grant_types", list(DEFAULT_GRANT_TYPES))
    if "authorization_code" not in validated["grant_types"]:
        raise ClientError(
            "invalid_client_metadata",
            "grant_types must include authorization_code (the only way to obtain tokens here)",
        )
    return validated


class ClientStore(Protocol):
    """The part of `mana_oauth.store.OAuthStore` the registry uses."""

    async def save_client(self, record: ClientRecord) -> None: ...

    async def get_client(self, client_id: str) -> ClientRecord | None: ...


class ClientRegistry:
    """Resolves, registers and authenticates clients over the shared store: a metadata
    document is fetched once per cache lifetime by whichever replica needs it first, and by
    one caller at a time within a process."""

    def __init__(
        self,
        store: ClientStore,
        policy: CimdPolicy,
        *,
        fetcher: CimdFetcher | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self.policy = policy
        self._fetcher = fetcher or CimdFetcher(policy)
        self._clock = clock
        self._fetching: dict[str, asyncio.Future[ClientRecord]] = {}

    async def resolve(self, client_id: str) -> Client:
        """The client named `client_id`: a registered (DCR) client, or for a URL its metadata
        document (cached, else fetched and validated). Raises `ClientError("invalid_client")`
        for an unknown client or a refused document."""
        return Client.of(await self._record(client_id))

    async def _record(self, client_id: str) -> ClientRecord:
        if not client_id:
            raise ClientError("invalid_client", "client_id is missing")
        if is_metadata_url(client_id):
            return await self._metadata_record(client_id)
        record = await self._store.get_client(client_id)
        if record is None or record.kind != "dcr":
            raise ClientError("invalid_client", f"unknown client_id {_shown(client_id)}")
        return record

    async def _metadata_record(self, url: str) -> ClientRecord:
        cached = await self._store.get_client(url)
        if (
            cached is not None
            and cached.kind == "cimd"
            and cached.expires_at is not None
            and cached.expires_at > self._clock()
        ):
            return cached
        # One fetch per URL at a time in this process: callers arriving meanwhile share its
        # outcome, so a burst of requests naming a URL does not become a burst of fetches.
        pending = self._fetching.get(url)
        if pending is None:
            pending = asyncio.ensure_future(self._fetch_record(url, cached))
            self._fetching[url] = pending
            pending.add_done_callback(lambda done: self._fetched(url, done))
        return await asyncio.shield(pending)

    def _fetched(self, url: str, done: asyncio.Future[ClientRecord]) -> None:
        del self._fetching[url]
        if not done.cancelled():
            done.exception()  # retrieved: every caller may have gone (its outcome is theirs)

    async def _fetch_record(self, url: str, cached: ClientRecord | None) -> ClientRecord:
        now = self._clock()
        try:
            fetched = await self._fetcher.fetch(url)
            document = check_document(url, fetched.document)
        except CimdError as exc:
            raise ClientError("invalid_client", exc.description) from None
        try:
            metadata = validate_metadata(document, auth_methods=(PUBLIC_AUTH_METHOD,))
        except ClientError as exc:
            raise ClientError(
                "invalid_client", f"the metadata document {url!r}: {exc.description}"
            ) from None
        record = ClientRecord(
            client_id=url,
            kind="cimd",
            metadata=metadata,
            secret_hash=None,
            created_at=cached.created_at if cached is not None else now,
            expires_at=now + fetched.cache_seconds,
        )
        await self._store.save_client(record)
        return record

    async def register(self, metadata: Mapping[str, Any]) -> dict[str, Any]:
        """RFC 7591 §3.2.1 registration: validate, store, and return the response body (the
        issued `client_id`, `client_id_issued_at`, the validated metadata, and for
        client_secret_post/basic a `client_secret`, shown only here, stored hashed)."""
        if not isinstance(metadata, Mapping):
            raise ClientError("invalid_client_metadata", "the body must be a JSON object")
        validated = validate_metadata(metadata)
        now = self._clock()
        client_id = DCR_CLIENT_PREFIX + secrets.token_urlsafe(18)
        secret = (
            None if validated["token_endpoint_auth_method"] == PUBLIC_AUTH_METHOD else new_secret()
        )
        await self._store.save_client(
            ClientRecord(
                client_id=client_id,
                kind="dcr",
                metadata=validated,
                secret_hash=secret_hash(secret) if secret is not None else None,
                created_at=now,
                expires_at=None,
            )
        )
        body: dict[str, Any] = {"client_id": client_id, "client_id_issued_at": int(now)}
        if secret is not None:
            body["client_secret"] = secret
            body["client_secret_expires_at"] = 0
        body.update(validated)
        return body

    async def authenticate(
        self,
        client_id: str | None,
        client_secret: str | None,
        basic: tuple[str, str] | None,
    ) -> Client:
        """Client authentication at the token and revocation endpoints (RFC 6749 §2.3): a
        public client sends its `client_id` only; a confidential one its secret by exactly
        the method it registered (`basic` is the endpoint's parsed Basic header). Any
        mismatch raises `ClientError("invalid_client")`."""
        wanted: str
        presented: str | None
        if basic is not None:
            if client_secret is not None:
                raise ClientError("invalid_client", "use one client authentication method, not two")
            if client_id is not None and client_id != basic[0]:
                raise ClientError(
                    "invalid_client", "client_id differs from the Authorization header's"
                )
            wanted, presented = basic
            method = "client_secret_basic"
        else:
            if not client_id:
                raise ClientError("invalid_client", "client_id is missing")
            wanted, presented = client_id, client_secret
            method = PUBLIC_AUTH_METHOD if client_secret is None else "client_secret_post"
        record = await self._record(wanted)
        client = Client.of(record)
        if client.token_endpoint_auth_method != method:
            raise ClientError(
                "invalid_client",
                f"this client authenticates with {client.token_endpoint_auth_method}, not {method}",
            )
        if presented is not None and not (
            record.secret_hash is not None
            and hmac.compare_digest(secret_hash(presented), record.secret_hash)
        ):
            raise ClientError("invalid_client", "client authentication failed")
        return client


__all__ = [
    "AUTH_METHODS",
    "GRANT_TYPES",
    "CimdPolicy",
    "Client",
    "ClientError",
    "ClientRegistry",
    "ClientStore",
    "is_metadata_url",
    "redirect_uri_refusal",
    "validate_metadata",
]
