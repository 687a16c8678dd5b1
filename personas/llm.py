"""Models for persona ticks: `--llm anthropic` or `--llm scripted:PATH`.

Scripted runs replay the `agent_loop` script format (a JSON list of turns, see
`agent_loop.scripted`), one script per persona, fresh for every tick. A persona's script holds the
turns of the main session (tool calls, then a turn without tool calls) followed by the rating
turn (its text is the JSON ratings). `PATH` is one of:

- a directory: the script of `maya.chen@mana.test` is `persona-maya-chen.json` (or
  `maya-chen.json`, or `maya.chen@mana.test.json`) in it;
- a JSON file holding an object that maps persona email to a script (a list of turns) or to the
  path of a script file (relative to that JSON file);
- a JSON file holding one script (a list): every persona replays it.

Personas without a script are skipped (reported, not recorded), so a scripted run can drive a few
personas out of the catalog.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent_loop import AnthropicClient, AnthropicSettings, LLMClient, ScriptedClient
from agent_loop.scripted import ScriptedTurn, parse_script
from personas.runner import LLMFactory
from personas.store import PersonaRow
from tool_registry.errors import ValidationFailed

_SLUG = re.compile(r"[^a-z0-9]+")


def script_names(email: str) -> list[str]:
    local = email.split("@", 1)[0].lower()
    slug = _SLUG.sub("-", local).strip("-")
    return [f"persona-{slug}.json", f"{slug}.json", f"{email.lower()}.json"]


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ValidationFailed(f"cannot read {path}: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise ValidationFailed(
            f"{path} is not valid JSON: {exc.msg} at line {exc.lineno}"
        ) from None


def load_scripts(path: Path) -> tuple[dict[str, list[ScriptedTurn]], list[ScriptedTurn] | None]:
    """(scripts by email, a script for everyone or None). Directories are read lazily, per
    persona, by `scripted_factory`; this reads the file forms."""
    data = _read_json(path)
    if isinstance(data, list):
        return {}, parse_script(data, source=str(path))
    if not isinstance(data, dict):
        raise ValidationFailed(
            f"{path}: expected a list of turns or an object mapping persona email to a script"
        )
    scripts: dict[str, list[ScriptedTurn]] = {}
    for email, value in data.items():
        if email.startswith("$"):  # "$comment" and friends
            continue
        if isinstance(value, str):
            target = (path.parent / value).resolve()
            scripts[email.lower()] = parse_script(_read_json(target), source=str(target))
        else:
            scripts[email.lower()] = parse_script(value, source=f"{path} [{email}]")
    return scripts, None


def scripted_factory(path: Path) -> LLMFactory:
    if path.is_dir():
        directory = path

        def from_dir(persona: PersonaRow) -> LLMClient | None:
            for name in script_names(persona.email):
                candidate = directory / name
                if candidate.is_file():
                    return ScriptedClient.from_file(candidate)
            return None

        return from_dir
    if not path.exists():
        raise ValidationFailed(f"--llm scripted:{path}: no such file or directory")
    scripts, everyone = load_scripts(path)

    def from_file(persona: PersonaRow) -> LLMClient | None:
        turns = scripts.get(persona.email, everyone)
        return None if turns is None else ScriptedClient(turns)

    return from_file


@dataclass
class ModelChoice:
    """What `--llm` gave: a factory (one model per tick), the model name and response size for
    the loop, and how to release the client when the run ends."""

    factory: LLMFactory
    model: str | None = None
    max_tokens: int = 2048
    closer: Callable[[], Awaitable[None]] | None = None

    async def aclose(self) -> None:
        if self.closer is not None:
            await self.closer()


def llm_factory(spec: str, environ: Mapping[str, str]) -> ModelChoice:
    """`anthropic` (one shared client; needs ANTHROPIC_API_KEY) or `scripted:PATH`."""
    if spec == "anthropic":
        settings = AnthropicSettings.from_environ(environ)
        client = AnthropicClient.from_settings(settings)
        return ModelChoice(
            lambda persona: client, settings.model, settings.max_tokens, client.aclose
        )
    if spec.startswith("scripted:") and spec != "scripted:":
        return ModelChoice(scripted_factory(Path(spec.removeprefix("scripted:")).expanduser()))
    raise ValidationFailed(f"--llm must be 'anthropic' or 'scripted:PATH', got {spec!r}")


__all__ = ["ModelChoice", "llm_factory", "load_scripts", "script_names", "scripted_factory"]
