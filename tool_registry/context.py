"""Who is calling, where, and how: the per-call context every consumer builds, and the
narrower context a handler receives."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, TypeVar, cast, get_args

from tool_registry.clock import Clock
from tool_registry.ids import new_request_id
from tool_registry.store.accounts import Space
from tool_registry.store.records import ScopedStore

Invoker = Literal["mcp", "mission-runner", "persona-runner", "cli", "user"]
INVOKERS: tuple[str, ...] = get_args(Invoker)

B = TypeVar("B")

MAX_IDEMPOTENCY_KEY_CHARS = 200


class InvalidIdempotencyKey(ValueError):
    """An idempotency key that cannot be used; the text says why (no subject, e.g. "must not be
    empty"), so each consumer can name the field as its callers know it."""


def idempotency_key_problem(key: str) -> str | None:
    """What is wrong with `key` (None: nothing). A key is 1-200 printable characters: it is
    stored, compared and logged, so control characters and unbounded lengths are refused."""
    if not key:
        return "must not be empty"
    if len(key) > MAX_IDEMPOTENCY_KEY_CHARS:
        return f"must be at most {MAX_IDEMPOTENCY_KEY_CHARS} characters, got {len(key)}"
    if not key.isprintable():
        return "must contain printable characters only (no control characters or line breaks)"
    return None


@dataclass(frozen=True)
class CallContext:
    """Identity and intent of one call. `space` is an id or slug; None means the caller's
    personal space. `idempotency_key` makes a retried write return the first outcome."""

    user_id: str
    space: str | None = None
    invoker: Invoker = "cli"
    request_id: str = field(default_factory=new_request_id)
    idempotency_key: str | None = None
    session_id: str | None = None

    def __post_init__(self) -> None:
        if self.invoker not in INVOKERS:
            raise ValueError(f"unknown invoker {self.invoker!r}")


class Backends:
    """Optional outside services (e.g. an image generator), keyed by the names tools `require`."""

    def __init__(self, services: dict[str, Any] | None = None) -> None:
        self._services: dict[str, Any] = dict(services or {})

    def configured(self, name: str) -> bool:
        return name in self._services

    def names(self) -> list[str]:
        return sorted(self._services)

    def get(self, name: str, kind: type[B]) -> B:
        service = self._services.get(name)
        if service is None:
            raise LookupError(f"backend {name!r} is not configured")
        return cast(B, service)

    def set(self, name: str, service: Any) -> None:
        self._services[name] = service


@dataclass(frozen=True)
class ToolContext:
    """What a handler gets: a store bound to (user, space) and nothing unscoped."""

    store: ScopedStore
    user_id: str
    space: Space
    role: str
    invoker: str
    request_id: str
    clock: Clock
    backends: Backends

    def now(self) -> datetime:
        return self.clock.now()
