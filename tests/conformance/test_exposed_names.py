"""The rule for specs shown to MCP clients under another name than their registry name: only
test fixtures may (`exposed_name`, a non-`mana://` resource URI), the name is a valid MCP name,
lookups find a fixture by either name, no exposed name shadows another spec, and fixtures never
reach the exported catalogs."""

from __future__ import annotations

from collections.abc import Mapping

import pytest
from pydantic import BaseModel

from tool_registry.context import ToolContext
from tool_registry.prompts import PromptMessage, PromptSpec
from tool_registry.registry import DuplicateToolError, Registry
from tool_registry.resources import ResourceBody, ResourceSpec
from tool_registry.spec import ToolSpec, ToolSpecError
from tool_registry.views import ViewContext


class _Empty(BaseModel):
    pass


async def _handler(args: _Empty, ctx: ToolContext) -> _Empty:
    return _Empty()


async def _render(args: Mapping[str, str], ctx: ViewContext) -> list[PromptMessage]:
    return [PromptMessage(role="user", text="hi")]


async def _read(params: Mapping[str, str], ctx: ViewContext) -> list[ResourceBody]:
    return [ResourceBody(uri="test://x", mime_type="text/plain", text="x")]


def _tool(name: str = "conformance.simpleText", **extra: object) -> ToolSpec[_Empty, _Empty]:
    return ToolSpec(
        name=name,
        title="Simple text",
        description="A fixture.",
        module=name.split(".")[0],
        scope="user-space",
        policy_hint="read",
        input=_Empty,
        output=_Empty,
        handler=_handler,
        **extra,  # type: ignore[arg-type]
    )


def _prompt(**extra: object) -> PromptSpec:
    return PromptSpec(
        name="simple-prompt",
        title="Simple",
        description="A fixture prompt.",
        module="conformance",
        arguments=(),
        render=_render,
        **extra,  # type: ignore[arg-type]
    )


def test_only_a_fixture_may_be_exposed_under_another_name() -> None:
    with pytest.raises(ToolSpecError, match="reserved for test fixtures"):
        _tool(exposed_name="test_simple_text")
    with pytest.raises(ToolSpecError, match="reserved for test fixtures"):
        _prompt(exposed_name="test_simple_prompt")
    assert _tool(fixture=True, exposed_name="test_simple_text").mcp_name == "test_simple_text"
    assert _tool().mcp_name == "conformance.simpleText"
    assert _prompt(fixture=True, exposed_name="test_simple_prompt").mcp_name == (
        "test_simple_prompt"
    )


@pytest.mark.parametrize("bad", ["", "has space", "x" * 129, "slash/name", "ünï"])
def test_an_exposed_name_must_be_a_valid_mcp_name(bad: str) -> None:
    with pytest.raises(ToolSpecError, match="exposed_name"):
        _tool(fixture=True, exposed_name=bad)


def test_only_a_fixture_resource_may_leave_the_mana_scheme() -> None:
    fields: dict[str, object] = {
        "name": "conformance.staticText",
        "title": "Static text",
        "description": "A fixture resource.",
        "module": "conformance",
        "uri_template": "test://static-text",
        "mime_type": "text/plain",
        "read": _read,
    }
    with pytest.raises(ToolSpecError, match="must start with mana://"):
        ResourceSpec(**fields)  # type: ignore[arg-type]
    with pytest.raises(ToolSpecError, match="not an absolute URI"):
        ResourceSpec(**{**fields, "uri_template": "static-text", "fixture": True})  # type: ignore[arg-type]
    spec = ResourceSpec(**{**fields, "fixture": True})  # type: ignore[arg-type]
    assert spec.match("test://static-text") == {}


def test_lookups_find_a_fixture_by_either_name_and_exports_leave_it_out() -> None:
    fixture = _tool(fixture=True, exposed_name="test_simple_text")
    prompt = _prompt(fixture=True, exposed_name="test_simple_prompt")
    registry = Registry([fixture, _tool("habits.list")], prompts=[prompt])
    assert registry.get("test_simple_text") is fixture
    assert registry.get("conformance.simpleText") is fixture
    assert "test_simple_text" in registry
    assert registry.prompt("test_simple_prompt") is prompt
    assert registry.prompt("simple-prompt") is prompt
    assert [t["name"] for t in registry.export()["tools"]] == ["habits.list"]
    assert registry.export_prompts() == {"prompts": []}


def test_an_exposed_name_cannot_shadow_another_spec() -> None:
    registry = Registry([_tool("habits.list")])
    with pytest.raises(DuplicateToolError, match="already in use"):
        registry.register(_tool(fixture=True, exposed_name="habits.list"))
    registry.register(_tool(fixture=True, exposed_name="test_simple_text"))
    with pytest.raises(DuplicateToolError, match="already in use"):
        registry.register(_tool("conformance.other", fixture=True, exposed_name="test_simple_text"))
    with pytest.raises(DuplicateToolError, match="declared twice"):
        registry.register(_tool("habits.list"))
