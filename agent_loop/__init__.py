"""Agent loop: runs a model against tools from the registry (through the one invocation
pipeline) or from any MCP server (through an MCP client session).

    from agent_loop import LoopOptions, RegistryTools, ScriptedClient, run_loop

    tools = RegistryTools(pipeline, CallContext(user_id=user.id, invoker="cli"))
    result = await run_loop(client, tools, system="You help with habits.", prompt="...")
    result.stop_reason, result.final_text, result.calls, result.usage

See `agent_loop.loop` for the round structure and `agent_loop.tools` for tool sources.
"""

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
    ProposalRequest,
    ProposeHook,
    RegistryTools,
    RestrictedTools,
    ToolInfo,
    ToolSource,
)

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
