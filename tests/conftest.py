"""Shared test configuration. The `mana_kit` fixture comes from the tool_registry plugin."""
