"""`PolicyGate`: the pipeline's gate. One per process, built in the composition root.

Per call: load the space's destructive allowlist (only for destructive tools) and, for a
destructive tool not on it, the space's destructive mode; then apply the rules that do not
depend on earlier calls (`standing_denial`): a call they deny in enforce mode is decided there,
without the rate-limit log. A call that needs the user's confirmation is such a refusal too
(`Decision.confirm`), so it is not counted by the rate limit until the pipeline asks again
with the user's answer: an accepted call is then counted once, however many input-required
rounds it took. Otherwise the log's `admit` decides the rate limit on this user's recent calls
of the tool and records the call if it may run, atomically (with the shared log: one write
unit in the database). Then the input is checked for injection markers, the decision is
counted and denials are logged. The decision equals `evaluate`'s, with the mode applied.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import structlog

from policy.metrics import PolicyMetrics
from policy.rate_limit import RateLimitLog, RateLog
from policy.rules import (
    ALLOW_DECISION,
    DEFAULT_DESTRUCTIVE_MODE,
    EMPTY,
    POLICY_OFF,
    POLICY_OFF_DECISION,
    DestructiveMode,
    PolicyContext,
    apply_mode,
    decision_kind,
    input_flag,
    rate_limit_denial,
    standing_denial,
)
from policy.settings import PolicySettings
from tool_registry.gate import Decision, GateRequest
from tool_registry.registry import Registry

log = structlog.get_logger("mana.policy")


class AllowlistSource(Protocol):
    async def tools(self, space_id: str) -> frozenset[str]: ...


class DestructiveModeSource(Protocol):
    async def mode(self, space_id: str) -> DestructiveMode: ...


class PolicyGate:
    """Implements `tool_registry.gate.Gate`. `metrics` counts every decision by (decision,
    reason, mode); `rate_log` holds the recent invocations: the composition root passes the
    database's `SharedRateLimitLog`; without one the gate keeps its own in-memory log.
    `modes` gives each space's destructive mode (the composition root passes the
    `DestructiveAllowlist`); without it every space is in `deny`."""

    def __init__(
        self,
        settings: PolicySettings,
        allowlist: AllowlistSource,
        *,
        registry: Registry | None = None,
        metrics: PolicyMetrics | None = None,
        rate_log: RateLog | None = None,
        modes: DestructiveModeSource | None = None,
    ) -> None:
        self.modes = modes
        self.settings = settings.with_registry(registry) if registry is not None else settings
        self.allowlist = allowlist
        self.metrics = metrics or PolicyMetrics()
        self.rate_log: RateLog = rate_log or RateLimitLog(
            window_seconds=self.settings.window_seconds,
            max_events=self.settings.max_limit,
            max_users=self.settings.max_users,
        )

    @property
    def mode(self) -> str:
        return self.settings.mode

    async def check(self, request: GateRequest) -> Decision:
        settings = self.settings
        mode = settings.mode
        if mode == "off":
            self.metrics.count("allow", POLICY_OFF, mode)
            return POLICY_OFF_DECISION
        spec = request.spec
        allowlist = EMPTY
        if spec.policy_hint == "destructive" and spec.scope != "admin":
            try:
                allowlist = await self.allowlist.tools(request.space.id)
            except Exception:
                # Fail closed: without the list, destructive tools are denied.
                log.exception("could not read the destructive allowlist", space=request.space.id)
        destructive_mode = DEFAULT_DESTRUCTIVE_MODE
        if spec.policy_hint == "destructive" and spec.name not in allowlist and self.modes:
            try:
                destructive_mode = await self.modes.mode(request.space.id)
            except Exception:
                # Fail closed: without the mode, the space is in `deny`.
                log.exception("could not read the destructive mode", space=request.space.id)
        context = PolicyContext(
            user_id=request.call.user_id,
            space_id=request.space.id,
            destructive_allowlist=allowlist,
            role=request.role,
            invoker=request.call.invoker,
            destructive_mode=destructive_mode,
            confirmation=request.confirmation,
            cannot_ask=request.cannot_ask,
        )
        now = request.now.timestamp()
        standing = standing_denial(spec, context, settings)
        raw: Decision | None = standing
        if standing is not None and mode == "enforce":
            # Denied whatever the history: decided without the log, and not recorded in it.
            effective = standing
        elif settings.limit_for(spec.name) is None:
            # No rate limit on this tool: nothing to count, no round trip to the log.
            effective = apply_mode(standing, mode) if standing is not None else ALLOW_DECISION
        else:

            def decide(recent: Sequence[float]) -> Decision:
                nonlocal raw
                if raw is None:
                    raw = rate_limit_denial(spec, settings, recent, now)
                return apply_mode(raw, mode) if raw is not None else ALLOW_DECISION

            effective = await self.rate_log.admit(context.user_id, spec.name, now, decide)
        if raw is None:
            raw = input_flag(spec, request.parsed_input) or ALLOW_DECISION
            effective = raw
        kind = decision_kind(raw)
        self.metrics.count(kind, raw.reason, mode)
        if kind != "allow":
            fields = {
                "tool": spec.name,
                "reason": raw.reason,
                "mode": mode,
                "user": context.user_id,
                "space": context.space_id,
                "invoker": context.invoker,
            }
            if effective.confirm:
                log.info("policy asks the user to confirm the call", **fields)
            elif not effective.allow:
                log.warning("policy denied call", **fields)
            elif kind == "deny":
                log.warning("policy would deny call (log-only mode)", **fields)
            else:
                log.warning("policy flagged call", **fields)
        return effective
