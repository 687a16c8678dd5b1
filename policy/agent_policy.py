"""Agent tool policy: per agent, each tool resolves to `auto` (run through the pipeline and its
gate), `propose` (stage a proposal for a human) or `deny` (never offered to the model).
Resolution order: exact tool name, then module, then the default.

Admin-scope tools are never run by agents: they resolve to `deny` whatever the policy says, so
they are not offered to the model even when the caller passes an unfiltered tool list.

Above every agent's policy sits one rule keyed by invoker (`offered_to`): models that run on their
own (`mission-runner`, `persona-runner`) are never offered, and never run, tools of the
`missions` and `proposals` modules, so no agent can start, steer or review agents. People and the
assistants they drive directly (`mcp` clients, `mana call` and `mana agent run` as `cli`, a human
approving a proposal as `user`) keep them. The pipeline enforces it on every call
(`InvokerToolRule`); `agent_loop.tools.OfferedTools` applies it to what a model is shown."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from tool_registry.spec import ToolSpec

Mode = Literal["auto", "propose", "deny"]

# No self-replicating agents: models running inside missions or persona ticks are never offered
# (and never dispatched) tools of these modules (see `offered_to`).
AGENT_EXCLUDED_MODULES: frozenset[str] = frozenset({"missions", "proposals"})
# Invokers whose model acts with no person in the loop for each call, and who they are in a refusal.
AGENT_INVOKERS: Mapping[str, str] = {
    "mission-runner": "agents running missions",
    "persona-runner": "personas",
}
MODES: tuple[str, ...] = get_args(Mode)
HINTS: tuple[str, ...] = ("read", "write", "destructive")


@dataclass(frozen=True)
class AgentToolPolicy:
    """`tools` and `modules` map names to modes; `by_hint` gives a default per policy hint
    (read/write/destructive) before falling back to `default`."""

    tools: Mapping[str, Mode] = field(default_factory=dict)
    modules: Mapping[str, Mode] = field(default_factory=dict)
    by_hint: Mapping[str, Mode] = field(default_factory=dict)
    default: Mode = "propose"

    def __post_init__(self) -> None:
        for where, mapping in (
            ("tools", self.tools),
            ("modules", self.modules),
            ("by_hint", self.by_hint),
        ):
            bad = {k: v for k, v in mapping.items() if v not in MODES}
            if bad:
                raise ValueError(
                    f"agent tool policy {where}: invalid modes {bad}; use one of {', '.join(MODES)}"
                )
        unknown_hints = sorted(set(self.by_hint) - set(HINTS))
        if unknown_hints:
            raise ValueError(
                f"agent tool policy by_hint: unknown policy hints {unknown_hints}; use "
                f"{', '.join(HINTS)}"
            )
        if self.default not in MODES:
            raise ValueError(f"agent tool policy default must be one of {', '.join(MODES)}")

    @classmethod
    def sensible_default(cls) -> AgentToolPolicy:
        """Reads run, writes are proposed, destructive tools are hidden."""
        return cls(
            by_hint={"read": "auto", "write": "propose", "destructive": "deny"}, default="propose"
        )

    def resolve(self, spec: ToolSpec[Any, Any]) -> Mode:
        if not spec.exposable:
            return "deny"
        if spec.name in self.tools:
            return self.tools[spec.name]
        if spec.module in self.modules:
            return self.modules[spec.module]
        if spec.policy_hint in self.by_hint:
            return self.by_hint[spec.policy_hint]
        return self.default

    def offered(self, specs: Iterable[ToolSpec[Any, Any]]) -> list[ToolSpec[Any, Any]]:
        """The tools to show the model: everything not resolved to `deny`."""
        return [s for s in specs if self.resolve(s) != "deny"]

    def classify(self, spec: ToolSpec[Any, Any] | None) -> Mode:
        """What to do with a requested call; unknown tools are denied."""
        return "deny" if spec is None else self.resolve(spec)

    def to_json(self) -> dict[str, Any]:
        return {
            "tools": dict(self.tools),
            "modules": dict(self.modules),
            "byHint": dict(self.by_hint),
            "default": self.default,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AgentToolPolicy:
        return cls(
            tools=dict(data.get("tools", {})),
            modules=dict(data.get("modules", {})),
            by_hint=dict(data.get("byHint", {})),
            default=data.get("default", "propose"),
        )


def module_of(tool: str) -> str:
    """The module of a tool name (`module.verb`)."""
    return tool.split(".", 1)[0]


def offered_to(invoker: str, module: str) -> bool:
    """The invoker rule: may a caller of this kind be offered (and call) tools of `module`?"""
    return not (invoker in AGENT_INVOKERS and module in AGENT_EXCLUDED_MODULES)


def not_offered_text(invoker: str, tool: str) -> str | None:
    """None when `invoker` may use `tool`; otherwise the refusal for the caller (and its model)."""
    module = module_of(tool)
    if offered_to(invoker, module):
        return None
    return (
        f"tool {tool!r} cannot be called: {module} tools are never available to "
        f"{AGENT_INVOKERS.get(invoker, invoker)}"
    )


class InvokerToolRule:
    """The invoker rule as the pipeline's `ToolOffer` hook (built in the composition root)."""

    def refusal(self, spec: ToolSpec[Any, Any], invoker: str) -> str | None:
        return not_offered_text(invoker, spec.name)
