"""Tool-name mapping (a bijection onto Anthropic's characters) and the scripted client."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent_loop.llm import LLMRequest, Message, ScriptExhausted
from agent_loop.names import WIRE_NAME, ToolNameMap, decode_tool_name, encode_tool_name
from agent_loop.scripted import ScriptedClient
from tool_registry.errors import ValidationFailed
from tool_registry.modules import build_registry

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "agent-demo.json"


def test_registry_names_map_readably_and_back() -> None:
    for spec in build_registry():
        wire = encode_tool_name(spec.name)
        assert WIRE_NAME.match(wire), wire
        assert wire == spec.name.replace(".", "_")
        assert decode_tool_name(wire) == spec.name


@pytest.mark.parametrize(
    "name", ["a.b", "a_b", "a-b", "a._b", "a_.b", "x--y", "so/me tool", "ünï.cødé", "😀.x", ""]
)
def test_awkward_names_round_trip(name: str) -> None:
    assert decode_tool_name(encode_tool_name(name)) == name


@given(st.text(max_size=40))
def test_encoding_is_a_bijection(name: str) -> None:
    wire = encode_tool_name(name)
    assert all(c.isascii() and (c.isalnum() or c in "_-") for c in wire)
    assert decode_tool_name(wire) == name


@given(st.lists(st.text(min_size=1, max_size=90), min_size=1, max_size=8, unique=True))
def test_name_map_is_reversible_and_valid_even_for_long_names(names: list[str]) -> None:
    mapping = ToolNameMap(names)
    wires = [mapping.to_wire(n) for n in names]
    assert all(WIRE_NAME.match(w) for w in wires)
    assert len(set(wires)) == len(names)
    assert [mapping.from_wire(w) for w in wires] == names


def test_unknown_wire_names_pass_through() -> None:
    assert ToolNameMap().from_wire("made-up-") == "made-up-"


# -- scripted client ------------------------------------------------------------------------------


async def test_script_turns_are_replayed_in_order_and_requests_recorded() -> None:
    client = ScriptedClient(
        [
            {"text": "a", "tool_calls": [{"name": "x.y", "arguments": {"k": 1}}]},
            {"text": None, "usage": {"input_tokens": 5, "output_tokens": 2}},
        ]
    )
    first_request = LLMRequest(system="s", messages=(Message.user("hi"),))
    first = await client.complete(first_request)
    assert first.text == "a" and first.stop_reason == "tool_use"
    assert first.tool_calls[0].name == "x.y" and first.tool_calls[0].arguments == {"k": 1}
    second = await client.complete(first_request)
    assert second.text is None and second.tool_calls == () and second.stop_reason == "end_turn"
    assert second.usage.input_tokens == 5 and second.usage.output_tokens == 2
    assert client.requests == [first_request, first_request]
    with pytest.raises(ScriptExhausted, match="script has 2 turns"):
        await client.complete(first_request)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"text": "x"}, "must be a JSON list"),
        ([{"tool_calls": []}], "turn 0 text"),
        ([{"text": "x", "tool_call": []}], "turn 0 tool_call"),
        ([{"text": "x", "tool_calls": [{"arguments": {}}]}], "turn 0 tool_calls.0.name"),
        ([{"text": "x", "usage": {"input_tokens": -1}}], "usage.input_tokens"),
    ],
)
def test_bad_scripts_are_clear_errors(data: object, message: str) -> None:
    with pytest.raises(ValidationFailed, match=message):
        ScriptedClient.from_json(data)


def test_script_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ValidationFailed, match="cannot read script"):
        ScriptedClient.from_file(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("[{", encoding="utf-8")
    with pytest.raises(ValidationFailed, match="not valid JSON"):
        ScriptedClient.from_file(bad)


def test_the_shipped_example_script_is_valid() -> None:
    client = ScriptedClient.from_file(EXAMPLE)
    assert len(client.turns) == 3
    names = [c.name for t in client.turns for c in t.tool_calls]
    assert names == ["habits.list", "todo.list", "todo.create"]
    assert json.loads(EXAMPLE.read_text(encoding="utf-8"))[-1]["text"]
