"""Agent loop: runs a model against tools from the registry or an MCP server."""
