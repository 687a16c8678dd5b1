"""The persona runner: each due persona spends a short day in Mana through the MCP server, exactly
like a person with an MCP client would, then rates the modules it used.

One tick of one persona:

1. plan (deterministic per tick and persona): a focus module drawn from the module mix, and the
   space: a shared space of the persona whose type allows the focus module, else the personal
   space; the modules offered are the mix's modules allowed in that space;
2. log in over HTTP (`POST /auth/token` with the derived password) and open an MCP session with
   `Authorization: Bearer` and `X-Mana-Space` on every request;
3. main turn: `run_loop` with `McpTools` (3-8 tool calls asked for, at most 15 rounds); every
   tool call becomes a `persona_actions` row as it finishes, with a deterministic id (tick, persona,
   call index in the model's order), so a re-run of the tick rewrites the same rows; every call
   also carries a deterministic idempotency key (`TickTools`), so a re-run of the tick replays
   the writes the server already did instead of repeating them;
4. rating turn: the same conversation, one more model turn asking for JSON ratings (1-5) of each
   module used; unparsable ratings give one `failed-rating` row;
5. the tick row gets its status and the persona's `last_active_at` is set (only for a completed
   tick: a failed or timed-out tick is recorded and retried on the next run).

`missions` and `proposals` tools are never offered to a persona and refused if called anyway:
the invoker rule of `policy.agent_policy` (`persona-runner`), applied by `OfferedTools` here and
by the server's pipeline to persona users.
Personas run concurrently (a semaphore, default 2); one failing or exceeding its timeout
(default 10 minutes) is recorded and the others go on.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import random
import re
from collections.abc import AsyncIterator, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol
from urllib.parse import urlsplit

import httpx
import structlog

from agent_loop import (
    CallFinished,
    CallOutcome,
    LLMClient,
    LoopEvent,
    LoopOptions,
    LoopResult,
    McpTools,
    ModelResponded,
    OfferedTools,
    ProposalRequest,
    ToolCall,
    ToolInfo,
    ToolSource,
    run_loop,
)
from agent_loop.tools import ContentKeys, McpClientLike
from personas.passwords import PersonaSecret
from personas.schedule import Due, is_due, next_tick
from personas.store import FAILED_RATING, PersonaRow, PersonaStore
from personas.store import TickStatus as StoredStatus
from policy.agent_policy import module_of, offered_to
from tool_registry.clock import Clock, SystemClock
from tool_registry.errors import ManaError
from tool_registry.pipeline import input_hash
from tool_registry.space_types import SpaceTypeCatalog
from tool_registry.store.accounts import Accounts, Space

log = structlog.get_logger("mana.personas")

DEFAULT_TICK_TIMEOUT = 600.0
DEFAULT_MAX_ROUNDS = 15
MIN_CALLS, MAX_CALLS = 3, 8
MAX_ERROR_CHARS = 500

TickStatus = Literal["ok", "failed", "timeout", "skipped", "not-due"]


class TickFailed(ManaError):
    reason = "persona-tick-failed"


# -- tools ----------------------------------------------------------------------------------------


PERSONA_INVOKER = "persona-runner"


def persona_tools(inner: ToolSource, modules: Collection[str]) -> ToolSource:
    """The tools of a persona tick: the invoker rule first (the missions and proposals modules
    are refused whatever the server offers), then the tick's module mix."""
    return OfferedTools(PersonaTools(inner, modules), PERSONA_INVOKER)


class PersonaTools:
    """`inner` limited to the tools whose module is in `modules` (the tick's module mix)."""

    def __init__(self, inner: ToolSource, modules: Collection[str]) -> None:
        self.inner = inner
        self.modules = frozenset(modules)
        self._names: frozenset[str] | None = None

    @property
    def can_propose(self) -> bool:
        return False

    async def list_tools(self) -> Sequence[ToolInfo]:
        tools = [t for t in await self.inner.list_tools() if self._allowed(t.name)]
        self._names = frozenset(t.name for t in tools)
        return tools

    def _allowed(self, name: str) -> bool:
        return module_of(name) in self.modules

    async def call(self, call: ToolCall) -> CallOutcome:
        if self._names is None:
            await self.list_tools()
        if self._names is None or call.name not in self._names:
            return CallOutcome.failure(
                "denied",
                "not-offered",
                f"tool {call.name!r} is not offered in this session (modules: "
                f"{', '.join(sorted(self.modules)) or 'none'})",
            )
        return await self.inner.call(call)

    async def propose(self, request: ProposalRequest) -> CallOutcome:
        return CallOutcome.failure(
            "denied", "approval-required", "a persona session cannot stage proposals"
        )


def call_fingerprint(persona_email: str, name: str, arguments: Mapping[str, Any]) -> str:
    """sha256 of the persona, the tool name and the canonical JSON of the arguments (32 hex)."""
    parts = (persona_email.lower(), name, input_hash(dict(arguments)))
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]


class TickTools(McpTools):
    """`McpTools` for one persona tick: every call carries the idempotency key
    `persona:{tick}:{fingerprint}:{n}`, where the fingerprint is `call_fingerprint` and `n` counts
    identical calls within the tick. The key comes from the call's content, not the model's call
    id (a real model's ids are random), so a re-run of the tick that makes the same calls gets
    the first run's stored results for its writes instead of writing again, while two identical
    writes within one tick stay two writes. The server scopes keys to the persona's user."""

    def __init__(
        self,
        client: McpClientLike,
        *,
        tick: str,
        persona_email: str,
        read_timeout_seconds: float | None = 60.0,
    ) -> None:
        super().__init__(
            client, read_timeout_seconds=read_timeout_seconds, idempotency_prefix=f"persona:{tick}"
        )
        self.persona_email = persona_email
        self._keys = ContentKeys(
            f"persona:{tick}", lambda c: call_fingerprint(persona_email, c.name, c.arguments)
        )

    def idempotency_key(self, call: ToolCall) -> str | None:
        return self._keys.key(call)


class NoCallTools:
    """The rating turn: the same tool definitions (the conversation holds tool calls, and the
    Messages API wants their tools defined) but every call is refused and nothing runs."""

    def __init__(self, inner: ToolSource) -> None:
        self.inner = inner

    @property
    def can_propose(self) -> bool:
        return False

    async def list_tools(self) -> Sequence[ToolInfo]:
        return await self.inner.list_tools()

    async def call(self, call: ToolCall) -> CallOutcome:
        return CallOutcome.failure(
            "denied", "rating-turn", "the session is over: answer with the JSON ratings only"
        )

    async def propose(self, request: ProposalRequest) -> CallOutcome:
        return await self.call(request.call)


# -- connecting -----------------------------------------------------------------------------------


class Connector(Protocol):
    """How a tick reaches the server: log in, then open an MCP session as that user in a space."""

    async def login(self, email: str, password: str) -> str: ...

    def session(
        self, token: str, space: str
    ) -> contextlib.AbstractAsyncContextManager[McpClientLike]: ...


def auth_url(mcp_url: str) -> str:
    parts = urlsplit(mcp_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise TickFailed(f"--mcp-url must be an http(s) URL, got {mcp_url!r}")
    return f"{parts.scheme}://{parts.netloc}/auth/token"


class HttpConnector:
    """The real thing: `POST /auth/token` with `httpx`, then the `mcp` client over Streamable
    HTTP with the bearer token and `X-Mana-Space` on every request."""

    def __init__(
        self,
        mcp_url: str,
        *,
        timeout: float = 30.0,
        call_timeout: float = 60.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.mcp_url = mcp_url
        self.token_url = auth_url(mcp_url)
        self.timeout = timeout
        self.call_timeout = call_timeout
        self._transport = transport

    async def login(self, email: str, password: str) -> str:
        async with httpx.AsyncClient(timeout=self.timeout, transport=self._transport) as http:
            try:
                response = await http.post(
                    self.token_url, json={"email": email, "password": password}
                )
            except httpx.HTTPError as exc:
                raise TickFailed(
                    f"login failed: cannot reach {self.token_url} ({type(exc).__name__})"
                ) from None
        if response.status_code != 200:
            raise TickFailed(
                f"login failed: POST /auth/token answered {response.status_code} "
                f"{_error_text(response)}"
            )
        try:
            token = response.json()["access_token"]
        except (ValueError, KeyError, TypeError):
            raise TickFailed("login failed: /auth/token answered without an access_token") from None
        if not isinstance(token, str) or not token:
            raise TickFailed("login failed: /auth/token answered without an access_token")
        return token

    @contextlib.asynccontextmanager
    async def session(self, token: str, space: str) -> AsyncIterator[McpClientLike]:
        import httpx2
        from mcp import Client
        from mcp.client.streamable_http import streamable_http_client

        headers = {"Authorization": f"Bearer {token}", "X-Mana-Space": space}
        async with (
            httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(self.timeout)) as http,
            Client(
                streamable_http_client(self.mcp_url, http_client=http),
                mode="auto",
                read_timeout_seconds=self.call_timeout,
            ) as client,
        ):
            yield client


def _error_text(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.reason_phrase
    if isinstance(body, dict):
        parts = [str(body[k]) for k in ("error", "message") if isinstance(body.get(k), str)]
        if parts:
            return ": ".join(parts)[:200]
    return response.reason_phrase


# -- planning -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TickPlan:
    persona: PersonaRow
    tick_id: str
    focus: str
    space: Space
    modules: tuple[str, ...]
    companions: tuple[str, ...] = ()

    @property
    def shared(self) -> bool:
        return self.space.type != "personal"


def _rng(*parts: str) -> random.Random:
    seed = int.from_bytes(hashlib.sha256("\x1f".join(parts).encode()).digest()[:8], "big")
    return random.Random(seed)  # a deterministic draw, not a secret


def choose_focus(mix: dict[str, float], rng: random.Random) -> str:
    names = sorted(mix)
    return rng.choices(names, weights=[mix[n] for n in names], k=1)[0]


async def plan_tick(
    persona: PersonaRow, tick_id: str, accounts: Accounts, space_types: SpaceTypeCatalog
) -> TickPlan:
    """Focus module and space for one tick; the same inputs always give the same plan."""
    rng = _rng(tick_id, persona.email)
    mix = {m: w for m, w in persona.module_mix.items() if offered_to(PERSONA_INVOKER, m)}
    focus = choose_focus(mix, rng)
    spaces = await accounts.spaces_of(persona.user_id)
    shared = sorted(
        (
            a.space
            for a in spaces
            if a.space.type != "personal" and space_types.allows(a.space.type, focus)
        ),
        key=lambda s: s.slug,
    )
    if shared:
        space = rng.choice(shared)
    else:
        space = next(a.space for a in spaces if a.space.type == "personal")
    modules = tuple(sorted(m for m in mix if space_types.allows(space.type, m)))
    companions: tuple[str, ...] = ()
    if space.type != "personal":
        companions = tuple(
            u.name for u, _ in await accounts.members(space.id) if u.id != persona.user_id
        )
    return TickPlan(persona, tick_id, focus, space, modules, companions)


# -- prompts --------------------------------------------------------------------------------------

SESSION_RULES = (
    "You are using Mana, a personal-data app (habits, todos, notes, journal, mood, calendar, "
    "contacts, ...), through its tools, exactly as this person would from an AI assistant. Stay "
    "in character: write titles, notes and entries in your own voice with realistic, specific "
    "content from your life. Never mention that you are simulated."
)


def system_prompt(plan: TickPlan) -> str:
    return f"{plan.persona.system_prompt.strip()}\n\n{SESSION_RULES}"


def day_prompt(plan: TickPlan, now: datetime) -> str:
    if plan.shared:
        others = ", ".join(plan.companions) or "nobody else yet"
        where = (
            f"the shared {plan.space.type} space {plan.space.name!r} (with {others}); what you "
            "add there is seen by everyone in it"
        )
    else:
        where = "your personal space (only you see it)"
    rest = [m for m in plan.modules if m != plan.focus]
    more = f" and maybe {', '.join(rest)}" if rest else ""
    return (
        f"It is {now:%A, %d %B %Y}. You open Mana in {where}.\n"
        f"Spend a short day in the app: make between {MIN_CALLS} and {MAX_CALLS} tool calls "
        f"that fit your life today, mostly around {plan.focus}{more}. Look before you change "
        "things when it helps. When you are done, stop calling tools and say in one or two "
        "sentences, in character, what you did."
    )


def rating_prompt(modules: Sequence[str]) -> str:
    example = ", ".join(
        f'{{"module": "{m}", "rating": N, "notes": "why, in one or two sentences"}}'
        for m in modules[:2]
    )
    return (
        "The session is over. As the person you are, rate each Mana module you used today: "
        f"{', '.join(modules)}. Do not call any tool. Answer with JSON only, no other text, "
        f'where N is a whole number from 1 (awful) to 5 (great): {{"ratings": [{example}]}}'
    )


# -- ratings --------------------------------------------------------------------------------------

Ratings = dict[str, tuple[int | None, str | None]]
_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL)


def _json_candidates(text: str) -> list[str]:
    out = [text.strip()]
    out += [m.strip() for m in _FENCE.findall(text)]
    start, end = text.find("{"), text.rfind("}")
    if 0 <= start < end:
        out.append(text[start : end + 1])
    return out


def _rating_value(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return value if isinstance(value, int) and 1 <= value <= 5 else None


def _entries(data: Any) -> list[tuple[Any, Any, Any]]:
    """(module, rating, notes) from the accepted shapes: {"ratings": [{module, rating, notes}]},
    {"ratings": {module: rating | {rating, notes}}} or {module: rating | {rating, notes}}."""
    if isinstance(data, dict) and "ratings" in data:
        data = data["ratings"]
    out: list[tuple[Any, Any, Any]] = []
    if isinstance(data, list):
        for item in data:
            if isinstance(item, dict):
                out.append((item.get("module"), item.get("rating"), item.get("notes")))
    elif isinstance(data, dict):
        for module, value in data.items():
            if isinstance(value, dict):
                out.append((module, value.get("rating"), value.get("notes")))
            else:
                out.append((module, value, None))
    return out


def parse_ratings(text: str | None, used: Collection[str]) -> Ratings:
    """Ratings for the modules used; one `failed-rating` entry when nothing usable is found."""
    reply = (text or "").strip()
    problem = "the reply was empty"
    for candidate in _json_candidates(reply) if reply else []:
        try:
            data = json.loads(candidate)
        except ValueError:
            problem = "the reply is not JSON"
            continue
        ratings: Ratings = {}
        for module, rating, notes in _entries(data):
            value = _rating_value(rating)
            if isinstance(module, str) and module in used and value is not None:
                note = notes.strip()[:1000] if isinstance(notes, str) and notes.strip() else None
                ratings[module] = (value, note)
        if ratings:
            return ratings
        problem = "no 1-5 rating for a module used today"
    excerpt = reply[:300] + ("..." if len(reply) > 300 else "")
    return {FAILED_RATING: (None, f"{problem}; reply: {excerpt}" if reply else problem)}


# -- running --------------------------------------------------------------------------------------


@dataclass
class TickResult:
    email: str
    status: TickStatus
    tick_id: str | None = None
    space: str | None = None
    focus: str | None = None
    calls: int = 0
    errors: int = 0
    ratings: Ratings = field(default_factory=dict)
    detail: str = ""

    def summary(self) -> str:
        if self.status in ("not-due", "skipped"):
            return f"{self.email}: {self.status} ({self.detail})"
        rated = ", ".join(
            f"{m} {r}" if r is not None else m for m, (r, _) in sorted(self.ratings.items())
        )
        text = (
            f"{self.email}: {self.status} tick {self.tick_id} in {self.space} (focus "
            f"{self.focus}): {self.calls} calls, {self.errors} failed"
        )
        if rated:
            text += f"; ratings: {rated}"
        if self.detail:
            text += f"; {self.detail}"
        return text


LLMFactory = Callable[[PersonaRow], LLMClient | None]
"""The model for one persona's tick (a fresh one per tick); None skips the persona."""


@dataclass(frozen=True)
class RunnerConfig:
    concurrency: int = 2
    tick_timeout: float = DEFAULT_TICK_TIMEOUT
    max_rounds: int = DEFAULT_MAX_ROUNDS
    model: str | None = None
    max_tokens: int = 2048

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if self.tick_timeout <= 0:
            raise ValueError("the tick timeout must be positive")


class _Recorder:
    """Writes an action row as each tool call of the main turn finishes."""

    def __init__(self, runner: PersonaRunner, plan: TickPlan) -> None:
        self.runner = runner
        self.plan = plan
        self.index: dict[str, int] = {}
        self.calls = 0
        self.errors = 0
        self.modules: set[str] = set()
        self.written: set[str] = set()

    async def __call__(self, event: LoopEvent) -> None:
        if event.depth:
            return
        if isinstance(event, ModelResponded):
            for call in event.response.tool_calls:
                self.index.setdefault(call.id, len(self.index))
        elif isinstance(event, CallFinished):
            ex = event.executed
            outcome = ex.outcome
            index = self.index.setdefault(ex.call.id, len(self.index))
            self.calls += 1
            if outcome.ok:
                result: Literal["ok", "error"] = "ok"
            else:
                result = "error"
                self.errors += 1
            module = module_of(ex.call.name)
            if module in self.plan.modules:
                self.modules.add(module)
            message = None
            if result == "error":
                message = (outcome.message or outcome.content or outcome.status)[:MAX_ERROR_CHARS]
            row_id = await self.runner.store.record_action(
                tick=self.plan.tick_id,
                persona_id=self.plan.persona.user_id,
                persona_email=self.plan.persona.email,
                call_index=index,
                space_id=self.plan.space.id,
                tool=ex.call.name,
                input_hash=input_hash(dict(ex.call.arguments)),
                result=result,
                error_message=message,
                latency_ms=ex.latency_ms,
                at=self.runner.clock.now(),
            )
            self.written.add(row_id)


class PersonaRunner:
    def __init__(
        self,
        *,
        accounts: Accounts,
        store: PersonaStore,
        space_types: SpaceTypeCatalog,
        secret: PersonaSecret,
        connector: Connector,
        llm: LLMFactory,
        config: RunnerConfig | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.accounts = accounts
        self.store = store
        self.space_types = space_types
        self.secret = secret
        self.connector = connector
        self.llm = llm
        self.config = config or RunnerConfig()
        self.clock = clock or SystemClock()

    async def due(self, only: Collection[str] = ()) -> list[tuple[PersonaRow, Due]]:
        wanted = {e.strip().lower() for e in only}
        now = self.clock.now()
        rows = await self.store.personas()
        if wanted:
            missing = wanted - {p.email for p in rows}
            if missing:
                raise TickFailed(
                    f"not a seeded persona: {', '.join(sorted(missing))} (run `mana personas "
                    "seed` first)"
                )
            rows = [p for p in rows if p.email in wanted]
        return [(p, is_due(p.cadence, p.last_active, now)) for p in rows]

    async def run_once(self, only: Collection[str] = ()) -> list[TickResult]:
        """One pass: every due persona runs one tick (at most `concurrency` at a time)."""
        slots = asyncio.Semaphore(self.config.concurrency)
        results: dict[str, TickResult] = {}
        jobs: list[tuple[PersonaRow, str]] = []
        for persona, due in await self.due(only):
            if not due.due or due.tick_id is None:
                results[persona.email] = TickResult(persona.email, "not-due", detail=due.reason)
            else:
                jobs.append((persona, due.tick_id))

        async def one(persona: PersonaRow, tick: str) -> None:
            async with slots:
                try:
                    results[persona.email] = await self.run_tick(persona, tick)
                except Exception as exc:  # e.g. the database failed: report, go on
                    log.exception("persona tick crashed", persona=persona.email, tick=tick)
                    results[persona.email] = TickResult(
                        persona.email, "failed", tick, detail=describe_failure(exc)
                    )

        async with asyncio.TaskGroup() as group:
            for persona, tick in jobs:
                group.create_task(one(persona, tick))
        return [results[e] for e in sorted(results)]

    async def run_forever(
        self,
        only: Collection[str] = (),
        *,
        on_pass: Callable[[list[TickResult]], None] | None = None,
        max_sleep: float = 900.0,
    ) -> None:
        """Run passes until cancelled, sleeping until the next persona's next tick."""
        while True:
            results = await self.run_once(only)
            if on_pass is not None:
                on_pass(results)
            now = self.clock.now()
            rows = [p for p, _ in await self.due(only)]
            waits = [(next_tick(p.cadence, now) - now).total_seconds() for p in rows]
            retry = any(r.status in ("failed", "timeout") for r in results)
            pause = min([*waits, max_sleep, 300.0 if retry else max_sleep])
            await asyncio.sleep(max(1.0, pause))

    async def run_tick(self, persona: PersonaRow, tick: str) -> TickResult:
        """One tick of one persona; never raises for the persona's own failures."""
        try:
            llm = self.llm(persona)
        except ManaError as exc:  # e.g. an invalid script file for this persona
            return TickResult(persona.email, "failed", tick, detail=exc.message)
        if llm is None:
            return TickResult(persona.email, "skipped", tick, detail="no model for this persona")
        try:
            plan = await plan_tick(persona, tick, self.accounts, self.space_types)
        except Exception as exc:
            await self.store.start_tick(tick, persona.user_id, space_id=None, focus_module=None)
            detail = f"cannot plan the tick: {describe_failure(exc)}"
            await self.store.finish_tick(tick, persona.user_id, status="failed", error=detail)
            return TickResult(persona.email, "failed", tick, detail=detail)
        result = TickResult(persona.email, "ok", tick, space=plan.space.slug, focus=plan.focus)
        await self.store.start_tick(
            tick, persona.user_id, space_id=plan.space.id, focus_module=plan.focus
        )
        recorder = _Recorder(self, plan)
        bound = log.bind(persona=persona.email, tick=tick, space=plan.space.slug)
        main: LoopResult | None = None
        rating: LoopResult | None = None
        try:
            async with asyncio.timeout(self.config.tick_timeout) as deadline:
                main, rating = await self._session(plan, llm, recorder)
            if deadline.expired() or main.stop_reason == "cancelled":
                # the loop turns a cancellation into a `cancelled` result instead of raising
                raise TimeoutError
            if main.stop_reason == "llm-error":
                raise TickFailed(f"the model failed: {main.error}")
            if rating is None:
                result.ratings = {}  # nothing used, nothing to rate
            else:
                if rating.stop_reason == "llm-error":
                    why = f"the model failed to answer the rating turn: {rating.error}"
                    result.ratings = {FAILED_RATING: (None, why[:MAX_ERROR_CHARS])}
                else:
                    result.ratings = parse_ratings(rating.final_text, recorder.modules)
            await self.store.record_feedback(
                tick=tick,
                persona_id=persona.user_id,
                persona_email=persona.email,
                ratings=result.ratings,
                at=self.clock.now(),
            )
        except TimeoutError:
            result.status = "timeout"
            result.detail = f"exceeded the tick timeout of {self.config.tick_timeout:g} s"
        except asyncio.CancelledError:
            await asyncio.shield(
                self.store.finish_tick(tick, persona.user_id, status="failed", error="cancelled")
            )
            raise
        except Exception as exc:  # one persona's failure must not stop the others
            result.status = "failed"
            result.detail = describe_failure(exc)
            if not isinstance(exc, ManaError):
                bound.warning("persona tick failed", error=result.detail)
        result.calls, result.errors = recorder.calls, recorder.errors
        # rows of an earlier attempt of this tick that went further than this one
        await self.store.prune_actions(tick, persona.user_id, recorder.written)
        final: StoredStatus = "ok"
        if result.status == "timeout":
            final = "timeout"
        elif result.status != "ok":
            final = "failed"
        runs = [r for r in (main, rating) if r is not None]
        await self.store.finish_tick(
            tick,
            persona.user_id,
            status=final,
            stop_reason=main.stop_reason if main is not None else None,
            error=result.detail or None,
            calls=recorder.calls,
            input_tokens=sum(r.usage.input_tokens for r in runs),
            output_tokens=sum(r.usage.output_tokens for r in runs),
        )
        if result.status == "ok":
            await self.store.mark_active(persona.user_id, self.clock.now())
        bound.info(
            "persona tick finished", status=result.status, calls=result.calls, errors=result.errors
        )
        return result

    async def _session(
        self, plan: TickPlan, llm: LLMClient, recorder: _Recorder
    ) -> tuple[LoopResult, LoopResult | None]:
        password = self.secret.password(plan.persona.email)
        token = await self.connector.login(plan.persona.email, password)
        async with self.connector.session(token, plan.space.id) as client:
            tick_tools = TickTools(client, tick=plan.tick_id, persona_email=plan.persona.email)
            tools = persona_tools(tick_tools, plan.modules)
            options = LoopOptions(
                max_rounds=self.config.max_rounds,
                model=self.config.model,
                max_tokens=self.config.max_tokens,
                on_event=recorder,
                run_id=f"persona:{plan.persona.email}:{plan.tick_id}",
            )
            system = system_prompt(plan)
            main = await run_loop(llm, tools, system, day_prompt(plan, self.clock.now()), options)
            if main.stop_reason in ("llm-error", "cancelled") or not recorder.modules:
                return main, None
            rating = await run_loop(
                llm,
                NoCallTools(tools),
                system,
                rating_prompt(sorted(recorder.modules)),
                LoopOptions(
                    max_rounds=1,
                    model=self.config.model,
                    max_tokens=1024,
                    history=tuple(main.transcript),
                    run_id=f"{options.run_id}:rating",
                ),
            )
            return main, rating


def describe_failure(exc: BaseException) -> str:
    """A short, secret-free description (exception groups from the MCP client unwrapped)."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    if isinstance(exc, ManaError):
        return exc.message[:MAX_ERROR_CHARS]
    text = str(exc).splitlines()[0] if str(exc) else ""
    name = type(exc).__name__
    return (f"{name}: {text}" if text else name)[:MAX_ERROR_CHARS]


__all__ = [
    "DEFAULT_MAX_ROUNDS",
    "DEFAULT_TICK_TIMEOUT",
    "Connector",
    "HttpConnector",
    "LLMFactory",
    "NoCallTools",
    "PersonaRunner",
    "PersonaTools",
    "Ratings",
    "RunnerConfig",
    "TickFailed",
    "TickPlan",
    "TickResult",
    "TickTools",
    "auth_url",
    "call_fingerprint",
    "choose_focus",
    "day_prompt",
    "describe_failure",
    "parse_ratings",
    "persona_tools",
    "plan_tick",
    "rating_prompt",
    "system_prompt",
]
