"""`McpChannel` on a stand-in request context: what the client declared decides what can be
asked (URL-only elicitation is not a form), and a notification to a client whose stream is
already gone is dropped without failing the call."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, cast

import anyio
import mcp_types as types
import pytest
from mcp.server import ServerRequestContext

from mcp_adapter.channel import McpChannel
from tool_registry.client_channel import ClientCannotAsk


@dataclass
class GoneSession:
    """A session whose client disconnected: every send fails like a closed stream."""

    client_capabilities: types.ClientCapabilities | None
    sent: list[Any] = field(default_factory=list)

    async def report_progress(self, *args: Any) -> None:
        raise anyio.ClosedResourceError

    async def send_notification(self, *args: Any, **kwargs: Any) -> None:
        raise anyio.BrokenResourceError

    async def send_request(self, *args: Any, **kwargs: Any) -> Any:
        self.sent.append(args)
        raise AssertionError("nothing may be asked")


def channel(caps: types.ClientCapabilities | None) -> tuple[McpChannel, GoneSession]:
    session = GoneSession(caps)
    ctx = cast(
        ServerRequestContext[Any, Any],
        type(
            "Ctx",
            (),
            {"session": session, "protocol_version": "2025-11-25", "meta": None, "request_id": 7},
        )(),
    )
    return McpChannel(ctx), session


async def test_notifications_to_a_gone_client_are_dropped() -> None:
    chan, _ = channel(None)
    await chan.progress(1, 2, "half")
    await chan.log("warning", "still here")


def test_what_the_client_declared_decides_what_can_be_asked() -> None:
    form = types.ClientCapabilities(elicitation=types.ElicitationCapability())
    url_only = types.ClientCapabilities(
        elicitation=types.ElicitationCapability(url=types.UrlElicitationCapability())
    )
    sampling = types.ClientCapabilities(sampling=types.SamplingCapability())
    assert channel(form)[0].can_elicit and not channel(form)[0].can_sample
    assert not channel(url_only)[0].can_elicit
    assert channel(sampling)[0].can_sample and not channel(None)[0].can_elicit


async def test_a_url_only_client_is_not_sent_a_form() -> None:
    url_only = types.ClientCapabilities(
        elicitation=types.ElicitationCapability(url=types.UrlElicitationCapability())
    )
    chan, session = channel(url_only)
    with pytest.raises(ClientCannotAsk, match="form mode"):
        await chan.elicit("k", "Sure?", {"type": "object", "properties": {}})
    assert session.sent == []
