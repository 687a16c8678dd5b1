"""Authentication for the HTTP MCP server: Ed25519 signing keys in the data directory (with key
ids and rotation), JWT issue and verification against a local or remote JWKS, password login."""

from mana_auth.durations import format_duration, parse_duration
from mana_auth.errors import AuthError, AuthUnavailable, LoginThrottled
from mana_auth.keys import MAX_TOKEN_TTL, KeyInfo, KeyStore, KeyStoreError
from mana_auth.login import LOGIN_TOKEN_TTL, LoginAttempt, LoginThrottle, PasswordLogin
from mana_auth.remote import RemoteJwks, check_jwks_url
from mana_auth.tokens import (
    DEFAULT_AUDIENCE,
    LOCAL_ISSUER,
    IssuedToken,
    KeySource,
    LocalKeys,
    Principal,
    TokenIssuer,
    TokenVerifier,
    VerificationKey,
)

__all__ = [
    "DEFAULT_AUDIENCE",
    "LOCAL_ISSUER",
    "LOGIN_TOKEN_TTL",
    "MAX_TOKEN_TTL",
    "AuthError",
    "AuthUnavailable",
    "IssuedToken",
    "KeyInfo",
    "KeySource",
    "KeyStore",
    "KeyStoreError",
    "LocalKeys",
    "LoginAttempt",
    "LoginThrottle",
    "LoginThrottled",
    "PasswordLogin",
    "Principal",
    "RemoteJwks",
    "TokenIssuer",
    "TokenVerifier",
    "VerificationKey",
    "check_jwks_url",
    "format_duration",
    "parse_duration",
]
