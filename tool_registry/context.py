"""Who is calling, where, and how: the per-call context every consumer builds, and the
narrower context a handler receives."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import InitVar, dataclass, field
from datetime import datetime
from typing import Any, Generic, Literal, TypeVar, get_args, overload

from tool_registry.client_channel import NO_CHANNEL, Attachment, ClientChannel
from tool_registry.clock import Clock
from tool_registry.ids import new_request_id
from tool_registry.store.accounts import Space
from tool_registry.store.records import ScopedStore

Invoker = Literal["mcp", "mission-runner", "persona-runner", "cli", "user"]
INVOKERS: tuple[str, ...] = get_args(Invoker)

T = TypeVar("T")
V = TypeVar("V")

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
    personal space. `idempotency_key` makes a retried write return the first outcome.
    `scopes` are the access scopes a delegated caller was granted (an OAuth connection);
    None means unrestricted (the CLI, agents, stdio, locally issued tokens). `channel` reaches
    the calling client (MCP); everyone else has `NO_CHANNEL`."""

    user_id: str
    space: str | None = None
    invoker: Invoker = "cli"
    request_id: str = field(default_factory=new_request_id)
    idempotency_key: str | None = None
    session_id: str | None = None
    scopes: frozenset[str] | None = None
    # The client of this call (progress, logs, questions to the user); see client_channel.
    channel: ClientChannel = field(default=NO_CHANNEL, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.invoker not in INVOKERS:
            raise ValueError(f"unknown invoker {self.invoker!r}")


@dataclass(frozen=True, eq=False)
class BackendKey(Generic[T]):
    """The typed name of an optional outside service (e.g. an image generator): `name` is what
    `ToolSpec.requires` lists and errors show; `T` is what `Backends.get` and
    `ToolContext.backend` return, so neither needs a cast. `kind`, when given, is checked with
    `isinstance` at registration (a guard for untyped callers; mypy already checks typed ones).

    A key is identified by the object, not only its name: a backend is handed out for the key
    it was registered with, so a second key spelled the same cannot reach it."""

    name: str
    kind: type[Any] | None = None


@dataclass(frozen=True, eq=False)
class ScopedBackendKey(Generic[T, V]):
    """A backend a handler never gets itself: `ToolContext.backend(key)` hands it
    `bind(service, user_id, space)`, a view bound to the caller's user and space (as
    `ctx.store` is for records). The composition root registers and reads the unscoped
    service `T` with `Backends.set` / `Backends.get`."""

    name: str
    bind: Callable[[T, str, Space], V]
    kind: type[Any] | None = None


@dataclass(frozen=True)
class _Entry(Generic[T]):
    key: BackendKey[T] | ScopedBackendKey[T, Any]
    service: T


class Backends:
    """Optional outside services, registered and looked up by typed keys; the key's name is
    what tools `require`."""

    def __init__(self) -> None:
        self._entries: dict[str, _Entry[Any]] = {}

    def configured(self, name: str) -> bool:
        return name in self._entries

    def names(self) -> list[str]:
        return sorted(self._entries)

    def get(self, key: BackendKey[T] | ScopedBackendKey[T, Any]) -> T:
        """The service registered under `key` (for a scoped key: the unscoped service, for the
        composition root; handlers use `ToolContext.backend`)."""
        entry: _Entry[T] | None = self._entries.get(key.name)
        if entry is None:
            raise LookupError(f"backend {key.name!r} is not configured")
        if entry.key is not key:
            raise LookupError(f"backend {key.name!r} is registered under another key")
        return entry.service

    def set(self, key: BackendKey[T] | ScopedBackendKey[T, Any], service: T) -> None:
        """Register (or replace) the backend of `key`; `TypeError` when `key.kind` is given and
        `service` is not one."""
        if key.kind is not None and not isinstance(service, key.kind):
            raise TypeError(
                f"backend {key.name!r} must be a {key.kind.__name__}, got {type(service).__name__}"
            )
        self._entries[key.name] = _Entry(key, service)


@dataclass(frozen=True)
class ToolContext:
    """What a handler gets: a store bound to (user, space) and nothing unscoped. Backends are
    reached through `backend(key)` only; a scoped backend comes as a view bound to the same
    user and space. `channel` talks to the calling client; `attach` adds content parts."""

    store: ScopedStore
    user_id: str
    space: Space
    role: str
    invoker: str
    request_id: str
    clock: Clock
    backends: InitVar[Backends]
    channel: ClientChannel = field(default=NO_CHANNEL, repr=False, compare=False)
    _backends: Backends = field(init=False, repr=False, compare=False)
    _attachments: list[Attachment] = field(init=False, repr=False, compare=False)

    def __post_init__(self, backends: Backends) -> None:
        object.__setattr__(self, "_backends", backends)
        object.__setattr__(self, "_attachments", [])

    def attach(self, attachment: Attachment) -> None:
        """Add a content part (image, audio, embedded resource) to this call's result."""
        self._attachments.append(attachment)

    @property
    def attachments(self) -> tuple[Attachment, ...]:
        return tuple(self._attachments)

    def now(self) -> datetime:
        return self.clock.now()

    @overload
    def backend(self, key: ScopedBackendKey[Any, V]) -> V: ...

    @overload
    def backend(self, key: BackendKey[T]) -> T: ...

    def backend(self, key: BackendKey[Any] | ScopedBackendKey[Any, Any]) -> Any:
        """The backend of `key`; for a `ScopedBackendKey`, the view bound to this call's user
        and space (the unscoped service is never handed out). Raises `LookupError` when it is
        not configured (the pipeline refuses such a call before the handler runs)."""
        service = self._backends.get(key)
        if isinstance(key, ScopedBackendKey):
            return key.bind(service, self.user_id, self.space)
        return service
