"""JWT issue and verification.

Issuing: EdDSA (Ed25519) with the key store's active key, `kid` in the header; claims `iss`,
`sub` (the Mana user id), `aud`, `iat`, `nbf`, `exp`, `jti` and `email`, plus any extra claims
the caller adds (an OAuth access token's `scope`, `space`, `client_id`, `gid`).

Verifying: the algorithm comes from the *key* (looked up by `kid`), never from the token, so
`alg=none`, HMAC signed with a public key ("algorithm confusion") and unknown algorithms are
refused before any signature check. Unknown `kid`, bad signature, expiry, wrong audience or
issuer and missing claims are refused with a stable reason. Successful verifications are cached
per token string for at most `cache_seconds` (and never past `exp`), so a client reusing one
token costs one signature check per minute, not one per request.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import jwt

from mana_auth.errors import AuthError
from mana_auth.keys import ALGORITHM, KeyStore

DEFAULT_AUDIENCE = "mana"
LOCAL_ISSUER = "mana-local"
LEEWAY_SECONDS = 30
REQUIRED_CLAIMS = ["exp", "iat", "sub", "aud"]
# Claims the issuer sets itself; extra claims passed to `issue` may not replace them.
RESERVED_CLAIMS = frozenset({"iss", "sub", "aud", "iat", "nbf", "exp", "jti"})
# Asymmetric algorithms only: a JWKS never carries a secret we would accept.
ALLOWED_ALGORITHMS = frozenset(
    {"EdDSA", "ES256", "ES384", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}
)


@dataclass(frozen=True)
class IssuedToken:
    token: str
    user_id: str
    kid: str
    expires_at: datetime

    def expires_in(self, now: datetime | None = None) -> int:
        now = now or datetime.now(UTC)
        return max(0, int((self.expires_at - now).total_seconds()))


@dataclass(frozen=True)
class Principal:
    """Who a verified token speaks for, and what it was granted.

    `scopes` is None for a token without a `scope` claim (local tokens: full access); an OAuth
    access token names its scopes, the space the connection acts in (`space`), its client and
    its connection (`grant_id`, from the `gid` claim)."""

    user_id: str
    email: str | None
    expires_at: float
    kid: str
    scopes: frozenset[str] | None = None
    space: str | None = None
    client_id: str | None = None
    grant_id: str | None = None


class TokenIssuer:
    """Signs tokens with the key store's active key."""

    def __init__(
        self,
        keys: KeyStore,
        *,
        audience: str = DEFAULT_AUDIENCE,
        issuer: str = LOCAL_ISSUER,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.keys = keys
        self.audience = audience
        self.issuer = issuer
        self._clock = clock

    def issue(
        self,
        user_id: str,
        *,
        email: str | None,
        ttl: timedelta,
        audience: str | None = None,
        claims: Mapping[str, Any] | None = None,
    ) -> IssuedToken:
        """Sign a token for `user_id`. `audience` replaces the issuer's default audience (an
        OAuth access token names the resource URL); `claims` adds claims, never one of
        `RESERVED_CLAIMS` (ValueError), which only the issuer sets."""
        extra = dict(claims or {})
        clash = sorted(RESERVED_CLAIMS.intersection(extra))
        if clash:
            raise ValueError(f"extra claims may not set {', '.join(clash)}")
        if ttl <= timedelta(0):
            raise ValueError("token lifetime must be positive")
        if ttl > self.keys.max_token_ttl:
            raise ValueError(
                f"token lifetime must be at most {int(self.keys.max_token_ttl.total_seconds())} s"
            )
        key = self.keys.signing_key()
        now = int(self._clock())
        exp = now + int(ttl.total_seconds())
        payload: dict[str, Any] = {
            **extra,
            "iss": self.issuer,
            "sub": user_id,
            "aud": self.audience if audience is None else audience,
            "iat": now,
            "nbf": now,
            "exp": exp,
            "jti": secrets.token_urlsafe(12),
        }
        if email:
            payload["email"] = email
        token = jwt.encode(
            payload, key.private_key, algorithm=ALGORITHM, headers={"kid": key.kid, "typ": "JWT"}
        )
        expires_at = datetime.fromtimestamp(exp, UTC)
        self.keys.record_expiry(key.kid, expires_at)
        return IssuedToken(token, user_id, key.kid, expires_at)


@dataclass(frozen=True)
class VerificationKey:
    kid: str
    algorithm: str
    key: Any


class KeySource(Protocol):
    """Where verification keys come from (local key store or a remote JWKS)."""

    async def find(self, kid: str) -> VerificationKey | None: ...


def verification_key_from_jwk(jwk: Mapping[str, Any]) -> VerificationKey | None:
    """A usable signature-verification key from one JWK, or None (symmetric keys, encryption
    keys, keys without `kid`, unsupported algorithms are all skipped)."""
    kid = jwk.get("kid")
    if not isinstance(kid, str) or not kid:
        return None
    if jwk.get("kty") == "oct" or jwk.get("use", "sig") != "sig":
        return None
    try:
        parsed = jwt.PyJWK(dict(jwk))
    except jwt.PyJWTError:
        return None
    if parsed.algorithm_name not in ALLOWED_ALGORITHMS:
        return None
    return VerificationKey(kid, parsed.algorithm_name, parsed.key)


class LocalKeys:
    """Verification keys from this data directory's key store (the embedded default)."""

    def __init__(self, store: KeyStore) -> None:
        self.store = store
        self._cache: dict[str, VerificationKey] = {}

    async def find(self, kid: str) -> VerificationKey | None:
        # The store re-reads its state file only when it changed, so this notices retirement
        # (after the retention window) and rotation done by another process.
        self.store.refresh()
        public = self.store.public_key(kid)
        if public is None:
            self._cache.pop(kid, None)
            return None
        cached = self._cache.get(kid)
        if cached is None:
            cached = VerificationKey(kid, ALGORITHM, public)
            self._cache[kid] = cached
        return cached


class TokenVerifier:
    """Verifies bearer tokens against a key source; raises `AuthError` with a stable reason.

    A token is for this server when its `aud` names `audience` (the local audience of
    `mana token issue` and `POST /auth/token`) or one of `also_audiences` (e.g. the MCP
    endpoint's resource URL, RFC 8707)."""

    def __init__(
        self,
        keys: KeySource,
        *,
        audience: str = DEFAULT_AUDIENCE,
        also_audiences: tuple[str, ...] = (),
        issuer: str | None = None,
        leeway: int = LEEWAY_SECONDS,
        cache_size: int = 4096,
        cache_seconds: float = 60.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.keys = keys
        self.audience = audience
        self.also_audiences = also_audiences
        self.issuer = issuer
        self.leeway = leeway
        self._cache: dict[str, tuple[Principal, float]] = {}
        self._cache_size = cache_size
        self._cache_seconds = cache_seconds
        self._clock = clock

    def accepting(self, audience: str) -> TokenVerifier:
        """A verifier like this one that also accepts tokens whose audience is `audience`."""
        if audience == self.audience or audience in self.also_audiences:
            return self
        return TokenVerifier(
            self.keys,
            audience=self.audience,
            also_audiences=(*self.also_audiences, audience),
            issuer=self.issuer,
            leeway=self.leeway,
            cache_size=self._cache_size,
            cache_seconds=self._cache_seconds,
            clock=self._clock,
        )

    async def verify(self, token: str) -> Principal:
        now = self._clock()
        hit = self._cache.get(token)
        if hit is not None:
            principal, valid_until = hit
            if now < valid_until:
                return principal
            del self._cache[token]
        principal = await self._verify(token)
        self._remember(token, principal, now)
        return principal

    def _remember(self, token: str, principal: Principal, now: float) -> None:
        if len(self._cache) >= self._cache_size:
            # Drop the oldest entries (dicts keep insertion order).
            for stale in list(self._cache)[: max(1, self._cache_size // 8)]:
                del self._cache[stale]
        valid_until = min(now + self._cache_seconds, principal.expires_at + self.leeway)
        self._cache[token] = (principal, valid_until)

    async def _verify(self, token: str) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise AuthError("malformed", "the bearer token is not a well-formed JWT") from None
        alg = header.get("alg")
        kid = header.get("kid")
        if not isinstance(alg, str) or alg not in ALLOWED_ALGORITHMS:
            raise AuthError("alg-not-allowed", f"token algorithm {str(alg)[:16]!r} is not accepted")
        if not isinstance(kid, str) or not kid:
            raise AuthError("unknown-kid", "the token has no key id (kid)")
        key = await self.keys.find(kid)
        if key is None:
            raise AuthError("unknown-kid", "the token was signed with an unknown key")
        if alg != key.algorithm:
            raise AuthError("alg-not-allowed", "the token algorithm does not match its key")
        try:
            claims = jwt.decode(
                token,
                key.key,
                algorithms=[key.algorithm],
                audience=[self.audience, *self.also_audiences],
                issuer=self.issuer,
                leeway=self.leeway,
                options={"require": REQUIRED_CLAIMS},
            )
        except jwt.ExpiredSignatureError:
            raise AuthError("expired", "the token has expired") from None
        except jwt.InvalidAudienceError:
            raise AuthError("wrong-audience", "the token is not meant for this server") from None
        except jwt.InvalidIssuerError:
            raise AuthError("wrong-issuer", "the token comes from an unexpected issuer") from None
        except jwt.MissingRequiredClaimError as exc:
            raise AuthError("missing-claim", f"the token lacks the {exc.claim!r} claim") from None
        except jwt.ImmatureSignatureError:
            raise AuthError("not-yet-valid", "the token is not valid yet") from None
        except jwt.InvalidSignatureError:
            raise AuthError("bad-signature", "the token signature does not verify") from None
        except jwt.PyJWTError:
            raise AuthError("invalid", "the token is invalid") from None
        sub = claims.get("sub")
        if not isinstance(sub, str) or not sub:
            raise AuthError("missing-claim", "the token has no subject") from None
        email = claims.get("email")
        scope = claims.get("scope")
        if scope is not None and not isinstance(scope, str):
            raise AuthError("malformed-claim", "the token's 'scope' claim is not a string")
        return Principal(
            user_id=sub,
            email=email if isinstance(email, str) else None,
            expires_at=float(claims["exp"]),
            kid=kid,
            # RFC 6749 §3.3: scope tokens are separated by spaces (nothing else)
            scopes=None if scope is None else frozenset(filter(None, scope.split(" "))),
            space=_optional_name(claims, "space"),
            client_id=_optional_name(claims, "client_id"),
            grant_id=_optional_name(claims, "gid"),
        )


def _optional_name(claims: Mapping[str, Any], name: str) -> str | None:
    """A claim that is absent or a non-empty string; anything else makes the token malformed."""
    value = claims.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise AuthError("malformed-claim", f"the token's {name!r} claim is not a non-empty string")
    return value
