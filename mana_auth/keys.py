"""Ed25519 signing keys kept in the data directory.

Layout (created on first use, directory mode 0700, private keys 0600)::

    DATA_DIR/keys/keys.json      key ids, creation/retirement times, public JWKs
    DATA_DIR/keys/<kid>.pem      the private key of the *active* key (PKCS#8)
    DATA_DIR/keys/.lock          serialises creation and rotation across processes

Exactly one key is active (it signs new tokens). `rotate()` makes a new active key, deletes the
old private key (nothing can sign with it any more) and keeps the old *public* key published
until every token it signed has expired: each issue records the latest expiry per key
(`lastExpiry`), so a retired key is published until that moment (+ clock leeway) and then
dropped. Tokens never live longer than `max_token_ttl`, which bounds this in any case.

Other processes (the server, `mana token issue`) notice a rotation by the state file changing on
disk: `refresh()` is a `stat()` and a re-read only when the file was replaced.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import fcntl
import hashlib
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

MAX_TOKEN_TTL = timedelta(days=7)
CLOCK_LEEWAY = timedelta(seconds=60)
ALGORITHM = "EdDSA"
STATE_FILE = "keys.json"


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _parse_iso(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def thumbprint_kid(public_jwk: dict[str, str]) -> str:
    """Key id: the RFC 7638 JWK thumbprint (SHA-256), first 16 base64url characters."""
    canonical = json.dumps(
        {"crv": public_jwk["crv"], "kty": public_jwk["kty"], "x": public_jwk["x"]},
        separators=(",", ":"),
        sort_keys=True,
    )
    return _b64url(hashlib.sha256(canonical.encode()).digest())[:16]


def public_jwk_of(key: Ed25519PublicKey) -> dict[str, str]:
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return {"kty": "OKP", "crv": "Ed25519", "x": _b64url(raw)}


@dataclass(frozen=True)
class KeyInfo:
    """One key as recorded in the state file."""

    kid: str
    created_at: datetime
    retired_at: datetime | None
    public_jwk: dict[str, str]
    last_expiry: datetime | None = None

    @property
    def active(self) -> bool:
        return self.retired_at is None

    def published_until(self, max_token_ttl: timedelta) -> datetime | None:
        """None while active; afterwards the moment its last token has expired (bounded by the
        longest token lifetime when no expiry was recorded)."""
        if self.retired_at is None:
            return None
        if self.last_expiry is None:
            return self.retired_at + max_token_ttl + CLOCK_LEEWAY
        return min(self.last_expiry, self.retired_at + max_token_ttl) + CLOCK_LEEWAY

    def public_key(self) -> Ed25519PublicKey:
        return Ed25519PublicKey.from_public_bytes(_b64url_decode(self.public_jwk["x"]))

    def jwk(self) -> dict[str, str]:
        return {**self.public_jwk, "kid": self.kid, "use": "sig", "alg": ALGORITHM}

    def to_json(self) -> dict[str, Any]:
        return {
            "kid": self.kid,
            "createdAt": _iso(self.created_at),
            "retiredAt": _iso(self.retired_at) if self.retired_at else None,
            "lastExpiry": _iso(self.last_expiry) if self.last_expiry else None,
            "publicJwk": self.public_jwk,
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> KeyInfo:
        retired = raw.get("retiredAt")
        last = raw.get("lastExpiry")
        return cls(
            kid=str(raw["kid"]),
            created_at=_parse_iso(str(raw["createdAt"])),
            retired_at=_parse_iso(str(retired)) if retired else None,
            public_jwk={k: str(v) for k, v in dict(raw["publicJwk"]).items()},
            last_expiry=_parse_iso(str(last)) if last else None,
        )


@dataclass(frozen=True)
class SigningKey:
    kid: str
    private_key: Ed25519PrivateKey


class KeyStoreError(Exception):
    """The key directory is unreadable or inconsistent (the message says how to fix it)."""


class KeyStore:
    """The signing keys of one data directory. Cheap to construct; touches disk lazily."""

    def __init__(
        self,
        data_dir: Path,
        *,
        max_token_ttl: timedelta = MAX_TOKEN_TTL,
        clock: Callable[[], datetime] = _now,
    ) -> None:
        self.directory = Path(data_dir) / "keys"
        self.max_token_ttl = max_token_ttl
        self._clock = clock
        self._state_path = self.directory / STATE_FILE
        self._stamp: tuple[int, int, int] | None = None
        self._keys: list[KeyInfo] = []
        self._signing: SigningKey | None = None

    # -- reading -----------------------------------------------------------------------------

    def _file_stamp(self) -> tuple[int, int, int] | None:
        try:
            st = self._state_path.stat()
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def refresh(self) -> bool:
        """Re-read the state file if it changed on disk; True when it did."""
        stamp = self._file_stamp()
        if stamp == self._stamp:
            return False
        self._keys = self._read_state() if stamp is not None else []
        self._stamp = stamp
        if self._signing is not None and self._signing.kid != self._active_kid():
            self._signing = None
        return True

    def _read_state(self) -> list[KeyInfo]:
        try:
            raw = json.loads(self._state_path.read_text(encoding="utf-8"))
            return [KeyInfo.from_json(k) for k in raw.get("keys", [])]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise KeyStoreError(
                f"cannot read signing key state {self._state_path}: {exc}; "
                "fix or remove the keys directory (all issued tokens become invalid)"
            ) from exc

    def _active_kid(self) -> str | None:
        return next((k.kid for k in self._keys if k.active), None)

    def keys(self) -> list[KeyInfo]:
        self.refresh()
        return list(self._keys)

    def published(self) -> list[KeyInfo]:
        """The active key and every retired key some unexpired token may still be signed with."""
        self.refresh()
        now = self._clock()
        out = []
        for info in self._keys:
            until = info.published_until(self.max_token_ttl)
            if until is None or until > now:
                out.append(info)
        return out

    def jwks(self) -> dict[str, Any]:
        """The JWKS document published at `/.well-known/jwks.json`."""
        return {"keys": [k.jwk() for k in self.published()]}

    def public_key(self, kid: str) -> Ed25519PublicKey | None:
        """The public key for `kid` if it is published (re-reads the state file when unknown)."""
        for attempt in range(2):
            for info in self.published():
                if info.kid == kid:
                    return info.public_key()
            if attempt == 0 and not self.refresh():
                break
        return None

    # -- signing -----------------------------------------------------------------------------

    def signing_key(self) -> SigningKey:
        """The active key, created on first use."""
        self.refresh()
        if self._signing is not None:
            return self._signing
        kid = self._active_kid()
        if kid is None:
            with self._locked():
                self.refresh()
                kid = self._active_kid()
                if kid is None:
                    kid = self._create_key(retire=None).kid
        self._signing = SigningKey(kid, self._load_private(kid))
        return self._signing

    def record_expiry(self, kid: str, expires_at: datetime) -> None:
        """Remember that `kid` signed a token valid until `expires_at` (keeps a retired key
        published exactly as long as needed)."""
        with self._locked():
            self._stamp = None
            self.refresh()
            keys = []
            changed = False
            for info in self._keys:
                if info.kid == kid and (info.last_expiry is None or info.last_expiry < expires_at):
                    info = dataclasses.replace(info, last_expiry=expires_at)
                    changed = True
                keys.append(info)
            if changed:
                self._write_state(keys)

    def ensure(self) -> str:
        """Make sure an active key exists; returns its kid."""
        return self.signing_key().kid

    def rotate(self) -> tuple[KeyInfo, KeyInfo | None]:
        """New active key; the previous one is retired (public part kept, private part deleted).
        Returns (new key, retired key or None)."""
        with self._locked():
            self._stamp = None
            self.refresh()
            old = next((k for k in self._keys if k.active), None)
            new = self._create_key(retire=old)
        self._signing = None
        retired = next((k for k in self.keys() if old is not None and k.kid == old.kid), None)
        return new, retired

    # -- internals ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.directory.mkdir(parents=True, exist_ok=True)
        os.chmod(self.directory, 0o700)
        fd = os.open(self.directory / ".lock", os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def _create_key(self, *, retire: KeyInfo | None) -> KeyInfo:
        private = Ed25519PrivateKey.generate()
        public_jwk = public_jwk_of(private.public_key())
        now = self._clock()
        info = KeyInfo(
            kid=thumbprint_kid(public_jwk), created_at=now, retired_at=None, public_jwk=public_jwk
        )
        pem = private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        key_path = self.directory / f"{info.kid}.pem"
        fd = os.open(key_path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(pem)
        keys: list[KeyInfo] = []
        for existing in self._keys:
            if retire is not None and existing.kid == retire.kid:
                existing = dataclasses.replace(existing, retired_at=now)
            until = existing.published_until(self.max_token_ttl)
            if until is not None and until <= now:
                continue  # every token it signed has expired: drop it from the JWKS
            keys.append(existing)
        keys.append(info)
        self._write_state(keys)
        if retire is not None:
            with contextlib.suppress(FileNotFoundError):
                (self.directory / f"{retire.kid}.pem").unlink()
        return info

    def _write_state(self, keys: list[KeyInfo]) -> None:
        tmp = self._state_path.with_suffix(".tmp")
        body = json.dumps({"version": 1, "keys": [k.to_json() for k in keys]}, indent=2)
        fd = os.open(tmp, os.O_CREAT | os.O_TRUNC | os.O_WRONLY, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(body + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self._state_path)
        self._keys = keys
        self._stamp = self._file_stamp()

    def _load_private(self, kid: str) -> Ed25519PrivateKey:
        path = self.directory / f"{kid}.pem"
        try:
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except (OSError, ValueError) as exc:
            raise KeyStoreError(
                f"cannot load the active signing key {path}: {exc}; run `mana token rotate-key`"
            ) from exc
        if not isinstance(key, Ed25519PrivateKey):
            raise KeyStoreError(f"{path} is not an Ed25519 private key")
        return key
