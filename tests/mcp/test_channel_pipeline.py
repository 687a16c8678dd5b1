"""A question the client cannot answer, as the pipeline sees it (both backends): a handler that
lets `ClientCannotAsk` escape ends as an `error` outcome `client-cannot-ask` with the capability
it lacked (for the MCP adapter, never in the public body), audited like any call; a handler
that catches it does without; and `McpChannel` names the capability each kind of question
needs and refuses a batch with repeated keys before asking anything."""

from __future__ import annotations

from typing import Any, cast

import mcp_types as types
import pytest
from mcp.server import ServerRequestContext

from mcp_adapter.channel import McpChannel
from tests.mcp.channel_tools import TOOLS
from tool_registry.client_channel import (
    NO_CHANNEL,
    ClientCannotAsk,
    ElicitQuestion,
    RootsQuestion,
)
from tool_registry.context import CallContext
from tool_registry.modules import build_registry
from tool_registry.pipeline import CLIENT_CANNOT_ASK
from tool_registry.testing import tool_kit


async def test_a_handler_that_needs_an_answer_ends_as_client_cannot_ask(
    database_target: str,
) -> None:
    registry = build_registry()
    for spec in TOOLS:
        registry.register(spec)
    async with tool_kit(database_target, registry=registry) as kit:
        user = await kit.user()
        call = CallContext(user_id=user.id, space=None, invoker="mcp", channel=NO_CHANNEL)
        outcome = await kit.pipeline.invoke("chantest.needSample", {}, call)
        assert (outcome.status, outcome.reason) == ("error", CLIENT_CANNOT_ASK)
        assert outcome.error is not None
        assert outcome.error.message == (
            "chantest.needSample needs to ask its client, and this call has no client model to ask"
        )
        assert outcome.required_capabilities is None  # no client at all: nothing to declare
        assert "required_capabilities" not in str(outcome.public())
        # a handler that catches the refusal does without it
        refused = await kit.pipeline.invoke(
            "chantest.sample", {}, CallContext(user_id=user.id, space=None, invoker="mcp")
        )
        assert refused.ok and refused.result is not None and refused.result["refused"]
        await kit.pipeline.audit.flush()
        rows = await kit.audit(tool="chantest.needSample")
        assert [(r["outcome"], r["reason"]) for r in rows] == [("error", CLIENT_CANNOT_ASK)]


class Session:
    def __init__(self, caps: types.ClientCapabilities) -> None:
        self.client_capabilities = caps
        self.can_send_request = True

    async def send_request(self, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("nothing may be asked")


def _channel(caps: types.ClientCapabilities, version: str = "2025-11-25") -> McpChannel:
    attrs = {"session": Session(caps), "protocol_version": version, "meta": None, "request_id": 1}
    return McpChannel(cast(ServerRequestContext[Any, Any], type("Ctx", (), attrs)()))


@pytest.mark.parametrize("version", ["2025-11-25", "2026-07-28"])
async def test_each_question_names_the_capability_it_needs(version: str) -> None:
    nothing = _channel(types.ClientCapabilities(), version)
    expected: list[tuple[Any, dict[str, Any]]] = [
        (nothing.elicit("k", "Sure?", {"type": "object"}), {"elicitation": {"form": {}}}),
        (nothing.sample("k", [], max_tokens=5), {"sampling": {}}),
        (nothing.roots(), {"roots": {}}),
    ]
    for pending, required in expected:
        with pytest.raises(ClientCannotAsk) as caught:
            await pending
        assert caught.value.required == required
    roots_only = _channel(types.ClientCapabilities(roots=types.RootsCapability()), version)
    assert roots_only.can_list_roots and not roots_only.can_sample
    # a batch is refused whole, before anything is asked, when one question cannot be answered
    with pytest.raises(ClientCannotAsk) as caught:
        await roots_only.ask_all([RootsQuestion(), ElicitQuestion("e", "Name?", {})])
    assert caught.value.required == {"elicitation": {"form": {}}}
    assert roots_only.rounds.asked == {}


async def test_questions_asked_together_need_distinct_keys() -> None:
    chan = _channel(types.ClientCapabilities(roots=types.RootsCapability()), "2026-07-28")
    with pytest.raises(ValueError, match="distinct keys"):
        await chan.ask_all([RootsQuestion("r"), RootsQuestion("r")])
    with pytest.raises(ValueError, match="distinct keys"):
        await chan.ask_all([])
