"""Agent loop: runs a model against tools from the registry (through the one invocation
pipeline) or from any MCP server (through an MCP client session).

    from agent_loop import LoopOptions, RegistryTools, ScriptedClient, run_loop

    tools = RegistryTools(pipeline, CallContext(user_id=user.id, invoker="cli"))
    result = await run_loop(client, tools, system="You help with habits.", prompt="...")
    result.stop_reason, result.final_text, result.calls, result.usage

See `agent_loop.loop` for the round structure and `agent_loop.tools` for tool sources.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# Exports are loaded on first use (PEP 562): importing `agent_loop.tools` must not pull in the
# `anthropic` SDK (about 2 s of imports), which only `AnthropicClient` needs.
_EXPORTS: dict[str, str] = {
    "AnthropicClient": "agent_loop.anthropic_client",
    "AnthropicSettings": "agent_loop.anthropic_client",
    "CallFinished": "agent_loop.state",
    "CallOutcome": "agent_loop.tools",
    "CallStarted": "agent_loop.state",
    "CancelFlag": "agent_loop.state",
    "Compacted": "agent_loop.state",
    "CompactionRecord": "agent_loop.state",
    "DEFAULT_PRODUCERS": "agent_loop.reminders",
    "ExecutedCall": "agent_loop.state",
    "FunctionTool": "agent_loop.tools",
    "FunctionTools": "agent_loop.tools",
    "LLMClient": "agent_loop.llm",
    "LLMError": "agent_loop.llm",
    "LLMRequest": "agent_loop.llm",
    "LLMRequestRejected": "agent_loop.llm",
    "LLMResponse": "agent_loop.llm",
    "LLMUnavailable": "agent_loop.llm",
    "LoopEvent": "agent_loop.state",
    "LoopOptions": "agent_loop.loop",
    "LoopResult": "agent_loop.loop",
    "LoopState": "agent_loop.state",
    "McpTools": "agent_loop.tools",
    "Message": "agent_loop.llm",
    "ModelResponded": "agent_loop.state",
    "OfferedTools": "agent_loop.tools",
    "ProposalRequest": "agent_loop.tools",
    "ProposeHook": "agent_loop.tools",
    "RegistryTools": "agent_loop.tools",
    "ReminderProducer": "agent_loop.reminders",
    "RestrictedTools": "agent_loop.tools",
    "RetryPolicy": "agent_loop.anthropic_client",
    "RoundStarted": "agent_loop.state",
    "RunFinished": "agent_loop.state",
    "ScriptExhausted": "agent_loop.llm",
    "ScriptedClient": "agent_loop.scripted",
    "ScriptedTurn": "agent_loop.scripted",
    "StopReason": "agent_loop.state",
    "SubagentRun": "agent_loop.loop",
    "TaintSource": "agent_loop.taint",
    "TextPart": "agent_loop.llm",
    "ToolCall": "agent_loop.llm",
    "ToolDef": "agent_loop.llm",
    "ToolInfo": "agent_loop.tools",
    "ToolResultPart": "agent_loop.llm",
    "ToolSource": "agent_loop.tools",
    "ToolUsePart": "agent_loop.llm",
    "Usage": "agent_loop.llm",
    "run_loop": "agent_loop.loop",
}

if TYPE_CHECKING:
    from agent_loop.anthropic_client import AnthropicClient, AnthropicSettings, RetryPolicy
    from agent_loop.llm import (
        LLMClient,
        LLMError,
        LLMRequest,
        LLMRequestRejected,
        LLMResponse,
        LLMUnavailable,
        Message,
        ScriptExhausted,
        TextPart,
        ToolCall,
        ToolDef,
        ToolResultPart,
        ToolUsePart,
        Usage,
    )
    from agent_loop.loop import LoopOptions, LoopResult, SubagentRun, run_loop
    from agent_loop.reminders import DEFAULT_PRODUCERS, ReminderProducer
    from agent_loop.scripted import ScriptedClient, ScriptedTurn
    from agent_loop.state import (
        CallFinished,
        CallStarted,
        CancelFlag,
        Compacted,
        CompactionRecord,
        ExecutedCall,
        LoopEvent,
        LoopState,
        ModelResponded,
        RoundStarted,
        RunFinished,
        StopReason,
    )
    from agent_loop.taint import TaintSource
    from agent_loop.tools import (
        CallOutcome,
        FunctionTool,
        FunctionTools,
        McpTools,
        OfferedTools,
        ProposalRequest,
        ProposeHook,
        RegistryTools,
        RestrictedTools,
        ToolInfo,
        ToolSource,
    )


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "DEFAULT_PRODUCERS",
    "AnthropicClient",
    "AnthropicSettings",
    "CallFinished",
    "CallOutcome",
    "CallStarted",
    "CancelFlag",
    "Compacted",
    "CompactionRecord",
    "ExecutedCall",
    "FunctionTool",
    "FunctionTools",
    "LLMClient",
    "LLMError",
    "LLMRequest",
    "LLMRequestRejected",
    "LLMResponse",
    "LLMUnavailable",
    "LoopEvent",
    "LoopOptions",
    "LoopResult",
    "LoopState",
    "McpTools",
    "Message",
    "ModelResponded",
    "OfferedTools",
    "ProposalRequest",
    "ProposeHook",
    "RegistryTools",
    "ReminderProducer",
    "RestrictedTools",
    "RetryPolicy",
    "RoundStarted",
    "RunFinished",
    "ScriptExhausted",
    "ScriptedClient",
    "ScriptedTurn",
    "StopReason",
    "SubagentRun",
    "TaintSource",
    "TextPart",
    "ToolCall",
    "ToolDef",
    "ToolInfo",
    "ToolResultPart",
    "ToolSource",
    "ToolUsePart",
    "Usage",
    "run_loop",
]
