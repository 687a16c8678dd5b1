"""`resources/*`, `prompts/*` and `completion/complete` from the registry's `ResourceSpec` and
`PromptSpec` declarations, each read through `Pipeline.view`."""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import mcp_types as types
import structlog
from mcp.server import ServerRequestContext
from mcp.shared.exceptions import MCPError

from mcp_adapter.callers import Caller, CallerError, CallerSource, is_handshake_era
from mcp_adapter.channel import McpChannel
from mcp_adapter.input_rounds import CallBinding, InputRounds
from mcp_adapter.results import (
    attachment_block,
    missing_capability_error,
    protocol_error,
    sentence,
)
from tool_registry.access_scopes import READ_SCOPE
from tool_registry.client_channel import NO_CHANNEL, ClientChannel, InputRequired
from tool_registry.context import (
    CallContext,
)
from tool_registry.ids import new_request_id
from tool_registry.pipeline import CLIENT_CANNOT_ASK, Pipeline, input_hash
from tool_registry.prompts import PromptMessage, PromptSpec
from tool_registry.resources import ResourceBody, ResourceEntry, ResourceSpec
from tool_registry.views import MAX_COMPLETIONS, Completer, ViewContext, ViewError

log = structlog.get_logger("mana.mcp")


# "Resource not found" of the handshake era; 2026-07-28 retired the code for INVALID_PARAMS.
LEGACY_RESOURCE_NOT_FOUND = -32002


def resource_not_found(ctx: ServerRequestContext[Any, Any], uri: str, message: str) -> MCPError:
    """The protocol error for a URI that names no resource of the request's space: the era's
    code, and the URI in `data.uri` (SEP-2164) so a client can tell which one it was."""
    code = LEGACY_RESOURCE_NOT_FOUND if is_handshake_era(ctx) else types.INVALID_PARAMS
    return MCPError(code=code, message=message, data={"uri": uri})


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


def _message_of(message: PromptMessage) -> types.PromptMessage:
    if message.attachment is not None:
        return types.PromptMessage(role=message.role, content=attachment_block(message.attachment))
    return types.PromptMessage(
        role=message.role, content=types.TextContent(text=message.text or "")
    )


def _prompt_of(spec: PromptSpec) -> types.Prompt:
    return types.Prompt(
        name=spec.mcp_name,
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

    def __init__(
        self, pipeline: Pipeline, callers: CallerSource, *, rounds: InputRounds | None = None
    ) -> None:
        self.pipeline = pipeline
        self.callers = callers
        # A prompt may ask the client (its renderer reaches `view.tool.channel`), in rounds on
        # 2026-07-28 like a tool call (`mcp_adapter.input_rounds`).
        self.rounds = rounds if rounds is not None else InputRounds(pipeline.db)

    async def _caller(self, ctx: ServerRequestContext[Any, Any]) -> Caller:
        try:
            caller = await self.callers.resolve(ctx)
        except CallerError as exc:
            raise protocol_error(exc.message) from None
        except Exception:
            log.exception("resolving the caller failed", method=ctx.method)
            raise protocol_error("internal error while resolving the caller") from None
        if caller.access is None:
            raise protocol_error("the space of this request could not be resolved")
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
        channel: ClientChannel = NO_CHANNEL,
    ) -> Any:
        call = CallContext(
            user_id=caller.user_id,
            space=caller.space,
            invoker=caller.invoker,
            request_id=new_request_id(),
            session_id=caller.session_id,
            scopes=caller.scopes,
            channel=channel,
        )
        try:
            return await self.pipeline.view(name, module, args, call, work, resolved=caller.access)
        except ViewError as exc:
            if exc.reason == "not-found" and name.startswith("resource:"):
                raise resource_not_found(ctx, str(args["uri"]), sentence(exc.message)) from None
            if exc.required_capabilities is not None and not is_handshake_era(ctx):
                raise missing_capability_error(
                    sentence(exc.message), exc.required_capabilities
                ) from None
            if exc.status == "invalid-input":
                code = types.INVALID_PARAMS
            elif exc.status == "denied" or exc.reason == CLIENT_CANNOT_ASK:
                code = types.INVALID_REQUEST
            else:
                code = types.INTERNAL_ERROR
            raise protocol_error(sentence(exc.message), code) from None

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
        # One order on every call and replica, whatever order the records came in: by URI.
        entries.sort(key=lambda e: e.uri)
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
            raise resource_not_found(ctx, uri, f"Resource not found: {uri}")
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
    ) -> types.GetPromptResult | types.InputRequiredResult:
        """A rendered prompt; a renderer that asks the client (elicitation, sampling) asks
        directly on 2025-11-25 and ends the round with an input-required result on 2026-07-28,
        whose retry brings the answer, exactly like a tool call."""
        spec = self.pipeline.registry.prompt(params.name)
        if spec is None:
            raise protocol_error(f"Unknown prompt {params.name!r}", types.INVALID_PARAMS)
        caller = await self._caller(ctx)
        args = dict(params.arguments or {})
        binding = CallBinding(
            user_id=caller.user_id,
            space=caller.space or "",
            tool=f"prompt:{spec.name}",
            args_hash=input_hash(args),
        )
        channel = McpChannel(ctx, log_level=caller.log_level)
        if not channel.handshake_era:
            channel.rounds = await self.rounds.open(
                binding, params.request_state, params.input_responses
            )

        async def render(view: ViewContext) -> types.GetPromptResult:
            messages = await spec.render(spec.checked_arguments(args), view)
            return types.GetPromptResult(
                description=spec.description,
                messages=[_message_of(m) for m in messages],
            )

        try:
            result: types.GetPromptResult = await self._view(
                ctx, caller, f"prompt:{spec.name}", spec.module, args, render, channel
            )
        except InputRequired as pending:
            if channel.handshake_era:  # the channel asks directly in this era
                log.error("input required on a handshake-era prompt", prompt=spec.name)
                raise protocol_error(
                    f"prompt {spec.mcp_name} asked for input in a way this connection cannot carry",
                    types.INTERNAL_ERROR,
                ) from None
            try:
                state = await self.rounds.seal(binding, channel.rounds)
            except Exception:
                log.exception("sealing the request state failed", prompt=spec.name)
                raise protocol_error(
                    f"prompt {spec.mcp_name} could not ask for input", types.INTERNAL_ERROR
                ) from None
            return types.InputRequiredResult(input_requests=pending.requests, request_state=state)
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
                raise protocol_error(f"Unknown prompt {ref.name!r}", types.INVALID_PARAMS)
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
                raise protocol_error(f"Unknown resource template {ref.uri!r}", types.INVALID_PARAMS)
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
