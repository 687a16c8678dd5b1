"""Bundled modules: one file per module, each exporting `TOOLS` (and optionally `RESOURCES` and
`PROMPTS`). Adding a module means adding a file here and to `BUNDLED`; the MCP server and agent
loop pick it up from the registry."""

from __future__ import annotations

from collections.abc import Iterable
from types import ModuleType
from typing import Any

from tool_registry.modules import (
    calendar,
    contacts,
    habits,
    journal,
    me,
    mood,
    notes,
    reviews,
    spaces,
    todo,
    users,
)
from tool_registry.prompts import PromptSpec
from tool_registry.registry import Registry
from tool_registry.resources import ResourceSpec
from tool_registry.spec import ToolSpec

BUNDLED: tuple[ModuleType, ...] = (
    spaces,
    habits,
    todo,
    notes,
    journal,
    mood,
    calendar,
    contacts,
    me,
    users,
)


def bundled_tools() -> list[ToolSpec[Any, Any]]:
    return [spec for module in BUNDLED for spec in module.TOOLS]


def bundled_resources() -> list[ResourceSpec]:
    return [spec for module in BUNDLED for spec in getattr(module, "RESOURCES", ())]


# Prompts that draw on several modules live in `reviews` (each names the module it belongs to).
PROMPT_SOURCES: tuple[ModuleType, ...] = (*BUNDLED, reviews)


def bundled_prompts() -> list[PromptSpec]:
    return [spec for module in PROMPT_SOURCES for spec in getattr(module, "PROMPTS", ())]


def build_registry(extra: Iterable[ToolSpec[Any, Any]] = ()) -> Registry:
    """A fresh registry with every bundled module (plus `extra` tools, e.g. from a plugin)."""
    return Registry(
        [*bundled_tools(), *extra], resources=bundled_resources(), prompts=bundled_prompts()
    )
