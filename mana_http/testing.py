"""In-process MCP testing for tool authors: the real HTTP app (token check, `X-Mana-Space`,
sessions, the pipeline and its gate) served to the real `mcp` client without a network.

    async def test_my_tool_over_mcp(mana_kit, mana_mcp):
        alice = await mana_kit.user()
        async with mana_mcp.client(alice) as client:            # 2026-07-28
            result = await client.call_tool("habits.list", {})
        async with mana_mcp.client(alice, space, mode="legacy") as client:  # 2025-11-25 session
            ...

`mana_mcp` (pytest fixture from the tool_registry plugin) is an `McpTestServer` over the kit's
pipeline. `client(user, space)` carries that identity: it sends a freshly issued token and the
space header on every request, exactly like a remote client. `http(...)` gives a raw client for
status-code checks, `token(user)` a bearer token.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import anyio
import httpx2
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from starlette.types import ASGIApp, Message

from mana_http.app import AuthSetup, HttpConfig, ManaHttpApp, build_http_app
from mana_http.schema import HTTP_MIGRATIONS
from mana_oauth.schema import OAUTH_MIGRATIONS
from mcp_adapter.schema import CHANNEL_MIGRATIONS
from tool_registry.pipeline import Pipeline
from tool_registry.store import Database, PostgresDatabase, SqliteDatabase, open_database
from tool_registry.store.accounts import Space, User

BASE_URL = "http://127.0.0.1:3069"
ClientMode = Literal["auto", "legacy", "2026-07-28"]


class _Body(httpx2.AsyncByteStream):
    def __init__(self, chunks: MemoryObjectReceiveStream[bytes], closed: anyio.Event) -> None:
        self._chunks = chunks
        self._closed = closed

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._chunks:
            yield chunk

    async def aclose(self) -> None:
        self._closed.set()
        await self._chunks.aclose()


class StreamingASGITransport(httpx2.AsyncBaseTransport):
    """Like `httpx2.ASGITransport`, but the response body streams as the app sends it, so SSE
    responses and long-lived GET streams (2025-11-25 sessions) behave as over a socket."""

    def __init__(self, app: ASGIApp, task_group: TaskGroup) -> None:
        self.app = app
        self.task_group = task_group

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        body = b"".join([chunk async for chunk in request.stream])  # type: ignore[union-attr]
        scope: dict[str, Any] = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": request.method,
            "headers": [(k.lower(), v) for k, v in request.headers.raw],
            "scheme": request.url.scheme,
            "path": request.url.path,
            "raw_path": request.url.raw_path.split(b"?")[0],
            "query_string": request.url.query,
            "server": (request.url.host, request.url.port),
            "client": ("127.0.0.1", 40000),
            "root_path": "",
        }
        send_chunks, recv_chunks = anyio.create_memory_object_stream[bytes](math.inf)
        started = anyio.Event()
        closed = anyio.Event()
        head: dict[str, Any] = {}
        delivered = False

        async def receive() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            await closed.wait()
            return {"type": "http.disconnect"}

        async def send(message: Message) -> None:
            if message["type"] == "http.response.start":
                head["status"] = message["status"]
                head["headers"] = list(message.get("headers", ()))
                started.set()
            elif message["type"] == "http.response.body":
                chunk = message.get("body", b"")
                if chunk:
                    with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
                        await send_chunks.send(chunk)
                if not message.get("more_body", False):
                    send_chunks.close()

        async def run() -> None:
            try:
                await self.app(scope, receive, send)
            except Exception as exc:  # surfaces as a 500, like a real server
                head.setdefault("error", exc)
            finally:
                send_chunks.close()
                if not started.is_set():
                    head.setdefault("status", 500)
                    head.setdefault("headers", [])
                    started.set()

        self.task_group.start_soon(run)
        await started.wait()
        return httpx2.Response(
            head["status"],
            headers=head["headers"],
            stream=_Body(recv_chunks, closed),
            request=request,
        )


async def ensure_session_schema(db: Database) -> None:
    """The HTTP app's session registry, OAuth tables and MCP channel secrets on `db`: a
    pipeline built by `tool_kit` opened its database with the core schema only (the runtime's
    migrations carry `HTTP_MIGRATIONS`, `OAUTH_MIGRATIONS` and `CHANNEL_MIGRATIONS`), so apply
    them the way a second process would, on the same file or URL."""
    if isinstance(db, PostgresDatabase):
        target: str | Path = db.url
    elif isinstance(db, SqliteDatabase):
        target = db.path
    else:  # pragma: no cover - a third backend would say how to reach it
        raise TypeError(f"cannot migrate a {type(db).__name__}")
    migrated = await open_database(
        target, (*HTTP_MIGRATIONS, *OAUTH_MIGRATIONS, *CHANNEL_MIGRATIONS)
    )
    await migrated.close()


def _space_ref(space: Space | str | None) -> str | None:
    return space.id if isinstance(space, Space) else space


class McpTestServer:
    """The HTTP app over `pipeline`, running in-process. Use as `async with`."""

    def __init__(
        self,
        pipeline: Pipeline,
        data_dir: Path,
        *,
        config: HttpConfig | None = None,
        audience: str = "mana",
    ) -> None:
        self.pipeline = pipeline
        self.auth = AuthSetup.local(data_dir, audience=audience)
        self.app: ManaHttpApp = build_http_app(pipeline, self.auth, config)
        self._ready = asyncio.Event()
        self._stop = asyncio.Event()
        self._runner: asyncio.Task[None] | None = None
        self._task_group: TaskGroup | None = None
        self._failure: BaseException | None = None

    async def _run(self) -> None:
        # All anyio scopes (session manager, request tasks) live in this one task, so the
        # harness can be entered and left from different tasks (pytest fixtures do that).
        try:
            async with anyio.create_task_group() as tg, self.app.lifespan(self.app.asgi):
                self._task_group = tg
                self._ready.set()
                await self._stop.wait()
                tg.cancel_scope.cancel()
        except BaseException as exc:  # pragma: no cover - reported by __aenter__
            self._failure = exc
            self._ready.set()
            raise

    async def __aenter__(self) -> McpTestServer:
        await ensure_session_schema(self.pipeline.db)
        self._runner = asyncio.get_running_loop().create_task(self._run())
        await self._ready.wait()
        if self._failure is not None:  # pragma: no cover
            raise RuntimeError("the in-process MCP server failed to start") from self._failure
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._runner is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._runner
        for observer in (self.app.metrics.observe, self.app.adapter.changes.observe):
            with contextlib.suppress(ValueError):
                self.pipeline.observers.remove(observer)

    # -- identities --------------------------------------------------------------------------

    def token(self, user: User | str, *, ttl: timedelta = timedelta(minutes=15)) -> str:
        issuer = self.auth.issuer
        assert issuer is not None
        user_id = user.id if isinstance(user, User) else user
        email = user.email if isinstance(user, User) else None
        return issuer.issue(user_id, email=email, ttl=ttl).token

    def http(
        self,
        user: User | str | None = None,
        space: Space | str | None = None,
        *,
        headers: dict[str, str] | None = None,
    ) -> httpx2.AsyncClient:
        """A raw HTTP client into the app (for status codes, `/metrics`, `/auth/token`)."""
        if self._task_group is None:
            raise RuntimeError("use the server inside `async with`")
        merged: dict[str, str] = {}
        if user is not None:
            merged["Authorization"] = f"Bearer {self.token(user)}"
        ref = _space_ref(space)
        if ref is not None:
            merged["X-Mana-Space"] = ref
        merged.update(headers or {})
        return httpx2.AsyncClient(
            transport=StreamingASGITransport(self.app.asgi, self._task_group),
            base_url=BASE_URL,
            headers=merged,
            timeout=httpx2.Timeout(30.0),
        )

    @contextlib.asynccontextmanager
    async def client(
        self,
        user: User | str,
        space: Space | str | None = None,
        *,
        mode: ClientMode = "auto",
        http: httpx2.AsyncClient | None = None,
        **client_options: Any,
    ) -> AsyncIterator[Client]:
        """An `mcp.Client` acting as `user` in `space` (None: the personal space). Pass your own
        `http` (from `http(...)`) to change headers between calls, e.g. to switch spaces;
        `client_options` go to `mcp.Client` (e.g. `message_handler=`)."""
        own = http is None
        transport_client = http or self.http(user, space)
        try:
            async with Client(
                streamable_http_client(f"{BASE_URL}/mcp", http_client=transport_client),
                mode=mode,
                read_timeout_seconds=30,
                **client_options,
            ) as client:
                yield client
        finally:
            if own:
                await transport_client.aclose()


__all__ = ["McpTestServer", "StreamingASGITransport", "ensure_session_schema"]
