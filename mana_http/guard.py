"""The ASGI guard in front of the MCP endpoint and the
one-copy rule for the headers that decide who, where and which session.

`SingleHeaders` is the outermost layer: a request that repeats one of `SINGLE_HEADERS` gets 400
before anything reads a header, so every later reader (the guard reads the last copy, Starlette
and the SDK the first) sees the same value, and the value checked here is the value used.

For every request to `/mcp`, in both protocol eras, before the `mcp` session manager sees it:

1. bearer token verified (signature against the JWKS, `exp`, audience) → 401 + `WWW-Authenticate`
   naming the resource metadata (`ResourceServer.challenge`); a token of an OAuth connection
   (`gid` claim) whose connection was revoked → 401 `invalid_token`; a token whose `scope` claim
   lacks `mana:read` → 403 `insufficient_scope`;
2. `X-Mana-Space` (default: the space the token names in its `space` claim, else the personal
   space) resolved with the caller's role in one indexed query → 403 when the caller is not a
   member (or there is no such space);
3. `Mcp-Session-Id` (2025-11-25 sessions, registered in the database: `mana_http.sessions`):
   unknown or expired → 404, opened by another user → 403, on every replica alike; a session
   this process holds no transport for is adopted from its row (`BodyFirstSessionManager.adopt`);
   a POST whose JSON-RPC id is already in flight in the session (a POST being answered, or a
   handler still running after its client left: `RunningRequests`) → 409 (the SDK routes answers
   by id, so the two would cross); `DELETE` ends the caller's own session, for every replica,
   without a space check; every request the SDK would open a session for is registered to the
   user under an id chosen here, counted against the user's cap in the same database write (an
   old, unused session evicted, else 429), and the session is opened with that id; a POST that
   answers a request another replica sent on the session is relayed to it
   (`mana_http.answers`) and answered 202 Accepted here;
4. the resolved `Caller` (with the token's scopes) is put into the ASGI scope, where
   `mcp_server.RequestScopeCaller` reads it in the tool handlers — so the space of every call is
   the space of *its* request;
5. a POST of a token whose scopes do not cover every tool (a read-only connection) is read
   (bounded like the SDK bounds it) and refused with 403 `insufficient_scope` naming the scopes
   needed when it calls a tool they do not cover (any element of a batch), so the client can
   ask the user for more (MCP scope challenge); the pipeline enforces the same rule on every
   call whatever the surface. Other tokens' bodies are not read here.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, Protocol
from uuid import uuid4

import anyio
import pydantic_core
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.transport_security import RequestBodyLimitMiddleware
from mcp.shared.dispatcher import coerce_request_id
from mcp_types import (
    InitializeRequestParams,
    JSONRPCRequest,
    RequestId,
    jsonrpc_message_adapter,
)
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, LATEST_HANDSHAKE_VERSION
from pydantic import ValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mana_auth.errors import AuthError
from mana_auth.tokens import TokenVerifier
from mana_http.answers import AnswerRelay
from mana_http.manager import BodyFirstSessionManager
from mana_http.metrics import Metrics
from mana_http.resource_metadata import ResourceServer
from mana_http.responses import rpc_error, send_json
from mana_http.sessions import SessionEntry, SessionRegistry
from mana_http.store import SessionRow
from mcp_adapter.logging_level import parse_log_level
from mcp_server import CALLER_SCOPE_KEY, Caller
from tool_registry.access_scopes import (
    READ_SCOPE,
    SCOPES,
    insufficient_scope_message,
    missing_scope,
    required_scopes,
)
from tool_registry.errors import NotAMemberError
from tool_registry.membership import check_member
from tool_registry.registry import Registry
from tool_registry.store.accounts import Accounts
from tool_registry.store.postgres import DatabaseUnavailable

_WANTED = frozenset({b"authorization", b"x-mana-space", b"mcp-session-id", b"mcp-protocol-version"})
_SESSION_HEADER = b"mcp-session-id"
_HANDSHAKE_VERSIONS = frozenset(v.encode() for v in HANDSHAKE_PROTOCOL_VERSIONS)
_MAX_SPACE_REF = 128
SESSION_SCOPE_KEY = "mana.session"  # the guard's `SessionEntry` of a request in a session
INSUFFICIENT_SCOPE = "insufficient-scope"
CONNECTION_REVOKED = "connection-revoked"

# Headers a request may carry at most once (lower-case wire name → name in messages).
SINGLE_HEADERS: dict[bytes, str] = {
    b"mcp-session-id": "Mcp-Session-Id",
    b"mcp-protocol-version": "MCP-Protocol-Version",
    b"authorization": "Authorization",
    # the request's own URL (`ResourceServer.for_scope`) and the Host check read one value
    b"host": "Host",
    b"x-mana-space": "X-Mana-Space",
    b"mcp-method": "Mcp-Method",
    b"mcp-name": "Mcp-Name",
}


class SingleHeaders:
    """Outermost ASGI layer: a request that repeats a header of `SINGLE_HEADERS` (names compared
    case-insensitively; two identical copies count too) is refused with 400 naming it."""

    def __init__(self, app: ASGIApp, *, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            seen: set[bytes] = set()
            for raw_name, _ in scope["headers"]:
                name = raw_name.lower()
                if name not in SINGLE_HEADERS:
                    continue
                if name in seen:
                    label = SINGLE_HEADERS[name]
                    self.metrics.auth_failure("duplicate-header")
                    body = rpc_error(
                        f"the {label} header was sent more than once; send it exactly once",
                        "duplicate-header",
                        data={"header": label},
                    )
                    await send_json(send, 400, body)
                    return
                seen.add(name)
        await self.app(scope, receive, send)


def request_key(request_id: RequestId) -> str:
    """The in-flight key of a JSON-RPC id, as coarse as the SDK's correlation: its transport
    routes answers by `str(id)`, its dispatcher by `coerce_request_id(id)` ("7" and 7 are one)."""
    return str(coerce_request_id(request_id))


def initialize_params(body: bytes) -> tuple[str, str | None]:
    """The protocol version a session opened by this body negotiates (the SDK's rule: the
    requested version if it is a handshake version, else the latest) and its `initialize`
    params as JSON, kept so any replica can serve the session; defaults for another body (the
    SDK refuses it, and no session opens)."""
    try:
        raw = pydantic_core.from_json(body)
        if not isinstance(raw, dict) or raw.get("method") != "initialize":
            return LATEST_HANDSHAKE_VERSION, None
        params = InitializeRequestParams.model_validate(raw.get("params") or {}, by_name=False)
    except (ValueError, ValidationError):
        return LATEST_HANDSHAKE_VERSION, None
    requested = params.protocol_version
    version = requested if requested in HANDSHAKE_PROTOCOL_VERSIONS else LATEST_HANDSHAKE_VERSION
    return version, params.model_dump_json(by_alias=True, exclude_none=True)


def stored_params(text: str | None) -> InitializeRequestParams | None:
    return None if text is None else InitializeRequestParams.model_validate_json(text)


def jsonrpc_requests(body: bytes) -> list[JSONRPCRequest]:
    """The JSON-RPC requests in a POST body (one message or each element of a batch), parsed
    and validated exactly as the SDK parses and validates them, so what is checked here is what
    the SDK runs; a body the SDK refuses yields none (it answers that body itself)."""
    try:
        raw = pydantic_core.from_json(body)
    except ValueError:
        return []
    requests: list[JSONRPCRequest] = []
    for item in raw if isinstance(raw, list) else [raw]:
        try:
            message = jsonrpc_message_adapter.validate_python(item, by_name=False)
        except ValidationError:
            continue
        if isinstance(message, JSONRPCRequest):
            requests.append(message)
    return requests


def jsonrpc_request_ids(body: bytes) -> list[RequestId]:
    """The ids of the JSON-RPC requests in a POST body (see `jsonrpc_requests`)."""
    return [message.id for message in jsonrpc_requests(body)]


def called_tool(message: JSONRPCRequest) -> str | None:
    """The tool a `tools/call` request names (None for any other request)."""
    if message.method != "tools/call" or message.params is None:
        return None
    name = message.params.get("name")
    return name if isinstance(name, str) else None


def narrowed(scopes: frozenset[str] | None) -> bool:
    """Whether a token's scopes leave some tools out (then its POST bodies are checked)."""
    return scopes is not None and not scopes.issuperset(SCOPES)


def replaying(first: Message, receive: Receive) -> Receive:
    """A `receive` that hands out `first` (a body already read) once, then the client's."""
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if not replayed:
            replayed = True
            return first
        return await receive()

    return replay


def whole_body(first: Message) -> bytes | None:
    """The request body of a message `RequestBodyLimitMiddleware` buffered, None when the client
    left before all of it arrived."""
    if first["type"] != "http.request" or first.get("more_body", False):
        return None
    body: bytes = first.get("body", b"")
    return body


class GrantStatus(Protocol):
    """Whether an OAuth connection (the `gid` claim of its access tokens) is still granted."""

    async def active(self, gid: str) -> bool: ...


class DrainState:
    """Set when the server starts shutting down: new MCP requests get 503."""

    def __init__(self) -> None:
        self.draining = False


SessionCloser = Callable[[list[str]], Awaitable[None]]


class RunningRequests:
    """`mcp` server middleware: marks a session request's id as running while its handler runs,
    so the guard refuses the id even after the client left the POST that carried it."""

    def __init__(self, sessions: SessionRegistry) -> None:
        self.sessions = sessions

    async def __call__(
        self, ctx: ServerRequestContext[Any, Any], call_next: CallNext
    ) -> HandlerResult:
        scope = getattr(ctx.request, "scope", None)
        entry = scope.get(SESSION_SCOPE_KEY) if isinstance(scope, dict) else None
        if ctx.request_id is None or not isinstance(entry, SessionEntry):
            return await call_next(ctx)
        with self.sessions.running(entry, request_key(ctx.request_id)):
            return await call_next(ctx)


class McpGuard:
    def __init__(
        self,
        manager: BodyFirstSessionManager,
        *,
        verifier: TokenVerifier,
        accounts: Accounts,
        sessions: SessionRegistry,
        metrics: Metrics,
        drain: DrainState,
        close_sessions: SessionCloser,
        close_local: SessionCloser,
        instance: str,
        tool_view: Callable[[str], frozenset[str]],
        resource: ResourceServer,
        registry: Registry,
        grants: GrantStatus | None = None,
        answers: AnswerRelay | None = None,
    ) -> None:
        self.manager = manager
        self.answers = answers  # relays answers to requests another replica sent
        self.verifier = verifier
        self.registry = registry  # which tools a narrowed token's calls need more scope for
        self.grants = grants  # connections of the built-in authorization server
        self.resource = resource  # the 401 challenge names its metadata document
        self.accounts = accounts
        self.sessions = sessions
        self.metrics = metrics
        self.drain = drain
        self.close_sessions = close_sessions  # ends sessions for every replica
        self.close_local = close_local  # closes this process's transports only
        self.instance = instance  # this process, as named in a session's `listener`
        self.tool_view = tool_view  # the tool names visible in a space type

    async def _reject(
        self,
        send: Send,
        status: int,
        reason: str,
        message: str,
        headers: list[tuple[bytes, bytes]] | None = None,
        *,
        request_id: RequestId | None = None,
    ) -> None:
        self.metrics.auth_failure(reason)
        await send_json(send, status, rpc_error(message, reason, request_id=request_id), headers)

    async def _refused_scope(
        self, body: bytes, scopes: frozenset[str] | None, scope: Scope, send: Send
    ) -> bool:
        """Send 403 `insufficient_scope` when a request of `body` calls a tool `scopes` do not
        cover, naming the scopes that tool needs (MCP scope challenge); unknown tools go on to
        the pipeline, which answers them."""
        for message in jsonrpc_requests(body):
            name = called_tool(message)
            spec = self.registry.get(name) if name is not None else None
            if spec is None or not spec.exposable:
                continue
            lacking = missing_scope(spec, scopes)
            if lacking is None:
                continue
            text = insufficient_scope_message(spec.name, lacking)
            needed = required_scopes(spec)
            challenge = self.resource.for_scope(scope).challenge(
                "insufficient_scope", text, scope=needed
            )
            self.metrics.auth_failure(INSUFFICIENT_SCOPE)
            body_out = rpc_error(
                text,
                INSUFFICIENT_SCOPE,
                request_id=message.id,
                data={"tool": spec.name, "scope": " ".join(needed)},
            )
            await send_json(send, 403, body_out, [(b"www-authenticate", challenge)])
            return True
        return False

    async def _scope_checked(
        self, scopes: frozenset[str] | None, scope: Scope, receive: Receive, send: Send
    ) -> None:
        """A POST outside a session of a narrowed token: its body checked, then handed on."""
        first = await receive()  # the whole body: the limit middleware buffered it
        body = whole_body(first)
        if body is None or await self._refused_scope(body, scopes, scope, send):
            return
        await self.manager.handle_request(scope, replaying(first, receive), send)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # pragma: no cover - lifespan is handled by the app
            return
        started = False

        async def tracked(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self._guarded(scope, receive, tracked)
        except DatabaseUnavailable as exc:
            if started:  # bookkeeping after the answer failed: nothing left to answer
                raise
            # the session registry could not be read or written: nothing was served
            await self._reject(send, 503, exc.reason, exc.message, [(b"retry-after", b"1")])

    async def _guarded(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.drain.draining:
            await send_json(
                send,
                503,
                rpc_error("server is shutting down", "shutting-down"),
                [(b"connection", b"close"), (b"retry-after", b"1")],
            )
            return
        # one copy of each (`SingleHeaders` is the outermost layer): the value checked here is
        # the one the SDK reads
        found: dict[bytes, bytes] = {}
        for name, value in scope["headers"]:
            if name in _WANTED:
                found[name] = value

        # 1. who (a refusal's challenge names the resource as this request's Host reached it)
        site = self.resource.for_scope(scope)
        auth = found.get(b"authorization", b"")
        scheme, _, token = auth.partition(b" ")
        if scheme.lower() != b"bearer" or not token.strip():
            await self._reject(
                send,
                401,
                "missing-token",
                "missing bearer token: send Authorization: Bearer <JWT>",
                [(b"www-authenticate", site.challenge())],
            )
            return
        try:
            principal = await self.verifier.verify(token.strip().decode("latin-1"))
        except AuthError as exc:
            headers = [(b"www-authenticate", site.challenge("invalid_token", exc.message))]
            if exc.status == 503:
                headers = [(b"retry-after", b"5")]
            await self._reject(send, exc.status, exc.reason, exc.message, headers)
            return
        gid = principal.grant_id
        if gid is not None and self.grants is not None and not await self.grants.active(gid):
            text = "this connection was revoked"
            await self._reject(
                send,
                401,
                CONNECTION_REVOKED,
                text,
                [(b"www-authenticate", site.challenge("invalid_token", text))],
            )
            return
        scopes = principal.scopes
        if scopes is not None and READ_SCOPE not in scopes:
            text = f"this token was not granted the {READ_SCOPE} scope"
            challenge = site.challenge("insufficient_scope", text, scope=(READ_SCOPE,))
            await self._reject(
                send, 403, INSUFFICIENT_SCOPE, text, [(b"www-authenticate", challenge)]
            )
            return
        user_id = principal.user_id
        method = scope["method"]
        raw_sid = found.get(_SESSION_HEADER)
        if method == "DELETE" and raw_sid is not None:
            # ending one's own session involves no space: a space since left or a bad header
            # must not keep a session open
            row = await self._own_session(raw_sid, user_id, send)
            if row is not None:
                await self._in_session(row, method, scope, receive, send)
            return

        # 2. where
        raw_space = found.get(b"x-mana-space", b"").strip()
        # the header overrides the space the connection was granted in (membership decides)
        space_ref = raw_space.decode("utf-8", "replace") if raw_space else principal.space
        if space_ref is not None and len(space_ref) > _MAX_SPACE_REF:
            await self._reject(send, 400, "bad-space-header", "X-Mana-Space is too long")
            return
        access = await self.accounts.access(user_id, space_ref)
        if access is None and space_ref is None:
            await self._reject(
                send,
                401,
                "unknown-user",
                "the token's user does not exist on this server",
                [(b"www-authenticate", site.challenge("invalid_token", "unknown user"))],
            )
            return
        try:
            access = check_member(access, space_ref)  # unknown and foreign spaces answer alike
        except NotAMemberError as refusal:
            await self._reject(send, 403, refusal.reason, refusal.message)
            return

        # 3. which session
        if raw_sid is not None:
            row = await self._own_session(raw_sid, user_id, send)
            if row is not None:
                await self._in_session(
                    row, method, scope, receive, send, access=access, scopes=scopes
                )
            return

        scope[CALLER_SCOPE_KEY] = Caller(user_id, access, None, None, scopes=scopes)
        version = found.get(b"mcp-protocol-version")
        # The SDK's own rule: a request without a session id on the handshake-era path (no
        # version header, or a handshake version) is admitted as a new session.
        if version is not None and version not in _HANDSHAKE_VERSIONS:
            if method == "POST" and narrowed(scopes):
                # bounded exactly like the SDK bounds it, before the body is read
                checked = RequestBodyLimitMiddleware(
                    partial(self._scope_checked, scopes), self.manager.max_request_body_size
                )
                await checked(scope, receive, send)
            else:
                await self.manager.handle_request(scope, receive, send)
            return
        # bounded exactly like the SDK bounds it, before the body is read
        space_type = access.space.type
        opening = RequestBodyLimitMiddleware(
            partial(self._open_session, user_id, scopes, (space_type, self.tool_view(space_type))),
            self.manager.max_request_body_size,
        )
        await opening(scope, receive, send)

    async def _own_session(self, raw_sid: bytes, user_id: str, send: Send) -> SessionRow | None:
        """The registered session named by the header if it belongs to `user_id`; otherwise the
        refusal (404 unknown, 403 another user's) is sent and None returned."""
        row = await self.sessions.lookup(raw_sid.decode("latin-1"))
        if row is None:
            await self._reject(send, 404, "unknown-session", "Session not found")
            return None
        if row.user_id != user_id:
            await self._reject(
                send, 403, "session-owner-mismatch", "this session belongs to another user"
            )
            return None
        return row

    def _entry(self, row: SessionRow) -> SessionEntry:
        entry = self.sessions.attach(row)
        self.sessions.loader(entry, row)
        if entry.watch.persist is None:
            entry.watch.persist = self.sessions.seen_writer(entry.session_id)
        return entry

    async def _in_session(
        self,
        row: SessionRow,
        method: str,
        scope: Scope,
        receive: Receive,
        send: Send,
        *,
        access: Any = None,
        scopes: frozenset[str] | None = None,
    ) -> None:
        entry = self._entry(row)
        if method != "DELETE":
            scope[CALLER_SCOPE_KEY] = Caller(
                entry.user_id,
                access,
                entry.session_id,
                entry.watch,
                scopes=scopes,
                log_level=parse_log_level(row.log_level),
            )
        stream = method == "GET"
        status = 0
        listening = False

        async def watch(message: Message) -> None:
            nonlocal status, listening
            if message["type"] == "http.response.start":
                status = int(message["status"])
                if stream and status == 200:
                    # where pushes for this session go, for every replica
                    await self.sessions.set_listener(
                        entry.session_id, self.instance, was=self.instance
                    )
                    # The SDK registers the stream's writer in a task started right after this
                    # one and before any other task runs, so pushes from now on can reach it.
                    entry.watch.listening = listening = True
            await send(message)

        scope[SESSION_SCOPE_KEY] = entry
        self.sessions.begin(entry, stream=stream)
        try:
            await self.manager.adopt(row.id, row.protocol_version, stored_params(row.client_params))
            if method == "DELETE":
                # ended for every replica before the client hears so
                await self.sessions.remove([entry.session_id])
            if method == "POST":
                # bounded exactly like the SDK bounds it, before the body is read
                limited = RequestBodyLimitMiddleware(
                    partial(self._claim_and_forward, entry, scopes),
                    self.manager.max_request_body_size,
                )
                await limited(scope, receive, watch)
            else:
                await self.manager.handle_request(scope, receive, watch)
        finally:
            if listening:
                entry.watch.listening = False
                with anyio.CancelScope(shield=True):
                    await self.sessions.set_listener(entry.session_id, None, was=self.instance)
            self.sessions.end(entry, stream=stream)
            if method == "DELETE":
                # ended by the client: the other replicas close their transports too
                await self.close_sessions([entry.session_id])
            elif status == 404:
                # gone from this process's SDK meanwhile (its transport ended): the row decides
                # on the next request
                self.sessions.detach(entry.session_id)
            elif self.drain.draining and entry.busy == 0 and self.sessions.get(entry.session_id):
                # shutting down: its last call finished, close it here so its GET stream ends
                # (the session lives on for the other replicas)
                await self.close_local([entry.session_id])

    async def _claim_and_forward(
        self,
        entry: SessionEntry,
        scopes: frozenset[str] | None,
        scope: Scope,
        receive: Receive,
        send: Send,
    ) -> None:
        """Refuse a POST that calls a tool the token's scopes do not cover (403), or that
        carries a JSON-RPC id already in flight in this session (409, the first request keeps
        its answer); relay an answer to another replica's request (202); otherwise hold its
        ids until it is answered."""
        first = await receive()  # the whole body: the limit middleware buffered it
        body = whole_body(first)
        if narrowed(scopes) and (
            body is None or await self._refused_scope(body, scopes, scope, send)
        ):
            return  # refused, or the client left before its request arrived
        ids = [] if body is None else jsonrpc_request_ids(body)
        # a body without requests may be an answer to another replica's request
        if not ids and body is not None and await self._relayed(entry, body, send):
            return
        keys = [request_key(i) for i in ids]
        taken = self.sessions.claim_requests(entry, keys)
        if taken is not None:
            await self._reject(
                send,
                409,
                "request-id-in-flight",
                f"request id {taken} is already in flight in this session; "
                "use a new id for each request",
                request_id=ids[keys.index(taken)],
            )
            return
        try:
            await self.manager.handle_request(scope, replaying(first, receive), send)
        finally:
            self.sessions.release_requests(entry, keys)

    async def _relayed(self, entry: SessionEntry, body: bytes, send: Send) -> bool:
        """Relay `body` when it answers a request another replica sent (`mana_http.answers`)
        and answer 202 Accepted, as the SDK answers a response it takes; whether it did."""
        found = self.answers.elsewhere(body) if self.answers is not None else None
        if self.answers is None or found is None:
            return False
        await self.answers.forward(entry.session_id, *found)
        await send(
            {
                "type": "http.response.start",
                "status": 202,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"mcp-session-id", entry.session_id.encode()),
                    (b"content-length", b"0"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": b""})
        return True

    async def _open_session(
        self,
        user_id: str,
        scopes: frozenset[str] | None,
        view: tuple[str, frozenset[str]],
        scope: Scope,
        receive: Receive,
        send: Send,
    ) -> None:
        """Register a new session of `user_id` (its cap counted in the database) under an id
        chosen here, then let the SDK answer the opening request in it; a session whose opening
        request is not a success is deleted again. A request calling a tool the token's scopes
        do not cover opens nothing (403)."""
        first = await receive()  # the whole body: the limit middleware buffered it
        body = whole_body(first)
        if body is None:
            return  # the client left before its request arrived
        if narrowed(scopes) and await self._refused_scope(body, scopes, scope, send):
            return
        version, params = initialize_params(body)
        session_id = uuid4().hex
        admission = await self.sessions.reserve(session_id, user_id, version, params, view)
        if admission.evicted:
            await self.close_sessions(admission.evicted)
        if not admission.admitted:
            retry = admission.retry_after
            await self._reject(
                send,
                admission.status,
                admission.reason,
                admission.message,
                [(b"retry-after", str(retry).encode())] if retry is not None else None,
            )
            return
        entry = self.sessions.get(session_id)
        status = 0
        if entry is not None:
            self.sessions.begin(entry, stream=False)
        try:
            status = await self.manager.open_session(
                session_id, scope, replaying(first, receive), send
            )
        finally:
            if entry is not None:
                self.sessions.end(entry, stream=False)
            if not 0 < status < 400:
                with anyio.CancelScope(shield=True):
                    await self.sessions.remove([session_id])


__all__: list[Any] = [
    "SINGLE_HEADERS",
    "DrainState",
    "GrantStatus",
    "McpGuard",
    "RunningRequests",
    "SingleHeaders",
    "jsonrpc_request_ids",
    "request_key",
]
