"""Shared test configuration. The `mana_kit` fixture comes from the tool_registry plugin."""

from tool_registry.logging import configure_logging

configure_logging("WARNING", json=True)
