"""notes: placeholder, filled in by its module author."""

from __future__ import annotations

from typing import Any

from tool_registry.spec import ToolSpec

MODULE = "notes"

TOOLS: tuple[ToolSpec[Any, Any], ...] = ()
