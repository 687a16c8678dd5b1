"""Policy gate: destructive opt-in per space, rate limits, injection flagging, modes.

Public API:

- `evaluate(spec, call_context, parsed_input, settings, recent_invocations, now) -> Decision`
  (pure; `policy.rules`), `apply_mode`, `find_injection_marker`, `PolicyContext`;
- `PolicySettings` (mode, limits; `from_env`);
- `PolicyGate` (the pipeline's gate), `PolicyMetrics`; its rate-limit log `SharedRateLimitLog`
  (in the database, shared by every process on it) or `RateLimitLog` (in memory), both `RateLog`;
- `DestructiveAllowlist` (the per-space opt-in list and destructive mode deny / confirm /
  allow: show / allow / revoke / set_mode / audit);
- `AgentToolPolicy` (auto / propose / deny per agent).
"""

from policy.agent_policy import AgentToolPolicy
from policy.allowlist import DestructiveAllowlist
from policy.gate import PolicyGate
from policy.metrics import DecisionKey, PolicyMetrics
from policy.rate_limit import RateLimitLog, RateLog, SharedRateLimitLog
from policy.rules import (
    ADMIN_SCOPE,
    DESTRUCTIVE_DECLINED,
    DESTRUCTIVE_MODES,
    DESTRUCTIVE_NEEDS_CONFIRMATION,
    DESTRUCTIVE_NOT_ALLOWED,
    INJECTION_MARKER,
    RATE_LIMIT_EXCEEDED,
    DestructiveMode,
    PolicyContext,
    apply_mode,
    evaluate,
    find_injection_marker,
)
from policy.settings import MODES, Mode, PolicySettings

__all__ = [
    "ADMIN_SCOPE",
    "DESTRUCTIVE_DECLINED",
    "DESTRUCTIVE_MODES",
    "DESTRUCTIVE_NEEDS_CONFIRMATION",
    "DESTRUCTIVE_NOT_ALLOWED",
    "INJECTION_MARKER",
    "MODES",
    "RATE_LIMIT_EXCEEDED",
    "AgentToolPolicy",
    "DecisionKey",
    "DestructiveAllowlist",
    "DestructiveMode",
    "Mode",
    "PolicyContext",
    "PolicyGate",
    "PolicyMetrics",
    "PolicySettings",
    "RateLimitLog",
    "RateLog",
    "SharedRateLimitLog",
    "apply_mode",
    "evaluate",
    "find_injection_marker",
]
