"""The access scopes a delegated caller may be granted (OAuth `scope` values) and the one rule
of which tools they let it see and call.

A caller without scopes (None: the CLI, agents, stdio, tokens issued locally) is unrestricted.
A scoped caller needs `mana:read` for every tool and `mana:write` as well for every tool that is
not read-only (`write` and `destructive` policy hints). The pipeline enforces this on every call
and filters listings with it; the HTTP guard uses it to answer a scope challenge early.
"""

from __future__ import annotations

from tool_registry.registry import AnySpec

READ_SCOPE = "mana:read"
WRITE_SCOPE = "mana:write"
SCOPES: tuple[str, ...] = (READ_SCOPE, WRITE_SCOPE)

Scopes = frozenset[str] | None


def required_scopes(spec: AnySpec) -> tuple[str, ...]:
    """The scopes a scoped caller needs to call `spec`, in `SCOPES` order."""
    return (READ_SCOPE,) if spec.read_only else SCOPES


def missing_scope(spec: AnySpec, scopes: Scopes) -> str | None:
    """The first scope `scopes` lacks for calling `spec` (None: the call is within them)."""
    if scopes is None:
        return None
    return next((s for s in required_scopes(spec) if s not in scopes), None)


def scope_allows(spec: AnySpec, scopes: Scopes) -> bool:
    return missing_scope(spec, scopes) is None


def insufficient_scope_message(tool: str, scope: str) -> str:
    """The one wording of a refusal for a missing scope, naming the scope and the tool."""
    return f"{tool} needs the {scope} scope, which this connection was not granted"


__all__ = [
    "READ_SCOPE",
    "SCOPES",
    "WRITE_SCOPE",
    "Scopes",
    "insufficient_scope_message",
    "missing_scope",
    "required_scopes",
    "scope_allows",
]
