"""Authentication failures with stable machine reasons (used for metrics and for the
`error_description` of a `WWW-Authenticate` header; never carry a token or a password)."""

from __future__ import annotations


class AuthError(Exception):
    """A credential was missing or unacceptable. `reason` is a stable machine string."""

    def __init__(self, reason: str, message: str, *, status: int = 401) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.status = status


class AuthUnavailable(AuthError):
    """Verification is impossible right now (e.g. the remote JWKS cannot be fetched)."""

    def __init__(self, message: str) -> None:
        super().__init__("jwks-unavailable", message, status=503)


class LoginThrottled(AuthError):
    """Too many failed logins for one account in a short time."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(
            "login-throttled",
            f"too many failed logins; try again in {retry_after} s",
            status=429,
        )
        self.retry_after = retry_after
