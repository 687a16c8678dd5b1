"""Errors with stable machine reasons. Every boundary turns them into a clear message."""

from __future__ import annotations


class ManaError(Exception):
    """Base for expected failures: `reason` is a stable machine string, the text is for people."""

    reason: str = "error"

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else self.reason


class NotFoundError(ManaError):
    reason = "not-found"


class NotAMemberError(ManaError):
    reason = "not-a-member"

    def __init__(self, message: str = "not a member of this space") -> None:
        super().__init__(message)


class PermissionDeniedError(ManaError):
    reason = "permission-denied"


class ConflictError(ManaError):
    reason = "conflict"


class ValidationFailed(ManaError):
    """Bad input at a boundary (CLI flag, config value, catalog entry)."""

    reason = "invalid-input"


class ToolError(ManaError):
    """Raised by a handler for an expected, explainable failure (e.g. record not found).

    The pipeline turns it into an `error` outcome carrying `reason` and the message verbatim,
    so the text must be safe to show to a client and a model.
    """

    reason = "tool-error"
