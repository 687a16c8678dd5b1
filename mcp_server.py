"""MCP server: exposes the tool registry to MCP clients through the one invocation pipeline.

Built on the `mcp` package's low-level `Server`: its handlers run per request, so the tool list
is computed per call from the registry, the caller's space type and the configured backends.
Every `tools/call` becomes exactly one `Pipeline.invoke(..., CallContext(invoker="mcp"))`; this
module adds no check of its own except refusing tools that are never exposed (admin scope), which
it reports exactly like an unknown tool, and validating the idempotency key below.

Who is calling comes from a `CallerSource`:

- HTTP (`mana_http`): the ASGI guard verifies the bearer token and resolves `X-Mana-Space` on
  every request and leaves a `Caller` in the request scope (`CALLER_SCOPE_KEY`);
  `RequestScopeCaller` reads it.
- stdio and in-process: `FixedCaller` (one user, one space ref, resolved on every request).

A `tools/call` may carry an idempotency key in its request `_meta` under `mana/idempotencyKey`
(a string of 1-200 printable characters; anything else is an `invalid-input` tool error): a
retried write with the same key returns the first call's stored result (its result `_meta` says
`"mana/replayed": true`) instead of running again; read-only tools ignore the key. Keys belong
to the authenticated user; reusing one for another tool, other arguments or another space is
refused with reason `idempotency-key-reused`.

Resources, prompts and completions (`ViewHandlers`) come from the registry's `ResourceSpec` and
`PromptSpec` declarations; lists follow the space type and access scopes like tools, and every
read, prompt and completion is one `Pipeline.view` (scope, membership, module, audit) in the
request's space.

Results carry `structuredContent` (the tool's output model) plus the same JSON as a text block.
Failures are `isError` results with a clear text; handler crashes give a short message with the
request id, never a traceback (handlers catch everything: on the 2025-11-25 era the SDK would
otherwise send the exception text to the client).

On a connection that speaks a handshake-era protocol (2025-11-25 and older) the server tracks the
set of tool names the connection last saw and sends `notifications/tools/list_changed` when the
set visible to it changes (its space switched to another type, a backend was configured). Over
HTTP that view is kept in the session's database row (`ToolSetWatch.persist`), so whichever
replica serves a request compares against the same view.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any

import mcp_types as types
import structlog
from mcp.server import Server
from mcp.server.lowlevel.server import NotificationOptions
from mcp.server.models import InitializationOptions

from mcp_adapter.callers import (
    CALLER_SCOPE_KEY,
    Caller,
    CallerError,
    CallerSource,
    FixedCaller,
    RequestScopeCaller,
    ToolSetWatch,
)
from mcp_adapter.catalog import CACHE_HINTS, ToolCatalog, flat_schema
from mcp_adapter.input_rounds import InputRounds
from mcp_adapter.logging_level import LoggingHandlers
from mcp_adapter.results import (
    META_ERROR,
    META_IDEMPOTENCY_KEY,
    META_REPLAYED,
    META_REQUEST_ID,
    META_SPACE_ID,
    error_text,
    idempotency_key_of,
    outcome_result,
)
from mcp_adapter.session_state import ConnectionState, SessionState
from mcp_adapter.stdio import DrainingStreams, StdinLines, serve_stdio
from mcp_adapter.subscriptions import ResourceChanges, SubscriptionHandlers
from mcp_adapter.tools import ToolHandlers
from mcp_adapter.views import ViewHandlers
from tool_registry.context import InvalidIdempotencyKey
from tool_registry.pipeline import Pipeline

log = structlog.get_logger("mana.mcp")

SERVER_NAME = "mana"
INSTRUCTIONS = (
    "Mana holds the user's personal data (habits, todos, notes, journal, mood, calendar, "
    "contacts, reference photos). Every call acts in one space: over HTTP the X-Mana-Space "
    "header selects it, over stdio the --space flag; the default is the user's personal space. "
    "The tool list depends on the space's type."
)


def _server_version() -> str:
    try:
        return version("mana-mcp")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "0"


# -- the server --------------------------------------------------------------------------------


class _ManaServer(Server[Any]):
    """Advertises `tools.listChanged` on handshake-era connections (HTTP sessions build their
    initialization options with the defaults, so the default has to say so)."""

    def create_initialization_options(
        self,
        notification_options: NotificationOptions | None = None,
        experimental_capabilities: dict[str, dict[str, Any]] | None = None,
        extensions: dict[str, dict[str, Any]] | None = None,
    ) -> InitializationOptions:
        return super().create_initialization_options(
            notification_options or NotificationOptions(tools_changed=True),
            experimental_capabilities,
            extensions,
        )


class McpAdapter:
    """The registry as an MCP server. `server` is the `mcp` low-level `Server` to run on any
    transport; `callers` says who is calling on each request; `state` keeps what handshake-era
    sessions set (log level, resource subscriptions). The composition root registers
    `changes.observe` in `pipeline.observers` so subscribers hear of changed resources."""

    def __init__(
        self,
        pipeline: Pipeline,
        callers: CallerSource,
        *,
        state: SessionState,
        name: str = SERVER_NAME,
    ):
        self.pipeline = pipeline
        self.callers = callers
        self.catalog = ToolCatalog(pipeline)
        # One state sealer for the input-required rounds of tool calls and prompts.
        self.rounds = InputRounds(pipeline.db)
        self.tools = ToolHandlers(pipeline, callers, self.catalog, rounds=self.rounds)
        self.views = ViewHandlers(pipeline, callers, rounds=self.rounds)
        self.subscriptions = SubscriptionHandlers(callers, self.views, state)
        self.logging = LoggingHandlers(callers, state)
        self.changes = ResourceChanges(pipeline.registry, state)
        self.server = _ManaServer(
            name,
            version=_server_version(),
            title="Mana",
            instructions=INSTRUCTIONS,
            on_list_tools=self.tools.list_tools,
            on_call_tool=self.tools.call_tool,
            on_list_resources=self.views.list_resources,
            on_list_resource_templates=self.views.list_resource_templates,
            on_read_resource=self.views.read_resource,
            on_list_prompts=self.views.list_prompts,
            on_get_prompt=self.views.get_prompt,
            on_completion=self.views.complete,
            on_subscribe_resource=self.subscriptions.subscribe,
            on_unsubscribe_resource=self.subscriptions.unsubscribe,
            get_tool_input_schema=self.catalog.input_schema,
            cache_hints=CACHE_HINTS,
        )
        # Registered here rather than as `on_set_logging_level`, whose constructor argument
        # warns that 2026-07-28 retired the method: the SDK serves it to handshake-era clients
        # only and advertises the `logging` capability to them.
        self.server.add_request_handler(
            "logging/setLevel", types.SetLevelRequestParams, self.logging.set_level
        )
        self.server.middleware.append(self.logging.check_level)


def stdio_adapter(pipeline: Pipeline, *, user_id: str, space: str | None) -> McpAdapter:
    """The adapter of one stdio (or in-process) connection; its resource-change observer is
    registered in `pipeline.observers` (remove `adapter.changes.observe` when done with it)."""
    callers = FixedCaller(pipeline.accounts, user_id, space)
    adapter = McpAdapter(pipeline, callers, state=ConnectionState(callers))
    pipeline.observers.append(adapter.changes.observe)
    return adapter


__all__ = [
    "CALLER_SCOPE_KEY",
    "META_ERROR",
    "META_IDEMPOTENCY_KEY",
    "META_REPLAYED",
    "META_REQUEST_ID",
    "META_SPACE_ID",
    "Caller",
    "CallerError",
    "CallerSource",
    "DrainingStreams",
    "FixedCaller",
    "InvalidIdempotencyKey",
    "McpAdapter",
    "RequestScopeCaller",
    "StdinLines",
    "ToolCatalog",
    "ToolHandlers",
    "ToolSetWatch",
    "ViewHandlers",
    "error_text",
    "flat_schema",
    "idempotency_key_of",
    "outcome_result",
    "serve_stdio",
    "stdio_adapter",
]
