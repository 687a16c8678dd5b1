"""Tool sources: where the loop's tools come from and how a call is carried out.

The loop never touches the registry directly. It takes a `ToolSource`:

- `RegistryTools`: our registry through the one invocation pipeline, for one call context
  (user, space, invoker). The model sees only tools visible in the space's type and not denied by
  the agent policy; the dispatcher re-checks both, so a name the model was not shown never runs.
  Missions pass an `AgentToolPolicy`, an `on_propose` hook and an idempotency prefix.
- `McpTools`: any MCP server through an open `mcp` client (`tools/list`, `tools/call`);
  read-only means the tool's `readOnlyHint`. Like `RegistryTools` it takes an idempotency
  prefix (or a subclass overrides `idempotency_key`); the key travels in the request `_meta` as
  `mana/idempotencyKey`, which our server honours and other servers ignore.
- `FunctionTools`: plain async functions (benchmarks, tests, offline demos).
- `RestrictedTools`: a view of another source limited to some names (sub-agents); the limit is
  enforced on calls, not only on what is listed.
- `OfferedTools`: a view of another source under the invoker rule of `policy.agent_policy`
  (missions and persona ticks never get the missions and proposals modules); the one wrapper
  both runners use, whatever the source (our pipeline, which enforces the rule too, or an MCP
  server, which may not).

Every call ends in a `CallOutcome` (never an exception for an expected failure): the text the
model sees, the structured data, and the status/reason/reminder the loop needs.
"""

from __future__ import annotations

import collections
import dataclasses
import json
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, cast

import mcp_types
import structlog
from mcp.shared.exceptions import MCPError

from agent_loop.llm import ToolCall, ToolDef
from agent_loop.taint import TaintSource, refusal_text
from policy.agent_policy import AgentToolPolicy, not_offered_text
from tool_registry.context import CallContext
from tool_registry.ids import new_request_id
from tool_registry.pipeline import Outcome, Pipeline
from tool_registry.registry import AnySpec

log = structlog.get_logger("mana.agent.tools")

Hint = Literal["read", "write", "destructive"]
Mode = Literal["auto", "propose"]
CallStatus = Literal["ok", "invalid-input", "denied", "error", "proposed"]


@dataclass(frozen=True, slots=True)
class ToolInfo:
    """A tool as the loop knows it: what the model is shown plus how to treat a call.

    `hint` drives parallelism and taint downgrades (`read` may run concurrently and stays allowed
    in a tainted run); `mode` is the agent policy's verdict (`propose` calls are staged, not run).
    """

    name: str
    description: str
    input_schema: Mapping[str, Any]
    hint: Hint = "read"
    mode: Mode = "auto"

    @property
    def read_only(self) -> bool:
        return self.hint == "read"

    def definition(self) -> ToolDef:
        return ToolDef(self.name, self.description, self.input_schema)


@dataclass(frozen=True, slots=True)
class CallOutcome:
    """The result of one tool call as the loop records it.

    `content` is the text the model gets as the tool result; `data` the structured result (a tool's
    output model as JSON) when there is one. `reason` is a stable machine string for failures;
    `reminder` and `flagged` carry the gate's feedback for the next round. `proposed` means the
    call did not run but was stored for approval (not an error for the model).
    """

    status: CallStatus
    content: str
    data: Any = None
    reason: str | None = None
    message: str | None = None
    reminder: str | None = None
    flagged: bool = False
    request_id: str | None = None
    replayed: bool = False

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def is_error(self) -> bool:
        return self.status not in ("ok", "proposed")

    @classmethod
    def success(cls, data: Any, *, request_id: str | None = None) -> CallOutcome:
        return cls(
            "ok", data if isinstance(data, str) else dump_json(data), data, request_id=request_id
        )

    @classmethod
    def failure(
        cls,
        status: CallStatus,
        reason: str,
        message: str,
        *,
        reminder: str | None = None,
        request_id: str | None = None,
    ) -> CallOutcome:
        body: dict[str, Any] = {"status": status, "error": {"reason": reason, "message": message}}
        if reminder:
            body["reminder"] = reminder
        return cls(
            status,
            dump_json(body),
            reason=reason,
            message=message,
            reminder=reminder,
            request_id=request_id,
        )

    def with_content(self, content: str) -> CallOutcome:
        return dataclasses.replace(self, content=content)

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"status": self.status, "is_error": self.is_error}
        for key in ("reason", "message", "reminder", "request_id"):
            value = getattr(self, key)
            if value is not None:
                body[key] = value
        if self.flagged:
            body["flagged"] = True
        if self.replayed:
            body["replayed"] = True
        body["data"] = self.data
        body["content"] = self.content
        return body


@dataclass(frozen=True, slots=True)
class ProposalRequest:
    """A call that must not run now but may be approved later.

    `reason` is `policy` (the agent policy says `propose`) or `tainted` (a write after a flagged
    result, see `agent_loop.taint`). `rationale` is the model's own text from the turn that asked
    for the call. `idempotency_key` is the key the call would have run with, so a restarted run
    can recognise a proposal it already stored.
    """

    call: ToolCall
    tool: ToolInfo
    rationale: str
    reason: Literal["policy", "tainted"]
    round: int
    taint: tuple[TaintSource, ...] = ()
    idempotency_key: str | None = None


ProposeHook = Callable[[ProposalRequest], Awaitable[str]]
"""Stores a proposal and returns the text the model gets (e.g. "proposal p_1 awaits approval")."""


class ToolSource(Protocol):
    """What `run_loop` needs from a set of tools."""

    @property
    def can_propose(self) -> bool:
        """True when calls can be staged as proposals (a mission); False in interactive runs."""
        ...

    async def list_tools(self) -> Sequence[ToolInfo]:
        """The tools to offer the model, in a stable order."""
        ...

    async def call(self, call: ToolCall) -> CallOutcome:
        """Run one call. Expected failures come back as outcomes, never as exceptions."""
        ...

    async def propose(self, request: ProposalRequest) -> CallOutcome:
        """Stage a call for approval; a source that cannot answers a `denied` outcome."""
        ...


def dump_json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


def not_offered(name: str, why: str = "it is not offered in this run") -> CallOutcome:
    return CallOutcome.failure("denied", "not-offered", f"tool {name!r} cannot be called: {why}")


def cannot_propose(request: ProposalRequest) -> CallOutcome:
    if request.reason == "tainted":
        return CallOutcome.failure(
            "denied", "tainted-run", refusal_text(request.call.name, list(request.taint))
        )
    return CallOutcome.failure(
        "denied",
        "approval-required",
        f"{request.call.name} needs a human's approval and this run cannot stage proposals; "
        "ask the user to make this change themselves.",
    )


# -- registry ---------------------------------------------------------------------------------------


def hint_of(spec: AnySpec) -> Hint:
    return spec.policy_hint


class ContentKeys:
    """Idempotency keys from what a call does, not from the model's call id (a real model's ids
    are random on every run): `{prefix}:{digest(call)}:{n}`, where `n` counts calls with the
    same digest so far. A re-run making the same calls gets the same keys (its writes replay),
    while two identical writes within one run stay two writes. A call id keeps its key."""

    def __init__(self, prefix: str, digest: Callable[[ToolCall], str]) -> None:
        self.prefix = prefix
        self.digest = digest
        self._keys: dict[str, str] = {}
        self._seen: collections.Counter[str] = collections.Counter()

    def key(self, call: ToolCall) -> str:
        key = self._keys.get(call.id)
        if key is None:
            digest = self.digest(call)
            self._seen[digest] += 1
            key = f"{self.prefix}:{digest}:{self._seen[digest]}"
            self._keys[call.id] = key
        return key


class RegistryTools:
    """Registry tools for one call context, through `Pipeline.invoke`.

    - `call`: who and where (user, space, invoker); each tool call gets a fresh request id.
    - `policy`: the agent's tool policy; `deny` tools are neither listed nor callable, `propose`
      tools go to `on_propose`. None means every visible tool is `auto` (interactive runs).
    - `on_propose`: stores a proposal; without it a `propose` call is refused.
    - `idempotency_prefix`: when set, every call carries the key `{prefix}:{call id}`, so a
      mission re-run after a crash replays a write instead of repeating it.
    - `only`: restrict to these names (e.g. a persona's module mix).
    """

    def __init__(
        self,
        pipeline: Pipeline,
        call: CallContext,
        *,
        policy: AgentToolPolicy | None = None,
        on_propose: ProposeHook | None = None,
        idempotency_prefix: str | None = None,
        only: Collection[str] | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.context = call
        self.policy = policy
        self.on_propose = on_propose
        self.idempotency_prefix = idempotency_prefix
        self.only = None if only is None else frozenset(only)
        self._offered: dict[str, ToolInfo] | None = None
        self._space_type: str | None = None

    @property
    def can_propose(self) -> bool:
        return self.on_propose is not None

    def idempotency_key(self, call: ToolCall) -> str | None:
        return f"{self.idempotency_prefix}:{call.id}" if self.idempotency_prefix else None

    async def list_tools(self) -> Sequence[ToolInfo]:
        return list((await self._tools()).values())

    async def _tools(self) -> dict[str, ToolInfo]:
        if self._offered is None:
            access = await self.pipeline.resolve(self.context)
            self._space_type = access.space.type
            offered: dict[str, ToolInfo] = {}
            for spec in self.pipeline.visible_tools(access.space.type, self.context.invoker):
                if self.only is not None and spec.name not in self.only:
                    continue
                mode = "auto" if self.policy is None else self.policy.resolve(spec)
                if mode == "deny":
                    continue
                offered[spec.name] = ToolInfo(
                    spec.name, spec.description, spec.input_schema(), hint_of(spec), mode
                )
            self._offered = offered
        return self._offered

    async def call(self, call: ToolCall) -> CallOutcome:
        info = (await self._tools()).get(call.name)
        if info is None:
            spec = self.pipeline.registry.get(call.name)
            if spec is None:
                return CallOutcome.failure(
                    "invalid-input", "unknown-tool", f"unknown tool {call.name!r}"
                )
            return not_offered(call.name, self._why_not(spec))
        if info.mode == "propose":
            return await self.propose(
                ProposalRequest(call, info, rationale="", reason="policy", round=0)
            )
        context = dataclasses.replace(
            self.context,
            request_id=new_request_id(),
            idempotency_key=self.idempotency_key(call),
        )
        outcome = await self.pipeline.invoke(call.name, dict(call.arguments), context)
        return from_pipeline(outcome)

    def _why_not(self, spec: AnySpec) -> str:
        """Why a registered tool is not offered, in words for the model."""
        space_type = self._space_type or "this"
        if not spec.exposable:
            return "it is not available to agents"
        if not self.pipeline.space_types.allows(space_type, spec.module):
            return f"module {spec.module!r} is not available in {space_type} spaces"
        if not self.pipeline.available(spec, space_type):
            return "a backend it needs is not configured"
        if self.policy is not None and self.policy.resolve(spec) == "deny":
            return "the agent's tool policy does not allow it"
        return "it is not offered in this run"

    async def propose(self, request: ProposalRequest) -> CallOutcome:
        if self.on_propose is None:
            return cannot_propose(request)
        if request.idempotency_key is None and self.idempotency_prefix:
            request = dataclasses.replace(
                request, idempotency_key=self.idempotency_key(request.call)
            )
        text = await self.on_propose(request)
        return CallOutcome("proposed", text, reason=f"proposed-{request.reason}")


def from_pipeline(outcome: Outcome) -> CallOutcome:
    """Pipeline outcome -> loop outcome. The model gets the result JSON on success, and on
    failure the status, reason, message (and per-field errors, and the gate's reminder)."""
    if outcome.ok:
        return CallOutcome(
            "ok",
            dump_json(outcome.result),
            outcome.result,
            reason=outcome.reason,
            reminder=outcome.reminder,
            flagged=outcome.flagged,
            request_id=outcome.request_id,
            replayed=outcome.replayed,
        )
    body: dict[str, Any] = {"status": outcome.status}
    if outcome.error is not None:
        body["error"] = outcome.error.model_dump(exclude_defaults=True)
    if outcome.reminder:
        body["reminder"] = outcome.reminder
    return CallOutcome(
        outcome.status,
        dump_json(body),
        reason=outcome.error.reason if outcome.error else outcome.reason,
        message=outcome.error.message if outcome.error else None,
        reminder=outcome.reminder,
        flagged=outcome.flagged,
        request_id=outcome.request_id,
    )


# -- MCP --------------------------------------------------------------------------------------------


class McpClientLike(Protocol):
    """The part of `mcp.Client` the loop uses (an open, initialised session)."""

    async def list_tools(self, *, cursor: str | None = None) -> mcp_types.ListToolsResult: ...

    async def call_tool(
        self,
        name: str,
        arguments: dict[str, Any] | None = None,
        read_timeout_seconds: float | None = None,
        *,
        meta: mcp_types.RequestParamsMeta | None = None,
    ) -> mcp_types.CallToolResult: ...


MAX_LIST_PAGES = 100


def mcp_hint(annotations: mcp_types.ToolAnnotations | None) -> Hint:
    """MCP defaults: not read-only, and destructive unless the server says otherwise."""
    if annotations is None or not annotations.read_only_hint:
        if annotations is not None and annotations.destructive_hint is False:
            return "write"
        return "destructive"
    return "read"


class McpTools:
    """Tools of an MCP server through an open client session. The server does its own policy
    and scoping; the loop adds parallel reads and taint handling on top. Proposals are not
    supported (a persona run has no approver), so tainted writes are refused.

    `idempotency_prefix`: when set, every call carries the key `{prefix}:{call id}` in its
    request `_meta` (`mana/idempotencyKey`), so a re-run replays a write the server already did
    instead of repeating it. A subclass may override `idempotency_key` to derive keys otherwise
    (e.g. from the call's content when the model's call ids are not stable across re-runs).
    """

    def __init__(
        self,
        client: McpClientLike,
        *,
        only: Collection[str] | None = None,
        read_timeout_seconds: float | None = 60.0,
        idempotency_prefix: str | None = None,
    ) -> None:
        self.client = client
        self.only = None if only is None else frozenset(only)
        self.read_timeout_seconds = read_timeout_seconds
        self.idempotency_prefix = idempotency_prefix
        self._offered: dict[str, ToolInfo] | None = None

    @property
    def can_propose(self) -> bool:
        return False

    def idempotency_key(self, call: ToolCall) -> str | None:
        return f"{self.idempotency_prefix}:{call.id}" if self.idempotency_prefix else None

    async def list_tools(self) -> Sequence[ToolInfo]:
        return list((await self._tools()).values())

    async def _tools(self) -> dict[str, ToolInfo]:
        if self._offered is None:
            offered: dict[str, ToolInfo] = {}
            cursor: str | None = None
            for _ in range(MAX_LIST_PAGES):
                page = await self.client.list_tools(cursor=cursor)
                for tool in page.tools:
                    if self.only is not None and tool.name not in self.only:
                        continue
                    offered[tool.name] = ToolInfo(
                        tool.name,
                        tool.description or tool.title or tool.name,
                        tool.input_schema,
                        mcp_hint(tool.annotations),
                    )
                cursor = page.next_cursor
                if not cursor:
                    break
            self._offered = offered
        return self._offered

    async def call(self, call: ToolCall) -> CallOutcome:
        if call.name not in await self._tools():
            # From a client's side a tool the server does not list is simply unknown.
            return CallOutcome.failure(
                "invalid-input", "unknown-tool", f"unknown tool {call.name!r}"
            )
        key = self.idempotency_key(call)
        # an open map on the wire; mypy does not know TypedDict `extra_items` yet
        meta = None if key is None else {MANA_META_IDEMPOTENCY_KEY: key}
        try:
            result = await self.client.call_tool(
                call.name,
                dict(call.arguments),
                read_timeout_seconds=self.read_timeout_seconds,
                meta=cast(mcp_types.RequestParamsMeta | None, meta),
            )
        except MCPError as exc:
            status: CallStatus = (
                "invalid-input" if exc.code == mcp_types.INVALID_PARAMS else "error"
            )
            return CallOutcome.failure(status, f"mcp-error-{exc.code}", exc.message)
        return from_mcp(result)

    async def propose(self, request: ProposalRequest) -> CallOutcome:
        return cannot_propose(request)


MANA_META_ERROR = "mana/error"
MANA_META_REQUEST_ID = "mana/requestId"
MANA_META_REPLAYED = "mana/replayed"
MANA_META_IDEMPOTENCY_KEY = "mana/idempotencyKey"
REMINDER_PREFIX = "Reminder: "


def from_mcp(result: mcp_types.CallToolResult) -> CallOutcome:
    """MCP result -> loop outcome. Any server works (text content, `isError`); for our own server
    the status, reason and reminder come from `_meta["mana/error"]` and the request id from
    `_meta["mana/requestId"]`, so denials and flags look the same as through `RegistryTools`."""
    texts = [c.text for c in result.content if isinstance(c, mcp_types.TextContent)]
    content = "\n".join(texts)
    data = result.structured_content
    if not content and data is not None:
        content = dump_json(data)
    meta = result.meta or {}
    request_id = meta.get(MANA_META_REQUEST_ID)
    request_id = request_id if isinstance(request_id, str) else None
    reminders = [t.removeprefix(REMINDER_PREFIX) for t in texts if t.startswith(REMINDER_PREFIX)]
    if not result.is_error:
        return CallOutcome(
            "ok",
            content,
            data,
            reminder=reminders[0] if reminders else None,
            flagged=bool(reminders),
            request_id=request_id,
            replayed=meta.get(MANA_META_REPLAYED) is True,
        )
    status: CallStatus = "error"
    reason, message, reminder = "tool-error", content, None
    error = meta.get(MANA_META_ERROR)
    if not isinstance(error, dict):
        # Servers that answer failures with a JSON body like the pipeline's public one.
        body = data if isinstance(data, dict) else _maybe_json(content)
        error = body if isinstance(body, dict) else {}
        nested = error.get("error")
        if isinstance(nested, dict):
            error = {**nested, "status": error.get("status"), "reminder": error.get("reminder")}
            message = str(nested.get("message") or message)
    if error.get("status") in ("invalid-input", "denied", "error"):
        status = error["status"]
    reason = str(error.get("reason") or reason)
    if isinstance(error.get("reminder"), str):
        reminder = error["reminder"]
    return CallOutcome(
        status,
        content,
        data,
        reason=reason,
        message=message,
        reminder=reminder,
        request_id=request_id,
    )


def _maybe_json(text: str) -> Any:
    if not text.startswith("{"):
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


# -- functions and restricted views ---------------------------------------------------------------

FunctionHandler = Callable[[dict[str, Any]], Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class FunctionTool:
    """A plain async function as a tool: it gets the arguments dict and returns JSON-able data
    (or a string, passed to the model as is). Raising `ValueError` means invalid input."""

    name: str
    description: str
    handler: FunctionHandler
    input_schema: Mapping[str, Any] = dataclasses.field(
        default_factory=lambda: {"type": "object", "properties": {}}
    )
    hint: Hint = "read"


class FunctionTools:
    def __init__(self, tools: Iterable[FunctionTool]) -> None:
        self._tools = {t.name: t for t in tools}
        self._infos = [
            ToolInfo(t.name, t.description, t.input_schema, t.hint) for t in self._tools.values()
        ]

    @property
    def can_propose(self) -> bool:
        return False

    async def list_tools(self) -> Sequence[ToolInfo]:
        return self._infos

    async def call(self, call: ToolCall) -> CallOutcome:
        tool = self._tools.get(call.name)
        if tool is None:
            return CallOutcome.failure(
                "invalid-input", "unknown-tool", f"unknown tool {call.name!r}"
            )
        try:
            return CallOutcome.success(await tool.handler(dict(call.arguments)))
        except ValueError as exc:
            return CallOutcome.failure("invalid-input", "invalid-input", str(exc))
        except Exception as exc:
            log.exception("function tool failed", tool=call.name)
            return CallOutcome.failure(
                "error", "handler-error", f"{call.name} failed: {type(exc).__name__}"
            )

    async def propose(self, request: ProposalRequest) -> CallOutcome:
        return cannot_propose(request)


class RestrictedTools:
    """`inner` limited to `allowed` names, for listing *and* calling: a sub-agent whose model
    asks for a tool outside its set gets a refusal, whatever it was shown."""

    def __init__(self, inner: ToolSource, allowed: Collection[str], *, label: str) -> None:
        self.inner = inner
        self.allowed = frozenset(allowed)
        self.label = label

    @property
    def can_propose(self) -> bool:
        return self.inner.can_propose

    async def list_tools(self) -> Sequence[ToolInfo]:
        return [t for t in await self.inner.list_tools() if t.name in self.allowed]

    async def call(self, call: ToolCall) -> CallOutcome:
        if call.name not in self.allowed:
            return not_offered(call.name, f"it is not available to {self.label}")
        return await self.inner.call(call)

    async def propose(self, request: ProposalRequest) -> CallOutcome:
        if request.call.name not in self.allowed:
            return not_offered(request.call.name, f"it is not available to {self.label}")
        return await self.inner.propose(request)


class OfferedTools:
    """`inner` under the invoker rule (`policy.agent_policy.offered_to`): tools the invoker may
    never use are not listed, and a call or proposal of one is refused (`not-offered`) without
    reaching `inner`, whatever the model was shown."""

    def __init__(self, inner: ToolSource, invoker: str) -> None:
        self.inner = inner
        self.invoker = invoker

    @property
    def can_propose(self) -> bool:
        return self.inner.can_propose

    async def list_tools(self) -> Sequence[ToolInfo]:
        return [
            t
            for t in await self.inner.list_tools()
            if not_offered_text(self.invoker, t.name) is None
        ]

    def _refusal(self, name: str) -> CallOutcome | None:
        text = not_offered_text(self.invoker, name)
        return None if text is None else CallOutcome.failure("denied", "not-offered", text)

    async def call(self, call: ToolCall) -> CallOutcome:
        return self._refusal(call.name) or await self.inner.call(call)

    async def propose(self, request: ProposalRequest) -> CallOutcome:
        return self._refusal(request.call.name) or await self.inner.propose(request)
