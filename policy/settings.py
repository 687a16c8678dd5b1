"""Policy configuration: gate mode and rate limits.

Environment variables (read by `PolicySettings.from_env`, wired in the composition root):

- `MANA_POLICY_MODE`: `enforce` (default), `log-only` (decide, log and count, never block) or
  `off` (allow everything without evaluating).
- `MANA_RATE_LIMIT`: calls of one tool by one user per rolling 60 s window (default 30), or
  `off` for no limit (then only the tools given in `MANA_RATE_LIMITS` are limited).
- `MANA_RATE_LIMITS`: per-tool overrides, e.g. `habits.log=10,notes.create=5,notes.search=off`.
  A tool without a limit is decided without the rate-limit log: its calls cost no database
  round trip in the gate.
- `MANA_RATE_LIMIT_USERS`: how many users the in-memory rate-limit log tracks at once
  (default 10000; the least recently active user is forgotten first). The shared log in the
  database is bounded by the window instead.

A bad value raises `ValidationFailed` naming the variable.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal, get_args

from tool_registry.errors import ValidationFailed
from tool_registry.spec import TOOL_NAME_PATTERN

if TYPE_CHECKING:
    from tool_registry.registry import Registry

Mode = Literal["enforce", "log-only", "off"]
MODES: tuple[str, ...] = get_args(Mode)

DEFAULT_RATE_LIMIT = 30
WINDOW_SECONDS = 60.0
MAX_RATE_LIMIT = 100_000
DEFAULT_MAX_USERS = 10_000
# The value of a limit that means "no limit" in MANA_RATE_LIMIT and MANA_RATE_LIMITS.
NO_LIMIT = "off"

# Verbs of non-destructive tools worth suggesting instead of a destructive one, best first.
ALTERNATIVE_VERBS: tuple[str, ...] = ("archive", "complete", "update")


def _int(var: str, raw: str, *, low: int, high: int) -> int:
    try:
        value = int(raw.strip())
    except ValueError:
        raise ValidationFailed(f"{var} must be an integer, got {raw!r}") from None
    if not low <= value <= high:
        raise ValidationFailed(f"{var} must be between {low} and {high}, got {value}")
    return value


def _limit(var: str, raw: str) -> int | None:
    if raw.strip().lower() == NO_LIMIT:
        return None
    return _int(var, raw, low=1, high=MAX_RATE_LIMIT)


def parse_mode(raw: str, *, var: str = "MANA_POLICY_MODE") -> Mode:
    mode = raw.strip().lower()
    if mode not in MODES:
        raise ValidationFailed(f"{var} must be one of {', '.join(MODES)}, got {raw!r}")
    return mode  # type: ignore[return-value]


def parse_tool_limits(raw: str, *, var: str = "MANA_RATE_LIMITS") -> dict[str, int | None]:
    """`habits.log=10, notes.search=off` → {"habits.log": 10, "notes.search": None} (None: no
    limit)."""
    limits: dict[str, int | None] = {}
    for item in raw.split(","):
        item = item.strip()
        if not item:
            continue
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep:
            raise ValidationFailed(f"{var}: expected TOOL=LIMIT, got {item!r}")
        if not TOOL_NAME_PATTERN.match(name):
            raise ValidationFailed(f"{var}: {name!r} is not a tool name like 'habits.log'")
        if name in limits:
            raise ValidationFailed(f"{var}: {name} is given twice")
        limits[name] = _limit(f"{var} ({name})", value)
    return limits


@dataclass(frozen=True)
class PolicySettings:
    """How the gate decides. `tool_limits` override `rate_limit` per tool name;
    `alternatives` maps a destructive tool to non-destructive tools to suggest instead (filled
    from the registry by `with_registry`). A limit of None means the tool has no rate limit."""

    mode: Mode = "enforce"
    rate_limit: int | None = DEFAULT_RATE_LIMIT
    tool_limits: Mapping[str, int | None] = field(default_factory=dict)
    window_seconds: float = WINDOW_SECONDS
    max_users: int = DEFAULT_MAX_USERS
    alternatives: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValidationFailed(f"policy mode must be one of {', '.join(MODES)}")
        if self.rate_limit is not None and not 1 <= self.rate_limit <= MAX_RATE_LIMIT:
            raise ValidationFailed(f"rate limit must be between 1 and {MAX_RATE_LIMIT}")
        bad = {
            k: v
            for k, v in self.tool_limits.items()
            if v is not None and not 1 <= v <= MAX_RATE_LIMIT
        }
        if bad:
            raise ValidationFailed(f"per-tool rate limits must be between 1 and {MAX_RATE_LIMIT}")
        if self.window_seconds <= 0:
            raise ValidationFailed("the rate-limit window must be positive")
        if self.max_users < 1:
            raise ValidationFailed("the rate-limit log must track at least one user")
        # Freeze the mappings so a shared settings object cannot be changed behind the gate.
        object.__setattr__(self, "tool_limits", MappingProxyType(dict(self.tool_limits)))
        object.__setattr__(self, "alternatives", MappingProxyType(dict(self.alternatives)))

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> PolicySettings:
        mode = parse_mode(environ.get("MANA_POLICY_MODE", "enforce"))
        limit = _limit("MANA_RATE_LIMIT", environ.get("MANA_RATE_LIMIT", str(DEFAULT_RATE_LIMIT)))
        tool_limits = parse_tool_limits(environ.get("MANA_RATE_LIMITS", ""))
        max_users = _int(
            "MANA_RATE_LIMIT_USERS",
            environ.get("MANA_RATE_LIMIT_USERS", str(DEFAULT_MAX_USERS)),
            low=1,
            high=10_000_000,
        )
        return cls(mode=mode, rate_limit=limit, tool_limits=tool_limits, max_users=max_users)

    def limit_for(self, tool: str) -> int | None:
        """Calls of `tool` per user per window, or None: no limit."""
        return self.tool_limits.get(tool, self.rate_limit)

    @property
    def max_limit(self) -> int:
        """The largest limit (1 when no tool has one): how many events a log keeps per key."""
        return max(
            [v for v in (self.rate_limit, *self.tool_limits.values()) if v is not None],
            default=1,
        )

    def with_registry(self, registry: Registry | Iterable[Any]) -> PolicySettings:
        """Check that every per-tool limit names a registered tool (`ValidationFailed` naming
        `MANA_RATE_LIMITS` otherwise) and fill `alternatives` for destructive tools."""
        specs = list(registry)
        names = {s.name for s in specs}
        unknown = sorted(set(self.tool_limits) - names)
        if unknown:
            raise ValidationFailed(f"MANA_RATE_LIMITS names unknown tools: {', '.join(unknown)}")
        by_module: dict[str, dict[str, str]] = {}
        for s in specs:
            if s.policy_hint != "destructive" and s.exposable:
                by_module.setdefault(s.module, {})[s.verb] = s.name
        alternatives: dict[str, tuple[str, ...]] = dict(self.alternatives)
        for s in specs:
            if s.policy_hint == "destructive" and s.name not in alternatives:
                verbs = by_module.get(s.module, {})
                found = tuple(verbs[v] for v in ALTERNATIVE_VERBS if v in verbs)
                if found:
                    alternatives[s.name] = found
        return replace(self, alternatives=alternatives)

    def describe(self) -> str:
        """One line for people: mode and limits."""
        if self.rate_limit is None:
            text = f"mode {self.mode}; no rate limit per tool"
        else:
            text = (
                f"mode {self.mode}; rate limit {self.rate_limit} calls per tool per user per "
                f"{self.window_seconds:g} s"
            )
        if self.tool_limits:
            overrides = ", ".join(
                f"{k}={NO_LIMIT if v is None else v}" for k, v in sorted(self.tool_limits.items())
            )
            text += f" (overrides: {overrides})"
        return text
