"""The one invocation pipeline. The MCP server, the agent loop, proposal approval and the CLI all
call `Pipeline.invoke`; a check that lives anywhere else is a bug.

Steps: unknown tool → offered to this invoker (`offer`) → within the caller's access scopes
(`access_scopes`) → validate input → resolve space +
membership → module allowed for the space type → required backend configured → gate
(→ confirmation) → idempotency → handler → validate output → audit.

Confirmation: when the gate's decision asks for one (`Decision.confirm`: a destructive call by
a person in a space whose destructive mode is `confirm`), the pipeline asks the user through
the call's client channel, with the tool's own question (`ToolSpec.confirmation`, read through
a read-only store) or a generic one, before any write transaction starts, and asks the gate
again with the answer; the answer lands in the call's audit row (`confirmation`). In the
2026-07-28 era the channel ends the round with `InputRequired` instead of answering: it passes
through untouched (no outcome, no audit row, nothing counted by the rate limit for that round);
the client's retry brings the answer, and that round is decided, counted and audited once. A
retry of a call that already ran under the same idempotency key is not asked again: it gets the
stored outcome (or the reused-key refusal). A handler that lets `ClientCannotAsk` escape needed
an answer its client cannot give: an `error` outcome `client-cannot-ask`, carrying the client
capabilities it lacked (`Outcome.required_capabilities`).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Literal, TypeVar

import orjson
import structlog
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tool_registry.access_scopes import (
    READ_SCOPE,
    insufficient_scope_message,
    missing_scope,
    scope_allows,
)
from tool_registry.client_channel import Attachment, ClientCannotAsk, ask_consent
from tool_registry.clock import Clock, SystemClock, iso
from tool_registry.confirm import CONFIRM_FIELD, confirm_schema, generic_question
from tool_registry.context import Backends, CallContext, ToolContext, idempotency_key_problem
from tool_registry.errors import ConflictError, ManaError
from tool_registry.gate import AllowAllGate, Confirmation, Decision, Gate, GateRequest
from tool_registry.json_input import exceeds_depth, too_deep_message
from tool_registry.membership import member_problem, require_member
from tool_registry.offer import OfferEverything, ToolOffer
from tool_registry.registry import AnySpec, Registry
from tool_registry.space_types import SpaceTypeCatalog
from tool_registry.store.accounts import Accounts, Space, SpaceAccess
from tool_registry.store.audit import AuditLog, AuditRow, insert_rows
from tool_registry.store.database import Database, Transaction
from tool_registry.store.idempotency import find_key, store_key
from tool_registry.store.postgres import DatabaseUnavailable
from tool_registry.store.records import ReadRunner, ScopedStore
from tool_registry.views import ViewContext, ViewError, ViewStatus

log = structlog.get_logger("mana.pipeline")

Status = Literal["ok", "invalid-input", "denied", "error"]


class FieldError(BaseModel):
    field: str
    message: str


class OutcomeError(BaseModel):
    reason: str
    message: str
    fields: list[FieldError] = Field(default_factory=list)


class Outcome(BaseModel):
    """The result of one invocation, the same shape for every consumer."""

    model_config = ConfigDict(frozen=True)

    tool: str
    status: Status
    request_id: str
    result: dict[str, Any] | None = None
    error: OutcomeError | None = None
    reason: str | None = None
    reminder: str | None = None
    flagged: bool = False
    replayed: bool = False
    space_id: str | None = None
    latency_ms: float = 0.0
    # Content parts the handler attached (images, audio, embedded resources): shown by the MCP
    # adapter, never stored (an idempotent replay returns the structured result only).
    attachments: tuple[Attachment, ...] = Field(default=(), exclude=True)
    # The person's answer when the call asked them to confirm it (for the audit row only).
    confirmation: Confirmation | None = Field(default=None, exclude=True)
    # `client-cannot-ask`: the client capabilities the handler needed and the client did not
    # declare (a `ClientCapabilities` object, e.g. {"sampling": {}}), for the MCP adapter.
    required_capabilities: dict[str, Any] | None = Field(default=None, exclude=True)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def public(self) -> dict[str, Any]:
        """The JSON a client sees: `result` on success, `error` with reason and message else."""
        body: dict[str, Any] = {
            "tool": self.tool,
            "status": self.status,
            "requestId": self.request_id,
        }
        if self.space_id:
            body["spaceId"] = self.space_id
        if self.ok:
            body["result"] = self.result
        elif self.error is not None:
            body["error"] = self.error.model_dump(exclude_defaults=False)
        if self.reminder:
            body["reminder"] = self.reminder
        if self.flagged:
            body["flagged"] = True
        if self.replayed:
            body["replayed"] = True
        return body


IDEMPOTENCY_KEY_REUSED = "idempotency-key-reused"
# Reason of a `denied` outcome for a caller whose access scopes do not cover the tool.
INSUFFICIENT_SCOPE = "insufficient-scope"
# Reason of an `error` outcome when a step of the pipeline itself failed (not the handler).
INTERNAL_ERROR = "internal-error"
# Reason of an `error` outcome when the handler needed to ask its client something the client
# cannot answer (`ClientCannotAsk` escaped the handler).
CLIENT_CANNOT_ASK = "client-cannot-ask"

# Only an operator at the CLI can even reach an admin-scope tool (where the gate still denies it).
ADMIN_INVOKERS = frozenset({"cli"})
# The question key of a call's confirmation (stable for the call, so a 2026-07-28 retry brings
# the answer under it).
CONFIRM_KEY = "mana.confirm"

Observer = Callable[[Outcome, AnySpec | None], None]
ViewT = TypeVar("ViewT")


def input_hash(raw_args: Any) -> str:
    """sha256 of the canonical JSON of the raw arguments (sorted keys, compact). Arguments too
    deep to encode (refused by `_parse` anyway) hash to one fixed value instead of raising."""
    if exceeds_depth(raw_args):
        return hashlib.sha256(b"mana:too-deep").hexdigest()
    try:
        canonical = orjson.dumps(raw_args, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)
    except TypeError:
        canonical = json.dumps(
            raw_args, sort_keys=True, separators=(",", ":"), default=str
        ).encode()
    return hashlib.sha256(canonical).hexdigest()


def describe_validation_error(exc: ValidationError) -> list[FieldError]:
    fields = []
    for err in exc.errors(include_url=False):
        loc = ".".join(str(p) for p in err["loc"]) or "(arguments)"
        fields.append(FieldError(field=loc, message=err["msg"]))
    return fields


class _Rejection(Exception):
    """Internal: a step decided the call ends here with this status."""

    def __init__(
        self,
        status: Status,
        reason: str,
        message: str,
        *,
        fields: list[FieldError] | None = None,
        reminder: str | None = None,
        confirmation: Confirmation | None = None,
        required_capabilities: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status: Status = status
        self.reason = reason
        self.message = message
        self.fields = fields or []
        self.reminder = reminder
        self.confirmation = confirmation
        self.required_capabilities = required_capabilities


class Pipeline:
    """Holds everything an invocation needs; built once in the composition root."""

    def __init__(
        self,
        registry: Registry,
        db: Database,
        *,
        accounts: Accounts | None = None,
        space_types: SpaceTypeCatalog | None = None,
        gate: Gate | None = None,
        backends: Backends | None = None,
        clock: Clock | None = None,
        audit: AuditLog | None = None,
        offer: ToolOffer | None = None,
    ) -> None:
        self.registry = registry
        self.db = db
        self.clock = clock or SystemClock()
        self.accounts = accounts or Accounts(db, self.clock)
        self.space_types = space_types or SpaceTypeCatalog.load()
        self.gate: Gate = gate or AllowAllGate()
        self.backends = backends or Backends()
        self.audit = audit or AuditLog(db)
        self.offer: ToolOffer = offer or OfferEverything()
        self.observers: list[Observer] = []

    # -- visibility --------------------------------------------------------------------------

    def available(self, spec: AnySpec, space_type: str) -> bool:
        return (
            spec.exposable
            and self.space_types.allows(space_type, spec.module)
            and all(self.backends.configured(b) for b in spec.requires)
        )

    def offered(self, spec: AnySpec, invoker: str) -> bool:
        """Whether the offer hook lets callers of kind `invoker` see and call `spec`."""
        return self.offer.refusal(spec, invoker) is None

    def visible_tools(
        self,
        space_type: str,
        invoker: str | None = None,
        scopes: frozenset[str] | None = None,
    ) -> list[AnySpec]:
        """Tools a client or agent may see in a space of this type (user-space scope, module
        allowed for the type, required backends configured), given `invoker`, that the offer
        hook lets that kind of caller use, and, given `scopes`, that those access scopes cover
        (a read-only connection sees read tools only)."""
        return [
            s
            for s in self.registry.exposable()
            if self.available(s, space_type)
            and (invoker is None or self.offered(s, invoker))
            and scope_allows(s, scopes)
        ]

    async def resolve(self, call: CallContext) -> SpaceAccess:
        """The call's space and the caller's role; raises `NotAMemberError` alike for an unknown
        space and a space the caller is not in (`tool_registry.membership`)."""
        return await require_member(self.accounts, call.user_id, call.space)

    # -- views: resources, prompts, completions ----------------------------------------------

    def modules_in(self, space_type: str) -> tuple[str, ...]:
        """The registered modules a space of this type may use."""
        return tuple(m for m in self.registry.modules() if self.space_types.allows(space_type, m))

    async def view(
        self,
        name: str,
        module: str | None,
        args: Mapping[str, Any],
        call: CallContext,
        work: Callable[[ViewContext], Awaitable[ViewT]],
        *,
        resolved: SpaceAccess | None = None,
    ) -> ViewT:
        """Run a read-only view (`name` e.g. `resource:notes.note`) of `module` through the
        checks a read tool gets: the caller's access scopes include `mana:read`, membership of
        the call's space, the module allowed for its type (None: a view over several modules,
        which shows only those in `ViewContext.modules`). `work` gets a read-only store bound
        to the caller and space; one audit row records the outcome under `name` with the hash
        of `args`. Refusals and failures raise `ViewError` with a stable reason."""
        started = time.perf_counter()
        hashed = input_hash(dict(args))
        space: Space | None = None
        try:
            if call.scopes is not None and READ_SCOPE not in call.scopes:
                message = insufficient_scope_message(name, READ_SCOPE)
                raise _Rejection("denied", INSUFFICIENT_SCOPE, message)
            access = await self._access(call, resolved)
            space = access.space
            if module is not None:
                self._require_module(space, module)
            store = self._read_store(call, access)
            ctx = ViewContext(
                tool=ToolContext(
                    store=store,
                    user_id=call.user_id,
                    space=space,
                    role=access.role or "",
                    invoker=call.invoker,
                    request_id=call.request_id,
                    clock=self.clock,
                    backends=self.backends,
                    channel=call.channel,
                ),
                modules=self.modules_in(space.type),
            )
            try:
                result = await work(ctx)
            except ViewError as exc:
                raise _Rejection(exc.status, exc.reason, exc.message) from None
            except ManaError as exc:
                raise _Rejection("error", exc.reason, exc.message) from None
            except ClientCannotAsk as exc:
                raise _Rejection(
                    "error", CLIENT_CANNOT_ASK, str(exc), required_capabilities=exc.required
                ) from None
        except _Rejection as rej:
            error = OutcomeError(reason=rej.reason, message=rej.message)
            self._audit_view(name, call, space, hashed, started, rej.status, rej.reason, error)
            status: ViewStatus = "error" if rej.status == "ok" else rej.status
            raise ViewError(
                rej.message,
                reason=rej.reason,
                status=status,
                required_capabilities=rej.required_capabilities,
            ) from None
        except DatabaseUnavailable as exc:
            log.warning("view failed: database unavailable", view=name, error=exc.message)
            error = OutcomeError(reason=exc.reason, message=exc.message)
            self._audit_view(name, call, space, hashed, started, "error", exc.reason, error)
            raise ViewError(exc.message, reason=exc.reason, status="error") from None
        except Exception:
            log.exception("view failed", view=name, request_id=call.request_id)
            message = (
                f"{name} failed unexpectedly; quote request id {call.request_id} when reporting it"
            )
            error = OutcomeError(reason=INTERNAL_ERROR, message=message)
            self._audit_view(name, call, space, hashed, started, "error", INTERNAL_ERROR, error)
            raise ViewError(message, reason=INTERNAL_ERROR, status="error") from None
        self._audit_view(name, call, space, hashed, started, "ok", None, None)
        return result

    def _audit_view(
        self,
        name: str,
        call: CallContext,
        space: Space | None,
        hashed: str,
        started: float,
        status: Status,
        reason: str | None,
        error: OutcomeError | None,
    ) -> None:
        outcome = self._finish(
            name, call, space, status=status, reason=reason, started=started, error=error
        )
        self.audit.enqueue(self._audit_row(outcome, call, hashed))

    # -- invocation --------------------------------------------------------------------------

    async def invoke(
        self,
        tool_name: str,
        raw_args: Any,
        call: CallContext,
        *,
        resolved: SpaceAccess | None = None,
    ) -> Outcome:
        """Run one call through every step. `resolved` lets a consumer that already resolved
        this call's space for this very request (via `resolve`, e.g. the HTTP auth guard) skip
        the second lookup; a resolution without membership is still refused here."""
        started = time.perf_counter()
        spec = self.registry.get(tool_name)
        space: Space | None = None
        hashed = input_hash(raw_args)
        decision: Decision | None = None
        bound = structlog.contextvars.bound_contextvars(
            request_id=call.request_id, user=call.user_id, tool=tool_name, invoker=call.invoker
        )
        with bound:
            try:
                if spec is None or (not spec.exposable and call.invoker not in ADMIN_INVOKERS):
                    # Admin tools do not exist for MCP clients and agents: same answer as unknown.
                    raise _Rejection("invalid-input", "unknown-tool", f"unknown tool {tool_name!r}")
                not_offered = self.offer.refusal(spec, call.invoker)
                if not_offered is not None:
                    raise _Rejection("denied", "not-offered", not_offered)
                lacking = missing_scope(spec, call.scopes)
                if lacking is not None:
                    message = insufficient_scope_message(spec.name, lacking)
                    raise _Rejection("denied", INSUFFICIENT_SCOPE, message)
                self._check_key(spec, call)
                parsed = self._parse(spec, raw_args)
                access = await self._access(call, resolved)
                space = access.space
                self._check_available(spec, space)
                decision = await self._check_gate(spec, call, access, parsed)
                confirmation: Confirmation | None = None
                replay_only = False
                if decision.confirm and await self._ran_before(spec, call):
                    # A retry of a call that already ran under this idempotency key: answered
                    # with its stored outcome (or refused as a reused key). Nothing runs, so
                    # nothing is asked.
                    replay_only = True
                elif decision.confirm:
                    confirmation, cannot_ask = await self._ask_confirmation(
                        spec, parsed, call, access
                    )
                    decision = await self._check_gate(
                        spec, call, access, parsed, confirmation=confirmation, cannot_ask=cannot_ask
                    )
                if not decision.allow and not replay_only:
                    raise _Rejection(
                        "denied",
                        decision.reason,
                        _denial_text(spec, decision),
                        reminder=decision.reminder,
                        confirmation=confirmation,
                    )
                if spec.read_only or spec.own_transactions:
                    outcome = await self._run_read(
                        spec, parsed, call, access, hashed, decision, started, confirmation
                    )
                else:
                    outcome = await self._run_write(
                        spec,
                        parsed,
                        call,
                        access,
                        hashed,
                        decision,
                        started,
                        confirmation,
                        replay_only=replay_only,
                    )
            except _Rejection as rej:
                outcome = self._finish(
                    tool_name,
                    call,
                    space,
                    status=rej.status,
                    reason=rej.reason,
                    started=started,
                    error=OutcomeError(reason=rej.reason, message=rej.message, fields=rej.fields),
                    reminder=rej.reminder,
                    confirmation=rej.confirmation,
                    required_capabilities=rej.required_capabilities,
                )
                self.audit.enqueue(self._audit_row(outcome, call, hashed))
            except DatabaseUnavailable as exc:
                # The database server went away (a restart, a network cut) at any step: the
                # call is not acknowledged (it did not commit, or the server went away during
                # its COMMIT). Not a bug of the call: one clear `unavailable` error to retry
                # later (with the same idempotency key to be safe), logged without a trace.
                log.warning("tool call failed: database unavailable", error=exc.message)
                outcome = self._finish(
                    tool_name,
                    call,
                    space,
                    status="error",
                    reason=exc.reason,
                    started=started,
                    error=OutcomeError(reason=exc.reason, message=exc.message),
                )
                self.audit.enqueue(self._audit_row(outcome, call, hashed))
            except Exception:
                # A step of the pipeline itself failed (e.g. the database refused the write
                # transaction): an `error` outcome like a handler crash, logged, audited and
                # counted, with the request id for the report.
                log.exception("tool call failed inside the pipeline")
                message = (
                    f"{tool_name} failed unexpectedly; quote request id {call.request_id} "
                    "when reporting it"
                )
                outcome = self._finish(
                    tool_name,
                    call,
                    space,
                    status="error",
                    reason=INTERNAL_ERROR,
                    started=started,
                    error=OutcomeError(reason=INTERNAL_ERROR, message=message),
                )
                self.audit.enqueue(self._audit_row(outcome, call, hashed))
            self._notify(outcome, spec)
            return outcome

    def _check_key(self, spec: AnySpec, call: CallContext) -> None:
        key = call.idempotency_key
        problem = None if key is None else idempotency_key_problem(key)
        if problem is not None:
            raise _Rejection(
                "invalid-input",
                "invalid-input",
                f"invalid idempotency key for {spec.name}: {problem}",
                fields=[FieldError(field="idempotencyKey", message=problem)],
            )

    def _parse(self, spec: AnySpec, raw_args: Any) -> BaseModel:
        args = {} if raw_args is None else raw_args
        if not isinstance(args, dict):
            raise _Rejection(
                "invalid-input",
                "invalid-input",
                f"arguments for {spec.name} must be a JSON object, got {type(args).__name__}",
            )
        if exceeds_depth(args):
            raise _Rejection(
                "invalid-input", "invalid-input", f"arguments for {spec.name}: {too_deep_message()}"
            )
        try:
            parsed: BaseModel = spec.input.model_validate(args)
        except ValidationError as exc:
            fields = describe_validation_error(exc)
            detail = "; ".join(f"{f.field}: {f.message}" for f in fields)
            raise _Rejection(
                "invalid-input",
                "invalid-input",
                f"invalid arguments for {spec.name}: {detail}",
                fields=fields,
            ) from None
        return parsed

    async def _access(self, call: CallContext, resolved: SpaceAccess | None) -> SpaceAccess:
        if resolved is not None:
            problem = member_problem(resolved, call.space)
            if problem is not None:
                raise _Rejection("denied", problem.reason, problem.message)
            return resolved
        try:
            return await self.resolve(call)
        except DatabaseUnavailable:
            raise  # an error of the call (see `invoke`), not a refusal of the caller
        except ManaError as exc:
            raise _Rejection("denied", exc.reason, exc.message) from None

    async def _check_gate(
        self,
        spec: AnySpec,
        call: CallContext,
        access: SpaceAccess,
        parsed: BaseModel,
        *,
        confirmation: Confirmation | None = None,
        cannot_ask: str | None = None,
    ) -> Decision:
        """The gate's decision; a gate that fails closes the call (denied), never crashes it."""
        request = GateRequest(
            spec=spec,
            call=call,
            space=access.space,
            role=access.role or "",
            parsed_input=parsed,
            now=self.clock.now(),
            confirmation=confirmation,
            cannot_ask=cannot_ask,
        )
        try:
            return await self.gate.check(request)
        except DatabaseUnavailable:
            raise  # the call fails as `unavailable` (see `invoke`), not as a policy denial
        except Exception:
            log.exception("policy gate failed; denying the call")
            return Decision(
                allow=False,
                reason="policy-error",
                reminder="The policy check failed on the server; try again later.",
            )

    async def _ran_before(self, spec: AnySpec, call: CallContext) -> bool:
        """Whether the caller already used this call's idempotency key (a write only)."""
        key = call.idempotency_key
        if key is None or spec.read_only or spec.own_transactions:
            return False
        row = await self.db.read(lambda c: find_key(c, call.user_id, key))
        return row is not None

    async def _ask_confirmation(
        self, spec: AnySpec, parsed: BaseModel, call: CallContext, access: SpaceAccess
    ) -> tuple[Confirmation, str | None]:
        """Ask the calling person to confirm this call, outside any transaction: the answer,
        and for `unavailable` why the client cannot be asked. The question is the tool's own
        (`ToolSpec.confirmation`, on a read-only store) or a generic one. Only an accepted form
        with `confirm: true` accepts. `InputRequired` (2026-07-28) passes through."""
        store = self._read_store(call, access)
        question = None
        if spec.confirmation is not None:
            question = await spec.confirmation(
                parsed, self._tool_context(spec, call, access, store)
            )
        try:
            answer = await ask_consent(
                call.channel, CONFIRM_KEY, question or generic_question(spec), confirm_schema()
            )
        except ClientCannotAsk as exc:
            return "unavailable", str(exc)
        if answer.action != "accept":
            return answer.action, None
        accepted = answer.content is not None and answer.content.get(CONFIRM_FIELD) is True
        return ("accept" if accepted else "decline"), None

    def _require_module(self, space: Space, module: str) -> None:
        """Refuse (`module-not-allowed`) a module the space's type does not allow."""
        if not self.space_types.allows(space.type, module):
            raise _Rejection(
                "denied",
                "module-not-allowed",
                f"module {module!r} is not available in {space.type} spaces",
            )

    def _read_store(self, call: CallContext, access: SpaceAccess) -> ScopedStore:
        """A read-only store bound to the caller and the space (reads, views, questions)."""
        return ScopedStore(
            ReadRunner(self.db),
            user_id=call.user_id,
            access=access,
            clock=self.clock,
            writable=False,
        )

    def _check_available(self, spec: AnySpec, space: Space) -> None:
        self._require_module(space, spec.module)
        missing = [b for b in spec.requires if not self.backends.configured(b)]
        if missing:
            raise _Rejection(
                "error",
                "not-configured",
                f"{spec.name} needs the {', '.join(missing)} backend, which is not "
                "configured on this server",
            )

    def _tool_context(
        self, spec: AnySpec, call: CallContext, access: SpaceAccess, store: ScopedStore
    ) -> ToolContext:
        return ToolContext(
            store=store,
            user_id=call.user_id,
            space=access.space,
            role=access.role or "",
            invoker=call.invoker,
            request_id=call.request_id,
            clock=self.clock,
            backends=self.backends,
            channel=call.channel,
        )

    async def _run_handler(
        self, spec: AnySpec, parsed: BaseModel, ctx: ToolContext
    ) -> dict[str, Any]:
        try:
            output = await spec.handler(parsed, ctx)
        except ManaError as exc:
            raise _Rejection("error", exc.reason, exc.message) from None
        except ClientCannotAsk as exc:
            # The handler needed an answer its client cannot give: the client's limit, not a
            # crash; the text says why (and which capability it lacks, for the MCP adapter).
            raise _Rejection(
                "error",
                CLIENT_CANNOT_ASK,
                f"{spec.name} needs to ask its client, and {exc}",
                required_capabilities=exc.required,
            ) from None
        except Exception:
            log.exception("handler crashed")
            raise _Rejection(
                "error",
                "handler-error",
                f"{spec.name} failed unexpectedly; quote request id "
                f"{ctx.request_id} when reporting it",
            ) from None
        try:
            model = (
                output if isinstance(output, spec.output) else spec.output.model_validate(output)
            )
            dumped: dict[str, Any] = model.model_dump(mode="json", by_alias=True)
        except ValidationError as exc:
            log.error("handler returned invalid output", errors=str(exc))
            raise _Rejection(
                "error",
                "invalid-output",
                f"{spec.name} produced an invalid result; quote request id "
                f"{ctx.request_id} when reporting it",
            ) from None
        return dumped

    async def _run_read(
        self,
        spec: AnySpec,
        parsed: BaseModel,
        call: CallContext,
        access: SpaceAccess,
        hashed: str,
        decision: Decision,
        started: float,
        confirmation: Confirmation | None = None,
    ) -> Outcome:
        """A read tool, or a tool with `own_transactions`: on a read-only store, outside any
        transaction, its audit row buffered."""
        store = self._read_store(call, access)
        outcome = await self._handle(
            spec, parsed, call, access, store, decision, started, confirmation
        )
        self.audit.enqueue(self._audit_row(outcome, call, hashed))
        return outcome

    async def _handle(
        self,
        spec: AnySpec,
        parsed: BaseModel,
        call: CallContext,
        access: SpaceAccess,
        store: ScopedStore,
        decision: Decision,
        started: float,
        confirmation: Confirmation | None = None,
    ) -> Outcome:
        """Run the handler on `store` (read-only or inside the write's transaction) and build the
        `ok` outcome; reads and writes differ only in the store and in how the audit row lands."""
        ctx = self._tool_context(spec, call, access, store)
        result = await self._run_handler(spec, parsed, ctx)
        return self._finish(
            spec.name,
            call,
            access.space,
            status="ok",
            reason=decision.reason,
            started=started,
            result=result,
            decision=decision,
            attachments=ctx.attachments,
            confirmation=confirmation,
        )

    async def _run_write(
        self,
        spec: AnySpec,
        parsed: BaseModel,
        call: CallContext,
        access: SpaceAccess,
        hashed: str,
        decision: Decision,
        started: float,
        confirmation: Confirmation | None = None,
        *,
        replay_only: bool = False,
    ) -> Outcome:
        """A write tool in one transaction with its audit row and idempotency key. With
        `replay_only` (an unconfirmed call whose key was used before) only a stored outcome
        may answer: the handler never runs."""
        try:
            # A write tool's work touches its space's data and its caller's idempotency keys
            # only, so calls in other spaces by other users need not wait for it.
            scopes = (f"space:{access.space.id}", f"user:{call.user_id}")
            async with self.db.transaction(scopes) as tx:
                if call.idempotency_key:
                    replay = await self._replay(tx, spec, call, access, hashed, started)
                    if replay is not None:
                        await tx.run(
                            lambda c: insert_rows(c, [self._audit_row(replay, call, hashed)])
                        )
                        return replay
                if replay_only:
                    # The stored outcome is gone (expired meanwhile): this call was never
                    # confirmed, so it is refused as the gate decided.
                    raise _Rejection(
                        "denied",
                        decision.reason,
                        _denial_text(spec, decision),
                        reminder=decision.reminder,
                    )
                store = ScopedStore(
                    tx, user_id=call.user_id, access=access, clock=self.clock, writable=True
                )
                outcome = await self._handle(
                    spec, parsed, call, access, store, decision, started, confirmation
                )
                row = self._audit_row(outcome, call, hashed)
                key = call.idempotency_key

                def commit_side_rows(conn: Any) -> None:
                    insert_rows(conn, [row])
                    if key:
                        store_key(
                            conn,
                            user_id=call.user_id,
                            key=key,
                            tool=spec.name,
                            space_id=access.space.id,
                            input_hash=hashed,
                            outcome=outcome.model_dump_json(),
                            created_at=iso(self.clock.now()),
                        )

                await tx.run(commit_side_rows)
                return outcome
        except ConflictError as exc:
            raise _Rejection("error", exc.reason, exc.message) from None

    async def _replay(
        self,
        tx: Transaction,
        spec: AnySpec,
        call: CallContext,
        access: SpaceAccess,
        hashed: str,
        started: float,
    ) -> Outcome | None:
        """The stored outcome of this key, if the caller already used it. Keys belong to the
        calling user; reusing one for another tool, other arguments or another space is refused
        (`idempotency-key-reused`) instead of answering with an unrelated stored outcome."""
        key = call.idempotency_key
        if key is None:
            return None
        row = await tx.run(lambda c: find_key(c, call.user_id, key))
        if row is None:
            return None
        if row.tool != spec.name:
            what = f"a call of {row.tool}"
        elif row.space_id != access.space.id:
            what = f"a call of {spec.name} in another space"
        elif row.input_hash != hashed:
            what = f"a call of {spec.name} with other arguments"
        else:
            what = None
        if what is not None:
            raise ConflictError(
                f"idempotency key {key!r} was already used for {what}; use a new key for a "
                "new call",
                reason=IDEMPOTENCY_KEY_REUSED,
            )
        stored = Outcome.model_validate_json(row.outcome)
        return stored.model_copy(
            update={
                "replayed": True,
                "request_id": call.request_id,
                "latency_ms": round((time.perf_counter() - started) * 1000, 3),
            }
        )

    def _finish(
        self,
        tool: str,
        call: CallContext,
        space: Space | None,
        *,
        status: Status,
        reason: str | None,
        started: float,
        result: dict[str, Any] | None = None,
        error: OutcomeError | None = None,
        reminder: str | None = None,
        decision: Decision | None = None,
        attachments: tuple[Attachment, ...] = (),
        confirmation: Confirmation | None = None,
        required_capabilities: dict[str, Any] | None = None,
    ) -> Outcome:
        if decision is not None and decision.reminder and reminder is None:
            reminder = decision.reminder
        return Outcome(
            tool=tool,
            status=status,
            request_id=call.request_id,
            result=result,
            error=error,
            reason=reason,
            reminder=reminder,
            flagged=bool(decision and decision.flagged),
            space_id=space.id if space else None,
            latency_ms=round((time.perf_counter() - started) * 1000, 3),
            attachments=attachments,
            confirmation=confirmation,
            required_capabilities=required_capabilities,
        )

    def _audit_row(self, outcome: Outcome, call: CallContext, hashed: str) -> AuditRow:
        return AuditRow(
            at=iso(self.clock.now()),
            request_id=outcome.request_id,
            user_id=call.user_id,
            space_id=outcome.space_id,
            tool=outcome.tool,
            invoker=call.invoker,
            input_hash=hashed,
            outcome=outcome.status,
            reason=outcome.error.reason if outcome.error else outcome.reason,
            latency_ms=outcome.latency_ms,
            confirmation=outcome.confirmation,
        )

    def _notify(self, outcome: Outcome, spec: AnySpec | None) -> None:
        log.debug(
            "tool call",
            outcome=outcome.status,
            reason=outcome.reason,
            latency_ms=outcome.latency_ms,
            space=outcome.space_id,
        )
        for observer in self.observers:
            observer(outcome, spec)

    async def aclose(self) -> None:
        """Flush buffered audit rows. The database is closed by whoever opened it."""
        await self.audit.aclose()


def _denial_text(spec: AnySpec, decision: Decision) -> str:
    text = f"{spec.name} was denied by policy ({decision.reason})"
    if decision.reminder:
        text += f": {decision.reminder}"
    return text
