"""Persona passwords: derived, never stored in the catalog.

    password = base64url(HMAC-SHA256(PERSONA_SEED_SECRET, email))   (no "=" padding)

The email is lower-cased and stripped first. Without `PERSONA_SEED_SECRET` the built-in
development secret is used, so a fresh checkout works; with `MANA_ENV=production` that secret
(and a missing or short one) is refused, so production persona accounts cannot be logged into
by anyone who has read this file.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field

from tool_registry.errors import ValidationFailed

SECRET_ENV = "PERSONA_SEED_SECRET"  # noqa: S105 - the variable's name, not a secret
# Public on purpose: refused with MANA_ENV=production.
DEVELOPMENT_SECRET = "mana-personas-development-secret-do-not-use-in-production"  # noqa: S105
MIN_PRODUCTION_SECRET_CHARS = 32


class PersonaSecretError(ValidationFailed):
    reason = "persona-secret-refused"


@dataclass(frozen=True)
class PersonaSecret:
    """The secret passwords are derived from, and where it came from (for messages; the value
    itself never appears in a repr, log or error)."""

    value: bytes = field(repr=False)
    source: str

    @property
    def is_development(self) -> bool:
        return hmac.compare_digest(self.value, DEVELOPMENT_SECRET.encode())

    def password(self, email: str) -> str:
        return derive_password(self.value, email)


def persona_secret(environ: Mapping[str, str], *, env: str) -> PersonaSecret:
    """The secret from `PERSONA_SEED_SECRET`, or the development secret outside production."""
    raw = environ.get(SECRET_ENV, "")
    if not raw.strip():
        if env == "production":
            raise PersonaSecretError(
                f"{SECRET_ENV} is not set, and with MANA_ENV=production the built-in development "
                f"secret is refused: set {SECRET_ENV} to a private random value of at least "
                f"{MIN_PRODUCTION_SECRET_CHARS} characters (e.g. `openssl rand -base64 32`)"
            )
        return PersonaSecret(DEVELOPMENT_SECRET.encode(), "built-in development secret")
    secret = PersonaSecret(raw.encode(), f"${SECRET_ENV}")
    if env == "production":
        if secret.is_development:
            raise PersonaSecretError(
                f"{SECRET_ENV} is the built-in development secret, which is refused with "
                f"MANA_ENV=production: anyone who has read the source could log in as a persona. "
                f"Set it to a private random value of at least {MIN_PRODUCTION_SECRET_CHARS} "
                "characters (e.g. `openssl rand -base64 32`)"
            )
        if len(raw) < MIN_PRODUCTION_SECRET_CHARS:
            raise PersonaSecretError(
                f"{SECRET_ENV} is too short for MANA_ENV=production ({len(raw)} characters, "
                f"need at least {MIN_PRODUCTION_SECRET_CHARS})"
            )
    return secret


def derive_password(secret: bytes, email: str) -> str:
    """base64url (unpadded) of HMAC-SHA256(secret, normalised email): 43 characters."""
    digest = hmac.new(secret, email.strip().lower().encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


__all__ = [
    "DEVELOPMENT_SECRET",
    "MIN_PRODUCTION_SECRET_CHARS",
    "SECRET_ENV",
    "PersonaSecret",
    "PersonaSecretError",
    "derive_password",
    "persona_secret",
]
