"""The `mcp` session manager, handed only requests that fully arrived, serving sessions whose
registry lives in the database.

A client that drops its connection before the server has read its POST body (a cancelled or
timed-out call, a closed tab) leaves a request that can never be answered. The SDK reads the
body itself and treats the disconnect as a failure (a logged traceback on the 2025-11-25 path,
an exception out of the ASGI app on the 2026-07-28 path). Reading the body first, bounded like
the SDK bounds it, lets such a request end quietly, before any of it runs.

2025-11-25 sessions are opened and adopted here rather than by the SDK's own no-session-id
path, for two reasons: the guard chooses the session id (it registers the row, counted against
the user's cap, before the session exists), and a replica must be able to serve a session
another replica opened. `adopt` builds a transport for such a session with a connection that
is born initialized with the row's negotiated protocol version and client params, exactly the
state the handshake left on the replica that served it. Both keep the session's `Connection`
(`connections`), the channel of server-initiated notifications on its GET stream. Requests the
server sends on a session carry ids naming this process (`NamedIdDispatcher`), so an answer
POSTed to another replica finds its way back (`mana_http.answers`; `deliver` hands it over).
Everything else (routing by `Mcp-Session-Id`, the modern era, DELETE, idle timeout) is the SDK's.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

import anyio
import structlog
from anyio.abc import TaskStatus
from mcp.server.connection import Connection
from mcp.server.runner import serve_connection
from mcp.server.streamable_http import StreamableHTTPServerTransport
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.shared._stream_protocols import ReadStream, WriteStream
from mcp.shared.dispatcher import CallOptions, coerce_request_id
from mcp.shared.jsonrpc_dispatcher import JSONRPCDispatcher
from mcp.shared.message import SessionMessage
from mcp.shared.transport_context import TransportContext
from mcp_types import InitializeRequestParams, JSONRPCResponse, RequestId
from starlette.types import Message, Receive, Scope, Send

from mana_http.answers import Answer, named_request_id

log = structlog.get_logger("mana.http")

ConnectionFactory = Callable[[JSONRPCDispatcher[TransportContext]], Connection]


class NamedIdDispatcher(JSONRPCDispatcher[TransportContext]):
    """The SDK's dispatcher, sending its requests under ids that name this process
    (`mana_http.answers`), and taking answers another replica received for them."""

    def __init__(
        self,
        read_stream: ReadStream[SessionMessage | Exception],
        write_stream: WriteStream[SessionMessage],
        *,
        next_id: Callable[[], str],
        inline_methods: frozenset[str] = frozenset(),
    ) -> None:
        super().__init__(read_stream, write_stream, inline_methods=inline_methods)
        self._next_named_id = next_id

    async def send_raw_request(
        self,
        method: str,
        params: Mapping[str, Any] | None,
        opts: CallOptions | None = None,
        *,
        _related_request_id: RequestId | None = None,
    ) -> dict[str, Any]:
        named: CallOptions = {**(opts or {})}
        if "request_id" not in named:
            named["request_id"] = self._next_named_id()
        return await super().send_raw_request(
            method, params, named, _related_request_id=_related_request_id
        )

    def deliver(self, answer: Answer) -> bool:
        """Hand `answer` to the request waiting for it, as if it had arrived here; whether
        one was waiting."""
        if answer.id is None or not self.waiting_for(answer.id):
            return False
        outcome = answer.result if isinstance(answer, JSONRPCResponse) else answer.error
        self._resolve_pending(answer.id, outcome)
        return True

    def waiting_for(self, request_id: RequestId) -> bool:
        return coerce_request_id(request_id) in self._pending


class BodyFirstSessionManager(StreamableHTTPSessionManager):
    def __init__(self, *args: Any, instance: str, **kwargs: Any) -> None:
        """`instance` names this process in the ids of the requests it sends."""
        super().__init__(*args, **kwargs)
        self.instance = instance
        self.connections: dict[str, Connection] = {}
        self.dispatchers: dict[str, NamedIdDispatcher] = {}
        # one counter for every session and transport: an id never repeats in this process
        self._sent = itertools.count(1)

    def next_request_id(self) -> str:
        return named_request_id(self.instance, next(self._sent))

    def deliver(self, session_id: str, answer: Answer) -> bool:
        """Hand an answer another replica received to this session's waiting request; whether
        one was waiting here."""
        dispatcher = self.dispatchers.get(session_id)
        return dispatcher is not None and dispatcher.deliver(answer)

    async def handle_request(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            replay = await _whole_body(receive, self.max_request_body_size)
            if replay is None:
                log.debug("client left before its request arrived", path=scope["path"])
                return
            receive = replay
        await super().handle_request(scope, receive, send)

    def holds(self, session_id: str) -> bool:
        return session_id in self._server_instances

    async def open_session(
        self, session_id: str, scope: Scope, receive: Receive, send: Send
    ) -> int:
        """Serve the request that opens session `session_id` (an `initialize`; its body was
        read already); the HTTP status it was answered with (0: none). Unless that is a
        success, nothing of the session is kept."""
        transport = self._transport(session_id)

        def handshake(dispatcher: JSONRPCDispatcher[TransportContext]) -> Connection:
            return Connection.for_loop(dispatcher, session_id=session_id)

        status = 0

        async def watch(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self._start(transport, handshake)
            await transport.handle_request(scope, receive, watch)
        finally:
            if not 0 < status < 400:
                await self._discard_session(session_id, transport)
        return status

    async def adopt(
        self, session_id: str, protocol_version: str, client_params: InitializeRequestParams | None
    ) -> None:
        """Hold a transport for a session whose handshake another replica (or an earlier
        transport of this one) served, so the SDK routes its requests here."""
        if self.holds(session_id):
            return
        async with self._session_creation_lock:
            if self.holds(session_id):
                return
            transport = self._transport(session_id)

            def initialized(dispatcher: JSONRPCDispatcher[TransportContext]) -> Connection:
                connection = Connection.for_loop(
                    dispatcher, session_id=session_id, protocol_version_hint=protocol_version
                )
                connection.client_params = client_params
                connection.initialized.set()
                return connection

            await self._start(transport, initialized)
        log.debug("serving a session opened elsewhere", session=session_id[:8])

    async def end_local(self, session_id: str) -> None:
        """Close this process's transport of the session (its GET stream ends); the session's
        row is the caller's business."""
        transport = self._server_instances.get(session_id)
        if transport is not None:
            await self._discard_session(session_id, transport)

    async def _discard_session(
        self, session_id: str, transport: StreamableHTTPServerTransport
    ) -> None:
        """The SDK's discard, but only of this very transport: a transport that ends late (its
        task winding down after `end_local`) must not drop a newer one adopted meanwhile."""
        if self._server_instances.get(session_id) is transport:
            del self._server_instances[session_id]
            self._session_owners.pop(session_id, None)
        if not transport.is_terminated:
            with anyio.CancelScope(shield=True):
                await transport.terminate()

    def _transport(self, session_id: str) -> StreamableHTTPServerTransport:
        transport = StreamableHTTPServerTransport(
            mcp_session_id=session_id,
            is_json_response_enabled=self.json_response,
            event_store=self.event_store,
            security_settings=self.security_settings,
            retry_interval=self.retry_interval,
            idle_timeout=self.session_idle_timeout,
        )
        self._server_instances[session_id] = transport
        return transport

    async def _start(
        self, transport: StreamableHTTPServerTransport, make_connection: ConnectionFactory
    ) -> None:
        if self._task_group is None:
            raise RuntimeError("Task group is not initialized. Make sure to use run().")
        session_id = transport.mcp_session_id
        assert session_id is not None

        async def run(*, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
            connection: Connection | None = None
            try:
                async with transport.connect() as (read_stream, write_stream):
                    dispatcher = NamedIdDispatcher(
                        read_stream,
                        write_stream,
                        next_id=self.next_request_id,
                        # as the SDK's loop: `initialize` inline, for clients that pipeline
                        inline_methods=frozenset({"initialize"}),
                    )
                    connection = make_connection(dispatcher)
                    self.connections[session_id] = connection
                    self.dispatchers[session_id] = dispatcher
                    task_status.started()
                    idle_scope = transport.idle_scope or anyio.CancelScope()
                    with idle_scope:
                        await serve_connection(
                            self.app,
                            dispatcher,
                            connection=connection,
                            lifespan_state=self._lifespan_state,
                        )
                    if idle_scope.cancelled_caught:
                        log.debug("session transport idle here", session=session_id[:8])
            except Exception:
                log.exception("session crashed", session=session_id[:8])
            finally:
                if self.connections.get(session_id) is connection:
                    del self.connections[session_id]
                    del self.dispatchers[session_id]
                await self._discard_session(session_id, transport)

        try:
            await self._task_group.start(run)
        except BaseException:
            await self._discard_session(session_id, transport)
            raise


async def _whole_body(receive: Receive, limit: int) -> Receive | None:
    """A `receive` that replays the request body read now, or None when the client
    disconnected before the body was complete. Past `limit` bytes it stops reading and leaves
    the rest (and the 413) to the SDK."""
    cached: deque[Message] = deque()
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        cached.append(message)
        size += len(message.get("body", b""))
        if not message.get("more_body", False) or size > limit:
            break

    async def replay() -> Message:
        if cached:
            return cached.popleft()
        return await receive()

    return replay
