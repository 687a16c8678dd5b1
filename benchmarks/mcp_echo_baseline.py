#!/usr/bin/env python3
"""Baseline for the MCP benchmarks: a bare `mcp` low-level server with one `echo` tool (no auth,
no store, no audit), served like ours (stdio, or Streamable HTTP under uvicorn with
loop=asyncio, http=h11, access log off, stateful sessions with SSE responses).

    python benchmarks/mcp_echo_baseline.py stdio
    python benchmarks/mcp_echo_baseline.py http PORT      # 127.0.0.1 only

Exits by itself after MCP_BENCH_MAX_SECONDS (default 600).
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

import mcp_types as types
from mcp.server import Server, ServerRequestContext
from mcp.shared.exceptions import MCPError

ECHO = types.Tool(
    name="echo",
    description="Echo the given text back.",
    input_schema={
        "type": "object",
        "properties": {"text": {"type": "string"}},
        "required": ["text"],
    },
    output_schema={
        "type": "object",
        "properties": {"text": {"type": "string"}},
        "required": ["text"],
    },
    annotations=types.ToolAnnotations(
        read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=False
    ),
)


async def list_tools(
    ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams | None
) -> types.ListToolsResult:
    return types.ListToolsResult(tools=[ECHO])


async def call_tool(
    ctx: ServerRequestContext[Any, Any], params: types.CallToolRequestParams
) -> types.CallToolResult:
    if params.name != "echo":
        raise MCPError(code=types.INVALID_PARAMS, message=f"Unknown tool: {params.name}")
    text = (params.arguments or {}).get("text")
    if not isinstance(text, str):
        return types.CallToolResult(
            content=[types.TextContent(text="'text' must be a string")], is_error=True
        )
    return types.CallToolResult(
        content=[types.TextContent(text=text)], structured_content={"text": text}
    )


def build_server() -> Server[Any]:
    return Server(
        "bench-echo",
        version="0",
        on_list_tools=list_tools,
        on_call_tool=call_tool,
        get_tool_input_schema=lambda name: ECHO.input_schema if name == "echo" else None,
    )


def main(argv: list[str]) -> None:
    signal.alarm(int(os.environ.get("MCP_BENCH_MAX_SECONDS", "600")))
    server = build_server()
    if argv[:1] == ["stdio"]:
        import anyio
        from mcp.server.stdio import stdio_server

        async def run() -> None:
            async with stdio_server() as (read, write):
                await server.run(read, write, server.create_initialization_options())

        anyio.run(run)
    elif argv[:1] == ["http"] and len(argv) == 2:
        import uvicorn

        app = server.streamable_http_app()
        uvicorn.run(
            app,
            host="127.0.0.1",
            port=int(argv[1]),
            log_level="warning",
            access_log=False,
            loop="asyncio",
            http="h11",
        )
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
