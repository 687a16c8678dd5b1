"""The MCP adapter's parts (callers, tool catalog, results, tool and view handlers, stdio);
`mcp_server` wires them into one server."""
