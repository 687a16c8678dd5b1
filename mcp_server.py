"""MCP server: exposes the tool registry over stdio and Streamable HTTP (next issue)."""
