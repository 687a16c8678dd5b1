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

import asyncio
import base64
import json
import os
import re
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from typing import Any, Protocol, cast

import anyio
import mcp_types as types
import orjson
import structlog
from mcp.server import Server, ServerRequestContext
from mcp.server.lowlevel.server import NotificationOptions
from mcp.server.models import InitializationOptions
from mcp.shared.message import SessionMessage
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS

from tool_registry.access_scopes import READ_SCOPE, scope_allows
from tool_registry.context import (
    CallContext,
    InvalidIdempotencyKey,
    Invoker,
    idempotency_key_problem,
)
from tool_registry.errors import NotAMemberError
from tool_registry.ids import new_request_id
from tool_registry.membership import require_member
from tool_registry.pipeline import FieldError, Outcome, OutcomeError, Pipeline
from tool_registry.prompts import PromptSpec
from tool_registry.registry import AnySpec
from tool_registry.resources import ResourceBody, ResourceEntry, ResourceSpec
from tool_registry.store.accounts import Accounts, SpaceAccess
from tool_registry.views import MAX_COMPLETIONS, Completer, ViewContext, ViewError

log = structlog.get_logger("mana.mcp")

SERVER_NAME = "mana"
CALLER_SCOPE_KEY = "mana.caller"
META_REQUEST_ID = "mana/requestId"
META_SPACE_ID = "mana/spaceId"
META_ERROR = "mana/error"
META_REPLAYED = "mana/replayed"
META_IDEMPOTENCY_KEY = "mana/idempotencyKey"
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


# -- callers -----------------------------------------------------------------------------------


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
    still resolved on every request, so a revoked membership takes effect immediately."""

    def __init__(self, accounts: Accounts, user_id: str, space: str | None = None) -> None:
        self.accounts = accounts
        self.user_id = user_id
        self.space = space
        self.watch = ToolSetWatch()
        self._space_type: str | None = None  # a space never changes its type

    async def resolve(
        self, ctx: ServerRequestContext[Any, Any], *, need_access: bool = True
    ) -> Caller:
        watch = self.watch if is_handshake_era(ctx) else None
        if not need_access and (watch is None or self._space_type is not None):
            # tools/call: the pipeline resolves the space and checks membership itself
            return Caller(self.user_id, None, None, watch, self.space, self._space_type)
        try:
            access = await require_member(self.accounts, self.user_id, self.space)
        except NotAMemberError as refusal:
            raise CallerError(refusal.reason, refusal.message) from None
        self._space_type = access.space.type
        return Caller(self.user_id, access, None, watch, self.space)


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


# -- tool catalog ------------------------------------------------------------------------------


# Keywords that constrain only values of their own JSON type, so `{"type": T, ...}` or null can
# be written `{"type": [T, "null"], ...}` without changing what validates.
_TYPE_SCOPED = frozenset(
    {
        "type",
        "title",
        "description",
        "default",
        "examples",
        "format",
        "minLength",
        "maxLength",
        "pattern",
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "multipleOf",
        "items",
        "prefixItems",
        "minItems",
        "maxItems",
        "uniqueItems",
        "contains",
        "properties",
        "required",
        "additionalProperties",
        "patternProperties",
        "propertyNames",
        "minProperties",
        "maxProperties",
        "enum",
    }
)
_NULL = {"type": "null"}


def flat_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """An equivalent JSON Schema that is cheaper to validate: local `$defs` references inlined
    (unless recursive) and `anyOf [T, null]` written as `type: [T, "null"]`. Clients validate
    every structured result against the output schema (the `mcp` client does, per call), and a
    `$ref` per list item makes that several times slower for a 100-row result."""
    defs = schema.get("$defs", {})
    recursive = False

    def walk(node: Any, seen: tuple[str, ...]) -> Any:
        nonlocal recursive
        if isinstance(node, list):
            return [walk(item, seen) for item in node]
        if not isinstance(node, dict):
            return node
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/") and len(node) == 1:
            name = ref.removeprefix("#/$defs/")
            if name in seen or name not in defs:
                recursive = True
                return node
            return walk(defs[name], (*seen, name))
        out = {k: walk(v, seen) for k, v in node.items() if k != "$defs"}
        branches = out.get("anyOf")
        if isinstance(branches, list) and len(branches) == 2 and _NULL in branches:
            other = branches[0] if branches[1] == _NULL else branches[1]
            if (
                isinstance(other, dict)
                and isinstance(other.get("type"), str)
                and set(other) <= _TYPE_SCOPED
                and not set(other) & (set(out) - {"anyOf"})
            ):
                merged = {k: v for k, v in out.items() if k != "anyOf"}
                merged.update(other)
                merged["type"] = [other["type"], "null"]
                if "enum" in other:
                    merged["enum"] = [*other["enum"], None]
                return merged
        return out

    flat: dict[str, Any] = walk(schema, ())
    if recursive or '"$ref"' in json.dumps(flat):
        return schema  # something could not be inlined: keep the original with its $defs
    return flat


def tool_of(spec: AnySpec) -> types.Tool:
    """The MCP description of one tool, derived from its spec."""
    ann = spec.annotations()
    return types.Tool(
        name=spec.name,
        title=spec.title,
        description=spec.description,
        input_schema=spec.input_schema(),
        output_schema=flat_schema(spec.output_schema()),
        annotations=types.ToolAnnotations(
            title=ann["title"],
            read_only_hint=ann["readOnlyHint"],
            destructive_hint=ann["destructiveHint"],
            idempotent_hint=ann["idempotentHint"],
            open_world_hint=ann["openWorldHint"],
        ),
    )


class ToolCatalog:
    """Tool lists per (space type, configured backends), built once and reused. A change in the
    configured backends changes the key, so stale lists are never served."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
        self._lists: dict[tuple[str, tuple[str, ...]], tuple[list[types.Tool], frozenset[str]]]
        self._lists = {}
        self._tools: dict[str, types.Tool] = {}

    def _entry(self, space_type: str) -> tuple[list[types.Tool], frozenset[str]]:
        key = (space_type, tuple(self.pipeline.backends.names()))
        entry = self._lists.get(key)
        if entry is None:
            specs = self.pipeline.visible_tools(space_type)
            tools = [self._tool(s) for s in specs]
            entry = (tools, frozenset(t.name for t in tools))
            self._lists[key] = entry
        return entry

    def _tool(self, spec: AnySpec) -> types.Tool:
        tool = self._tools.get(spec.name)
        if tool is None:
            tool = self._tools[spec.name] = tool_of(spec)
        return tool

    def tools(
        self,
        space_type: str,
        invoker: str | None = None,
        scopes: frozenset[str] | None = None,
    ) -> list[types.Tool]:
        """The list for this space type; given `invoker`, without the tools the pipeline's offer
        hook refuses to that kind of caller (persona users never see the missions modules);
        given `scopes`, without the tools they do not cover (a read-only connection is listed
        read tools only)."""
        tools = self._entry(space_type)[0]
        if invoker is None and scopes is None:
            return tools
        registry, offered = self.pipeline.registry, self.pipeline.offered
        return [
            t
            for t in tools
            if (spec := registry.get(t.name)) is not None
            and (invoker is None or offered(spec, invoker))
            and scope_allows(spec, scopes)
        ]

    def names(self, space_type: str) -> frozenset[str]:
        """The names a connection's list_changed bookkeeping compares: every tool of the space
        type, whatever the caller's invoker or scopes. Those narrow a list by a rule that never
        changes for a connection, so a change of this set is the only way its list can change
        (a narrowed connection may hear of a change outside its own subset; it never misses
        one), and the one view per space type is what every replica stores and compares."""
        return self._entry(space_type)[1]

    def input_schema(self, name: str) -> dict[str, Any] | None:
        spec = self.pipeline.registry.get(name)
        if spec is None or not spec.exposable:
            return None
        return spec.input_schema()


# -- results -----------------------------------------------------------------------------------


_PLAIN_FIRST_WORD = re.compile(r"[a-z]+(?![\w.\-])")


def _sentence(text: str) -> str:
    """`text` with a capital first letter when it starts with a plain lower-case word; a tool
    name (`habits.delete`), a field (`dueDate`) or an id at the start is kept exactly."""
    return text[:1].upper() + text[1:] if _PLAIN_FIRST_WORD.match(text) else text


def error_text(outcome: Outcome) -> str:
    """The clear, client-facing text of a failed outcome."""
    err = outcome.error or OutcomeError(reason=outcome.reason or "error", message="call failed")
    if err.reason == "unknown-tool":
        return (
            f"Unknown tool {outcome.tool!r}. Call tools/list to see the tools available in this "
            "space."
        )
    if err.reason == "invalid-input" and err.fields:
        detail = "; ".join(f"{f.field}: {f.message}" for f in err.fields)
        return f"Invalid input for {outcome.tool}: {detail}"
    text = _sentence(err.message)
    if outcome.status == "denied" and outcome.reminder and outcome.reminder not in text:
        text += f" Reminder: {outcome.reminder}"
    if outcome.status == "error" and outcome.request_id not in text:
        text += f" (request id {outcome.request_id})"
    return text


def _text_block(text: str) -> types.TextContent:
    return types.TextContent.model_construct(type="text", text=text)


def outcome_result(outcome: Outcome) -> types.CallToolResult:
    """An MCP tool result: structuredContent + JSON text on success, isError + text otherwise.
    Built with `model_construct`: every value comes from a validated `Outcome`, and the SDK
    validates the result again when it serialises it."""
    meta: dict[str, Any] = {META_REQUEST_ID: outcome.request_id}
    if outcome.space_id:
        meta[META_SPACE_ID] = outcome.space_id
    if outcome.replayed:
        meta[META_REPLAYED] = True
    if outcome.ok and outcome.result is not None:
        content: list[types.ContentBlock] = [_text_block(orjson.dumps(outcome.result).decode())]
        if outcome.reminder:
            content.append(_text_block(f"Reminder: {outcome.reminder}"))
        return types.CallToolResult.model_construct(
            content=content, structured_content=outcome.result, is_error=False, meta=meta
        )
    err = outcome.error
    meta[META_ERROR] = {
        "status": outcome.status,
        "reason": err.reason if err else outcome.reason,
        "fields": [f.model_dump() for f in err.fields] if err else [],
    }
    if outcome.reminder:
        meta[META_ERROR]["reminder"] = outcome.reminder
    return types.CallToolResult.model_construct(
        content=[_text_block(error_text(outcome))], is_error=True, meta=meta
    )


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, list | tuple):
        return "an array"
    if isinstance(value, Mapping):
        return "an object"
    return type(value).__name__


def idempotency_key_of(meta: Mapping[str, Any] | None) -> str | None:
    """The idempotency key a `tools/call` carries in its `_meta`, None when it carries none.
    Raises `InvalidIdempotencyKey` unless the value is a string of 1-200 printable characters
    (an explicit null counts as a wrong value: a client that sends the key means to use one)."""
    if not isinstance(meta, Mapping) or META_IDEMPOTENCY_KEY not in meta:
        return None
    value = meta[META_IDEMPOTENCY_KEY]
    if not isinstance(value, str):
        raise InvalidIdempotencyKey(f"must be a string, got {_json_type(value)}")
    problem = idempotency_key_problem(value)
    if problem is not None:
        raise InvalidIdempotencyKey(problem)
    return value


def _invalid_meta(tool: str, request_id: str, field_name: str, problem: str) -> Outcome:
    """A boundary check failed: the same invalid-input shape the pipeline gives bad arguments."""
    return Outcome(
        tool=tool,
        status="invalid-input",
        request_id=request_id,
        reason="invalid-input",
        error=OutcomeError(
            reason="invalid-input",
            message=f"{field_name} {problem}",
            fields=[FieldError(field=field_name, message=problem)],
        ),
    )


def _plain_error(text: str, reason: str, request_id: str) -> types.CallToolResult:
    return types.CallToolResult(
        content=[types.TextContent(text=text)],
        is_error=True,
        meta={META_REQUEST_ID: request_id, META_ERROR: {"status": "error", "reason": reason}},
    )


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
    transport; `callers` says who is calling on each request."""

    def __init__(self, pipeline: Pipeline, callers: CallerSource, *, name: str = SERVER_NAME):
        self.pipeline = pipeline
        self.callers = callers
        self.catalog = ToolCatalog(pipeline)
        self.views = ViewHandlers(pipeline, callers)
        self.server = _ManaServer(
            name,
            version=_server_version(),
            title="Mana",
            instructions=INSTRUCTIONS,
            on_list_tools=self._list_tools,
            on_call_tool=self._call_tool,
            on_list_resources=self.views.list_resources,
            on_list_resource_templates=self.views.list_resource_templates,
            on_read_resource=self.views.read_resource,
            on_list_prompts=self.views.list_prompts,
            on_get_prompt=self.views.get_prompt,
            on_completion=self.views.complete,
            get_tool_input_schema=self.catalog.input_schema,
        )

    # -- handlers ----------------------------------------------------------------------------

    async def _list_tools(
        self, ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        try:
            caller = await self.callers.resolve(ctx)
        except CallerError as exc:
            raise _protocol_error(exc.message) from None
        except Exception:
            log.exception("tools/list: resolving the caller failed")
            raise _protocol_error("internal error while resolving the caller") from None
        if caller.access is None:  # a caller source must resolve the space for listing
            raise _protocol_error("the space of this request could not be resolved")
        space_type = caller.access.space.type
        if caller.watch is not None:
            try:
                await self._remember(caller.watch, space_type)
            except Exception:
                log.exception("tools/list: saving the session's tool view failed")
                raise _protocol_error("the session could not be updated; retry") from None
        return types.ListToolsResult(
            tools=self.catalog.tools(space_type, caller.invoker, caller.scopes)
        )

    async def _call_tool(
        self, ctx: ServerRequestContext[Any, Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        request_id = new_request_id()
        name = params.name
        try:
            caller = await self.callers.resolve(ctx, need_access=False)
        except CallerError as exc:
            return _plain_error(_sentence(exc.message), exc.reason, request_id)
        except Exception:
            log.exception("tools/call: resolving the caller failed", request_id=request_id)
            return _plain_error(
                f"{name} failed unexpectedly (request id {request_id})", "error", request_id
            )
        try:
            key = idempotency_key_of(params.meta)
        except InvalidIdempotencyKey as exc:
            field_name = f"_meta.{META_IDEMPOTENCY_KEY}"
            return outcome_result(_invalid_meta(name, request_id, field_name, str(exc)))
        try:
            if caller.watch is not None and caller.space_type is not None:
                await self._notify_if_changed(caller.watch, ctx, caller.space_type)
            outcome = await self.pipeline.invoke(
                name,
                params.arguments or {},
                CallContext(
                    user_id=caller.user_id,
                    space=caller.space,
                    invoker=caller.invoker,
                    request_id=request_id,
                    idempotency_key=key,
                    session_id=caller.session_id,
                    scopes=caller.scopes,
                ),
                resolved=caller.access,  # the HTTP guard resolved this request's space already
            )
            return outcome_result(outcome)
        except Exception:
            log.exception("tools/call failed", request_id=request_id, tool=name)
            return _plain_error(
                f"{name} failed unexpectedly; quote request id {request_id} when reporting it",
                "handler-error",
                request_id,
            )

    # -- list_changed ------------------------------------------------------------------------

    async def _remember(self, watch: ToolSetWatch, space_type: str) -> None:
        names = self.catalog.names(space_type)
        changed = (names, space_type) != (watch.seen, watch.space_type)
        watch.seen = names
        watch.space_type = space_type
        if changed and watch.persist is not None:
            await watch.persist(names, space_type)

    async def _notify_if_changed(
        self, watch: ToolSetWatch, ctx: ServerRequestContext[Any, Any], space_type: str
    ) -> None:
        before = watch.seen
        await self._remember(watch, space_type)
        if before is not None and before != watch.seen:
            # Rides this request's own response stream, so the client sees it before the result.
            await ctx.session.send_notification(
                types.ToolListChangedNotification(), related_request_id=ctx.request_id
            )


def _protocol_error(message: str, code: int = types.INVALID_REQUEST) -> Exception:
    from mcp.shared.exceptions import MCPError

    return MCPError(code=code, message=message)


# -- resources, prompts, completions -----------------------------------------------------------

# "Resource not found" of the handshake era; 2026-07-28 retired the code for INVALID_PARAMS.
LEGACY_RESOURCE_NOT_FOUND = -32002


def _resource_of(entry: ResourceEntry) -> types.Resource:
    return types.Resource(
        uri=entry.uri,
        name=entry.name,
        title=entry.title,
        mime_type=entry.mime_type,
        description=entry.description,
    )


def _template_of(spec: ResourceSpec) -> types.ResourceTemplate:
    return types.ResourceTemplate(
        uri_template=spec.uri_template,
        name=spec.name,
        title=spec.title,
        description=spec.description,
        mime_type=spec.mime_type,
    )


def _contents_of(body: ResourceBody) -> types.TextResourceContents | types.BlobResourceContents:
    if body.blob is not None:
        return types.BlobResourceContents(
            uri=body.uri, mime_type=body.mime_type, blob=base64.b64encode(body.blob).decode()
        )
    return types.TextResourceContents(uri=body.uri, mime_type=body.mime_type, text=body.text or "")


def _prompt_of(spec: PromptSpec) -> types.Prompt:
    return types.Prompt(
        name=spec.name,
        title=spec.title,
        description=spec.description,
        arguments=[
            types.PromptArgument(name=a.name, description=a.description, required=a.required)
            for a in spec.arguments
        ],
    )


class ViewHandlers:
    """`resources/*`, `prompts/*` and `completion/complete`. Lists follow the caller's space
    type (a resource or prompt of a module the type does not allow is not shown) and access
    scopes (nothing without `mana:read`); every read, prompt and completion runs through
    `Pipeline.view` (scopes, membership, module allowlist, audit), in the request's space only."""

    def __init__(self, pipeline: Pipeline, callers: CallerSource) -> None:
        self.pipeline = pipeline
        self.callers = callers

    async def _caller(self, ctx: ServerRequestContext[Any, Any]) -> Caller:
        try:
            caller = await self.callers.resolve(ctx)
        except CallerError as exc:
            raise _protocol_error(exc.message) from None
        except Exception:
            log.exception("resolving the caller failed", method=ctx.method)
            raise _protocol_error("internal error while resolving the caller") from None
        if caller.access is None:
            raise _protocol_error("the space of this request could not be resolved")
        return caller

    def _allowed(self, caller: Caller, module: str) -> bool:
        access = caller.access
        readable = caller.scopes is None or READ_SCOPE in caller.scopes
        return (
            readable
            and access is not None
            and self.pipeline.space_types.allows(access.space.type, module)
        )

    async def _view(
        self,
        ctx: ServerRequestContext[Any, Any],
        caller: Caller,
        name: str,
        module: str | None,
        args: Mapping[str, Any],
        work: Callable[[ViewContext], Awaitable[Any]],
    ) -> Any:
        call = CallContext(
            user_id=caller.user_id,
            space=caller.space,
            invoker=caller.invoker,
            request_id=new_request_id(),
            session_id=caller.session_id,
            scopes=caller.scopes,
        )
        try:
            return await self.pipeline.view(name, module, args, call, work, resolved=caller.access)
        except ViewError as exc:
            if exc.reason == "not-found" and name.startswith("resource:"):
                code = LEGACY_RESOURCE_NOT_FOUND if is_handshake_era(ctx) else types.INVALID_PARAMS
            elif exc.status == "invalid-input":
                code = types.INVALID_PARAMS
            elif exc.status == "denied":
                code = types.INVALID_REQUEST
            else:
                code = types.INTERNAL_ERROR
            raise _protocol_error(_sentence(exc.message), code) from None

    async def list_resources(
        self, ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams | None
    ) -> types.ListResourcesResult:
        caller = await self._caller(ctx)
        specs = [s for s in self.pipeline.registry.resources() if s.enumerate is not None]
        specs = [s for s in specs if self._allowed(caller, s.module)]

        async def enumerate_all(view: ViewContext) -> list[ResourceEntry]:
            entries: list[ResourceEntry] = []
            for spec in specs:
                if spec.enumerate is not None and view.allows(spec.module):
                    entries += await spec.enumerate(view)
            return entries

        if not specs:
            return types.ListResourcesResult(resources=[])
        entries = await self._view(ctx, caller, "resources/list", None, {}, enumerate_all)
        return types.ListResourcesResult(resources=[_resource_of(e) for e in entries])

    async def list_resource_templates(
        self, ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams | None
    ) -> types.ListResourceTemplatesResult:
        caller = await self._caller(ctx)
        return types.ListResourceTemplatesResult(
            resource_templates=[
                _template_of(s)
                for s in self.pipeline.registry.resources()
                if s.is_template and self._allowed(caller, s.module)
            ]
        )

    async def read_resource(
        self, ctx: ServerRequestContext[Any, Any], params: types.ReadResourceRequestParams
    ) -> types.ReadResourceResult:
        uri = str(params.uri)
        found = self.pipeline.registry.resource_for(uri)
        if found is None:
            code = LEGACY_RESOURCE_NOT_FOUND if is_handshake_era(ctx) else types.INVALID_PARAMS
            raise _protocol_error(f"Resource not found: {uri}", code)
        spec, values = found
        caller = await self._caller(ctx)

        async def read(view: ViewContext) -> list[ResourceBody]:
            return await spec.read(values, view)

        bodies = await self._view(
            ctx, caller, f"resource:{spec.name}", spec.module, {"uri": uri}, read
        )
        return types.ReadResourceResult(contents=[_contents_of(b) for b in bodies])

    async def list_prompts(
        self, ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams | None
    ) -> types.ListPromptsResult:
        caller = await self._caller(ctx)
        return types.ListPromptsResult(
            prompts=[
                _prompt_of(s)
                for s in self.pipeline.registry.prompts()
                if self._allowed(caller, s.module)
            ]
        )

    async def get_prompt(
        self, ctx: ServerRequestContext[Any, Any], params: types.GetPromptRequestParams
    ) -> types.GetPromptResult:
        spec = self.pipeline.registry.prompt(params.name)
        if spec is None:
            raise _protocol_error(f"Unknown prompt {params.name!r}", types.INVALID_PARAMS)
        caller = await self._caller(ctx)
        args = dict(params.arguments or {})

        async def render(view: ViewContext) -> types.GetPromptResult:
            messages = await spec.render(spec.checked_arguments(args), view)
            return types.GetPromptResult(
                description=spec.description,
                messages=[
                    types.PromptMessage(role=m.role, content=types.TextContent(text=m.text))
                    for m in messages
                ],
            )

        result: types.GetPromptResult = await self._view(
            ctx, caller, f"prompt:{spec.name}", spec.module, args, render
        )
        return result

    async def complete(
        self, ctx: ServerRequestContext[Any, Any], params: types.CompleteRequestParams
    ) -> types.CompleteResult:
        ref = params.ref
        argument = params.argument
        completer: Completer | None
        if isinstance(ref, types.PromptReference):
            prompt = self.pipeline.registry.prompt(ref.name)
            if prompt is None:
                raise _protocol_error(f"Unknown prompt {ref.name!r}", types.INVALID_PARAMS)
            arg = prompt.argument(argument.name)
            completer = arg.complete if arg is not None else None
            name, module = f"complete:prompt:{prompt.name}", prompt.module
        else:
            resource = next(
                (
                    r
                    for r in self.pipeline.registry.resources()
                    if r.uri_template == ref.uri or r.match(ref.uri) is not None
                ),
                None,
            )
            if resource is None:
                raise _protocol_error(
                    f"Unknown resource template {ref.uri!r}", types.INVALID_PARAMS
                )
            completer = resource.complete.get(argument.name)
            name, module = f"complete:resource:{resource.name}", resource.module
        caller = await self._caller(ctx)
        found: Completer | None = completer

        async def run(view: ViewContext) -> list[str]:
            return [] if found is None else await found(argument.value, view)

        values: list[str] = await self._view(
            ctx, caller, name, module, {"argument": argument.name, "value": argument.value}, run
        )
        values = values[:MAX_COMPLETIONS]
        return types.CompleteResult(
            completion=types.Completion(values=values, total=len(values), has_more=False)
        )


# -- stdio -------------------------------------------------------------------------------------


class StdinLines:
    """The client's side of stdio as an async iterator of lines. A daemon thread reads a private
    duplicate of fd 0 with `os.read` (fd 0 itself points at the null device meanwhile, so a
    child process cannot steal protocol bytes), so `stop()` ends the iteration at once even
    while the client keeps stdin open (SIGTERM), and the blocked read never holds up exit."""

    def __init__(self, fd: int = 0, *, max_queued: int = 64) -> None:
        self._fd = fd
        self._queue: asyncio.Queue[str | None] = asyncio.Queue()
        self._room = threading.Semaphore(max_queued)  # backpressure on a client that floods
        self._stopped = False
        self._private: int | None = None

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._private = os.dup(self._fd)
        null = os.open(os.devnull, os.O_RDONLY)
        try:
            os.dup2(null, self._fd)
        finally:
            os.close(null)
        threading.Thread(
            target=self._read, args=(loop, self._private), name="mana-stdin", daemon=True
        ).start()

    def restore(self) -> None:
        """Point fd 0 back at the client's stream (the reader thread keeps its own copy)."""
        if self._private is not None:
            os.dup2(self._private, self._fd)

    def stop(self) -> None:
        """Read no further line (SIGTERM): the iteration ends as if stdin had ended."""
        self._stopped = True
        self._queue.put_nowait(None)

    def _read(self, loop: asyncio.AbstractEventLoop, fd: int) -> None:
        def hand_over(line: str | None) -> None:
            self._room.acquire()
            loop.call_soon_threadsafe(self._queue.put_nowait, line)

        pending = b""
        try:
            while True:
                chunk = os.read(fd, 65536)
                if not chunk:
                    break
                *lines, pending = (pending + chunk).split(b"\n")
                for line in lines:
                    hand_over(line.decode("utf-8", "replace") + "\n")
            if pending:
                hand_over(pending.decode("utf-8", "replace"))
            hand_over(None)
        except (OSError, RuntimeError):
            # stdin failed, or the event loop is gone (serving ended): nobody reads any more
            return

    def __aiter__(self) -> StdinLines:
        return self

    async def __anext__(self) -> str:
        line = None if self._stopped else await self._queue.get()
        if line is not None:
            self._room.release()
        if line is None or self._stopped:
            raise StopAsyncIteration
        return line


RequestKey = str | int


class InboundStream(Protocol):
    """What the stdio transport hands the server to read (the SDK's read stream)."""

    def __aiter__(self) -> AsyncIterator[SessionMessage | Exception]: ...


class OutboundStream(Protocol):
    """What the stdio transport hands the server to write to (the SDK's write stream)."""

    async def send(self, item: SessionMessage, /) -> None: ...

    async def aclose(self) -> None: ...


class DrainingStreams:
    """Sits between the stdio transport and the server. Tracks the requests the client sent
    that are not answered yet; when the client's stream ends (stdin EOF, or `StdinLines.stop`
    on SIGTERM) it holds the end back from the server until every one of them was answered or
    `grace_seconds` passed, so calls in flight finish and their responses reach stdout while it
    is still open. Only then does the server see the end (and cancel what still runs)."""

    def __init__(
        self,
        outer_read: InboundStream,
        outer_write: OutboundStream,
        grace_seconds: float,
    ) -> None:
        self._outer_read = outer_read
        self._outer_write = outer_write
        self._grace = grace_seconds
        self._in_send, self.read = anyio.create_memory_object_stream[SessionMessage | Exception]()
        self.write, self._out_recv = anyio.create_memory_object_stream[SessionMessage]()
        self._unanswered: set[RequestKey] = set()
        self._answered_all: anyio.Event | None = None

    async def pump_in(self) -> None:
        async with self._in_send:
            async for item in self._outer_read:
                if isinstance(item, SessionMessage):
                    self._note_inbound(item.message)
                try:
                    await self._in_send.send(item)
                except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                    return  # the server stopped reading
            if self._unanswered:
                log.info(
                    "stdin ended; waiting for calls in flight",
                    in_flight=len(self._unanswered),
                    grace_s=self._grace,
                )
                self._answered_all = anyio.Event()
                with anyio.move_on_after(self._grace):
                    await self._answered_all.wait()
                if self._unanswered:
                    log.warning(
                        "stopping calls still running at the shutdown deadline",
                        count=len(self._unanswered),
                    )

    async def pump_out(self) -> None:
        try:
            async with self._out_recv:
                async for item in self._out_recv:
                    await self._outer_write.send(item)
                    message = item.message
                    if isinstance(message, types.JSONRPCResponse | types.JSONRPCError):
                        self._settled(message.id)
        finally:
            await self._outer_write.aclose()

    def _note_inbound(self, message: types.JSONRPCMessage) -> None:
        if isinstance(message, types.JSONRPCRequest):
            self._unanswered.add(message.id)
        elif (
            isinstance(message, types.JSONRPCNotification)
            and message.method == "notifications/cancelled"
            and isinstance(message.params, Mapping)
        ):
            # A cancelled request is never answered: do not wait for it.
            request_id = message.params.get("requestId")
            if isinstance(request_id, str | int):
                self._settled(request_id)

    def _settled(self, request_id: RequestKey | None) -> None:
        if request_id is not None:
            self._unanswered.discard(request_id)
        if not self._unanswered and self._answered_all is not None:
            self._answered_all.set()


async def serve_stdio(
    adapter: McpAdapter,
    *,
    grace_seconds: float = 10.0,
    stdin: StdinLines | None = None,
) -> None:
    """Serve one client over stdin/stdout until stdin ends or `stdin.stop()` (SIGTERM); then
    the calls in flight finish (bounded by `grace_seconds`) and are answered before stdout is
    released. Nothing but protocol goes to stdout: the transport diverts fd 1 to stderr while it
    runs, and logs go to stderr."""
    from mcp.server.stdio import stdio_server

    lines = stdin or StdinLines()
    lines.start()
    try:
        async with stdio_server(stdin=cast(Any, lines)) as (read, write):
            streams = DrainingStreams(read, write, grace_seconds)
            async with anyio.create_task_group() as tg:
                tg.start_soon(streams.pump_in)
                tg.start_soon(streams.pump_out)
                await adapter.server.run(
                    streams.read, streams.write, adapter.server.create_initialization_options()
                )
    finally:
        lines.restore()


def stdio_adapter(pipeline: Pipeline, *, user_id: str, space: str | None) -> McpAdapter:
    return McpAdapter(pipeline, FixedCaller(pipeline.accounts, user_id, space))


__all__ = [
    "CALLER_SCOPE_KEY",
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
    "ToolSetWatch",
    "ViewHandlers",
    "error_text",
    "idempotency_key_of",
    "outcome_result",
    "serve_stdio",
    "stdio_adapter",
]
