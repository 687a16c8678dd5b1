"""Who is calling an MCP handler, per request: the `Caller` (user, resolved space and role, access
scopes, session) and the sources that produce it (HTTP guard scope, fixed stdio caller)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import structlog
from mcp.server import ServerRequestContext
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS

from tool_registry.client_channel import LogLevel
from tool_registry.context import (
    Invoker,
)
from tool_registry.errors import NotAMemberError
from tool_registry.membership import require_member
from tool_registry.store.accounts import Accounts, SpaceAccess

log = structlog.get_logger("mana.mcp")

CALLER_SCOPE_KEY = "mana.caller"


@dataclass
class ToolSetWatch:
    """Per handshake-era connection: the tool names it last saw (None: it has not looked yet)
    and the space type they were computed for. `listening` says whether a server-initiated
    message can reach the client right now: always over stdio; over HTTP only while its GET
    stream is open (the transport sets it; `mana_http` pushes on it after a server-side
    change)."""

    seen: frozenset[str] | None = None
    space_type: str | None = None
    listening: bool = True
    # Called with the new view whenever it changes, before the request is answered: HTTP
    # sessions keep it in their database row, so every replica compares against one view.
    persist: Callable[[frozenset[str], str], Awaitable[None]] | None = field(
        default=None, repr=False
    )


@dataclass(frozen=True)
class Caller:
    """Who is calling and where, for this one request. `access` is the resolved space and role
    when the source resolved it (always over HTTP); otherwise `space_ref` (id or slug, None =
    personal) is handed to the pipeline, which resolves it anyway. `scopes` are the access
    scopes of the caller's token (None: unrestricted); listing and calling both follow them."""

    user_id: str
    access: SpaceAccess | None
    session_id: str | None = None
    watch: ToolSetWatch | None = None
    space_ref: str | None = None
    known_space_type: str | None = None
    scopes: frozenset[str] | None = None
    # The lowest level of `notifications/message` the client asked for with logging/setLevel
    # (handshake era; None: it never set one).
    log_level: LogLevel | None = None

    @property
    def space(self) -> str | None:
        return self.access.space.id if self.access is not None else self.space_ref

    @property
    def invoker(self) -> Invoker:
        """Persona users drive MCP through the persona runner: record their calls as such."""
        persona = self.access is not None and self.access.user_kind == "persona"
        return "persona-runner" if persona else "mcp"

    @property
    def space_type(self) -> str | None:
        return self.access.space.type if self.access is not None else self.known_space_type


class CallerError(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class CallerSource(Protocol):
    async def resolve(
        self, ctx: ServerRequestContext[Any, Any], *, need_access: bool = True
    ) -> Caller:
        """The caller of this request; `need_access=False` allows skipping the space lookup
        (the pipeline resolves the space of every call itself)."""
        ...


def is_handshake_era(ctx: ServerRequestContext[Any, Any]) -> bool:
    return ctx.protocol_version in HANDSHAKE_PROTOCOL_VERSIONS


class FixedCaller:
    """One user and one space ref for the whole connection (stdio, in-process). Membership is
    still resolved on every request, so a revoked membership takes effect immediately.
    `log_level` is the level the client set with logging/setLevel on this connection."""

    def __init__(self, accounts: Accounts, user_id: str, space: str | None = None) -> None:
        self.accounts = accounts
        self.user_id = user_id
        self.space = space
        self.watch = ToolSetWatch()
        self.log_level: LogLevel | None = None
        self._space_type: str | None = None  # a space never changes its type

    async def resolve(
        self, ctx: ServerRequestContext[Any, Any], *, need_access: bool = True
    ) -> Caller:
        watch = self.watch if is_handshake_era(ctx) else None
        if not need_access and (watch is None or self._space_type is not None):
            # tools/call: the pipeline resolves the space and checks membership itself
            return Caller(
                self.user_id,
                None,
                None,
                watch,
                self.space,
                self._space_type,
                log_level=self.log_level,
            )
        try:
            access = await require_member(self.accounts, self.user_id, self.space)
        except NotAMemberError as refusal:
            raise CallerError(refusal.reason, refusal.message) from None
        self._space_type = access.space.type
        return Caller(self.user_id, access, None, watch, self.space, log_level=self.log_level)


class RequestScopeCaller:
    """HTTP: the guard in front of the MCP endpoint already verified the token and resolved the
    space for this very request and stored a `Caller` in the ASGI scope."""

    async def resolve(
        self, ctx: ServerRequestContext[Any, Any], *, need_access: bool = True
    ) -> Caller:
        request = ctx.request
        scope = getattr(request, "scope", None)
        caller = scope.get(CALLER_SCOPE_KEY) if isinstance(scope, dict) else None
        if not isinstance(caller, Caller):
            raise CallerError("unauthenticated", "this request carries no verified identity")
        return caller
