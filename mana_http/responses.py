"""Small raw-ASGI responses for the guard (no Starlette objects on the hot path)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from starlette.types import Send

JSON = b"application/json"


async def send_json(
    send: Send,
    status: int,
    body: Any,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    payload = json.dumps(body, separators=(",", ":")).encode()
    raw = [(b"content-type", JSON), (b"content-length", str(len(payload)).encode())]
    raw.extend(headers or ())
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": payload})


def rpc_error(
    message: str,
    reason: str,
    code: int = -32600,
    *,
    request_id: str | int | None = None,
    data: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A JSON-RPC error body, the shape MCP clients expect from the endpoint: `id` is the
    refused request's id when it is known, else null; `data.reason` is the stable reason."""
    return {
        "jsonrpc": "2.0",
        "id": request_id,
        "error": {"code": code, "message": message, "data": {"reason": reason, **(data or {})}},
    }
