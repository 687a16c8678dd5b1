"""Which model runs missions: `--llm anthropic[:MODEL]` or `--llm scripted:PATH`.

A scripted model is replayed from the start for every iteration (each gets its own
`ScriptedClient` over the same parsed turns), so one script can drive many missions in a demo,
a test or a benchmark. The Anthropic client is shared by all iterations of a process.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from agent_loop.llm import LLMClient
from agent_loop.scripted import ScriptedClient, ScriptedTurn
from missions.models import Agent, Mission
from tool_registry.errors import ValidationFailed

LLMFactory = Callable[[Mission, Agent], LLMClient]
LLM_HELP = "anthropic (needs ANTHROPIC_API_KEY), anthropic:MODEL, or scripted:PATH (offline)"


async def _nothing() -> None:
    return None


@dataclass(frozen=True)
class LLMSetup:
    """A client per iteration, plus what the loop should know about the model."""

    factory: LLMFactory
    label: str
    context_window: int | None = None
    compact_model: str | None = None
    max_tokens: int | None = None
    aclose: Callable[[], Awaitable[None]] = field(default=_nothing)


def scripted(turns: list[ScriptedTurn], *, label: str = "scripted") -> LLMSetup:
    return LLMSetup(factory=lambda _m, _a: ScriptedClient(turns), label=label)


def llm_setup(spec: str, environ: Mapping[str, str]) -> LLMSetup:
    """Parse `--llm`; a bad spec or missing key raises `ValidationFailed`."""
    text = spec.strip()
    if text.startswith("scripted:"):
        path = Path(text.removeprefix("scripted:")).expanduser()
        turns = ScriptedClient.from_file(path).turns
        return scripted(turns, label=f"scripted:{path}")
    if text == "anthropic" or text.startswith("anthropic:"):
        from agent_loop.anthropic_client import AnthropicClient, AnthropicSettings

        settings = AnthropicSettings.from_environ(environ)
        model = text.removeprefix("anthropic").removeprefix(":").strip() or settings.model
        client = AnthropicClient(api_key=settings.api_key, model=model, base_url=settings.base_url)
        return LLMSetup(
            factory=lambda _m, _a: client,
            label=f"anthropic:{model}",
            context_window=settings.context_window,
            compact_model=settings.compact_model,
            max_tokens=settings.max_tokens,
            aclose=client.aclose,
        )
    raise ValidationFailed(f"unknown --llm {spec!r}; use {LLM_HELP}")
