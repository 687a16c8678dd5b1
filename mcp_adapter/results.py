"""Outcomes as MCP results: structured content plus JSON text, clear error texts, the request
`_meta` keys Mana reads and writes, protocol errors."""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from typing import Any

import mcp_types as types
import orjson

from tool_registry.client_channel import Attachment
from tool_registry.context import (
    InvalidIdempotencyKey,
    idempotency_key_problem,
)
from tool_registry.pipeline import FieldError, Outcome, OutcomeError

META_REQUEST_ID = "mana/requestId"
META_SPACE_ID = "mana/spaceId"
META_ERROR = "mana/error"
META_REPLAYED = "mana/replayed"
META_IDEMPOTENCY_KEY = "mana/idempotencyKey"


_PLAIN_FIRST_WORD = re.compile(r"[a-z]+(?![\w.\-])")


def sentence(text: str) -> str:
    """`text` with a capital first letter when it starts with a plain lower-case word; a tool
    name (`habits.delete`), a field (`dueDate`) or an id at the start is kept exactly."""
    return text[:1].upper() + text[1:] if _PLAIN_FIRST_WORD.match(text) else text


def error_text(outcome: Outcome) -> str:
    """The clear, client-facing text of a failed outcome."""
    err = outcome.error or OutcomeError(reason=outcome.reason or "error", message="call failed")
    if err.reason == "unknown-tool":
        return (
            f"Unknown tool {outcome.tool!r}. Call tools/list to see the tools available in this "
            "space."
        )
    if err.reason == "invalid-input" and err.fields:
        detail = "; ".join(f"{f.field}: {f.message}" for f in err.fields)
        return f"Invalid input for {outcome.tool}: {detail}"
    text = sentence(err.message)
    if outcome.status == "denied" and outcome.reminder and outcome.reminder not in text:
        text += f" Reminder: {outcome.reminder}"
    if outcome.status == "error" and outcome.request_id not in text:
        text += f" (request id {outcome.request_id})"
    return text


def _text_block(text: str) -> types.TextContent:
    return types.TextContent.model_construct(type="text", text=text)


def attachment_block(attachment: Attachment) -> types.ContentBlock:
    """An attachment as its MCP content block: image and audio as base64 data with their MIME
    type, a resource as an embedded resource (text, or its bytes as a base64 blob)."""
    meta = dict(attachment.meta) or None
    if attachment.kind in ("image", "audio"):
        assert attachment.data is not None  # Attachment checks it
        data = base64.b64encode(attachment.data).decode("ascii")
        if attachment.kind == "image":
            return types.ImageContent(data=data, mime_type=attachment.mime_type, meta=meta)
        return types.AudioContent(data=data, mime_type=attachment.mime_type, meta=meta)
    assert attachment.uri is not None
    contents: types.TextResourceContents | types.BlobResourceContents
    if attachment.text is not None:
        contents = types.TextResourceContents(
            uri=attachment.uri, mime_type=attachment.mime_type, text=attachment.text
        )
    else:
        assert attachment.data is not None
        contents = types.BlobResourceContents(
            uri=attachment.uri,
            mime_type=attachment.mime_type,
            blob=base64.b64encode(attachment.data).decode("ascii"),
        )
    return types.EmbeddedResource(resource=contents, meta=meta)


def outcome_result(outcome: Outcome) -> types.CallToolResult:
    """An MCP tool result: structuredContent + JSON text on success, isError + text otherwise.
    What the tool attached (images, audio, embedded resources) follows the JSON text block (and
    the reminder), in the order attached. Built with `model_construct`: every value comes from a
    validated `Outcome`, and the SDK validates the result again when it serialises it."""
    meta: dict[str, Any] = {META_REQUEST_ID: outcome.request_id}
    if outcome.space_id:
        meta[META_SPACE_ID] = outcome.space_id
    if outcome.replayed:
        meta[META_REPLAYED] = True
    if outcome.ok and outcome.result is not None:
        content: list[types.ContentBlock] = [_text_block(orjson.dumps(outcome.result).decode())]
        if outcome.reminder:
            content.append(_text_block(f"Reminder: {outcome.reminder}"))
        content.extend(attachment_block(a) for a in outcome.attachments)
        return types.CallToolResult.model_construct(
            content=content, structured_content=outcome.result, is_error=False, meta=meta
        )
    err = outcome.error
    meta[META_ERROR] = {
        "status": outcome.status,
        "reason": err.reason if err else outcome.reason,
        "fields": [f.model_dump() for f in err.fields] if err else [],
    }
    if outcome.reminder:
        meta[META_ERROR]["reminder"] = outcome.reminder
    return types.CallToolResult.model_construct(
        content=[_text_block(error_text(outcome))], is_error=True, meta=meta
    )


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, list | tuple):
        return "an array"
    if isinstance(value, Mapping):
        return "an object"
    return type(value).__name__


def idempotency_key_of(meta: Mapping[str, Any] | None) -> str | None:
    """The idempotency key a `tools/call` carries in its `_meta`, None when it carries none.
    Raises `InvalidIdempotencyKey` unless the value is a string of 1-200 printable characters
    (an explicit null counts as a wrong value: a client that sends the key means to use one)."""
    if not isinstance(meta, Mapping) or META_IDEMPOTENCY_KEY not in meta:
        return None
    value = meta[META_IDEMPOTENCY_KEY]
    if not isinstance(value, str):
        raise InvalidIdempotencyKey(f"must be a string, got {_json_type(value)}")
    problem = idempotency_key_problem(value)
    if problem is not None:
        raise InvalidIdempotencyKey(problem)
    return value


def invalid_meta(tool: str, request_id: str, field_name: str, problem: str) -> Outcome:
    """A boundary check failed: the same invalid-input shape the pipeline gives bad arguments."""
    return Outcome(
        tool=tool,
        status="invalid-input",
        request_id=request_id,
        reason="invalid-input",
        error=OutcomeError(
            reason="invalid-input",
            message=f"{field_name} {problem}",
            fields=[FieldError(field=field_name, message=problem)],
        ),
    )


def plain_error(text: str, reason: str, request_id: str) -> types.CallToolResult:
    return types.CallToolResult(
        content=[types.TextContent(text=text)],
        is_error=True,
        meta={META_REQUEST_ID: request_id, META_ERROR: {"status": "error", "reason": reason}},
    )


def missing_capability_error(message: str, required: Mapping[str, Any] | None) -> Exception:
    """The 2026-07-28 error for a request (a tool call, a prompt) whose work needed a client
    capability the request did not declare: -32021 with `data.requiredCapabilities` (a
    `ClientCapabilities` object); over HTTP the SDK answers it with status 400."""
    from mcp.shared.exceptions import MCPError

    capabilities = types.ClientCapabilities.model_validate(dict(required or {}))
    data = types.MissingRequiredClientCapabilityErrorData(required_capabilities=capabilities)
    return MCPError(
        code=types.MISSING_REQUIRED_CLIENT_CAPABILITY,
        message=message,
        data=data.model_dump(by_alias=True, mode="json", exclude_none=True),
    )


def protocol_error(message: str, code: int = types.INVALID_REQUEST) -> Exception:
    from mcp.shared.exceptions import MCPError

    return MCPError(code=code, message=message)
