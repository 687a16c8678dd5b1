"""Declarative tool registry: specs, registry, space-scoped store, bundled modules and the one
invocation pipeline every consumer (MCP server, agent loop, CLI) goes through."""

from tool_registry.context import Backends, CallContext, ToolContext
from tool_registry.errors import ManaError, ToolError
from tool_registry.gate import AllowAllGate, Decision, Gate, GateRequest
from tool_registry.models import ToolInput, ToolOutput
from tool_registry.pipeline import Outcome, Pipeline
from tool_registry.registry import Registry
from tool_registry.spec import ToolSpec

__all__ = [
    "AllowAllGate",
    "Backends",
    "CallContext",
    "Decision",
    "Gate",
    "GateRequest",
    "ManaError",
    "Outcome",
    "Pipeline",
    "Registry",
    "ToolContext",
    "ToolError",
    "ToolInput",
    "ToolOutput",
    "ToolSpec",
]
