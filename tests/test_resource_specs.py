"""Resource and prompt specs: declaration rules, the registry, the exported catalogs and the
pipeline's view path (scopes, membership, module allowlist, audit)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytest

from mana_cli.main import main
from mana_cli.runtime import build_runtime_registry
from tool_registry.access_scopes import READ_SCOPE, WRITE_SCOPE
from tool_registry.catalog import (
    PROMPTS_CATALOG,
    REGENERATE_COMMAND,
    RESOURCES_CATALOG,
    render_prompts_catalog,
    render_resources_catalog,
)
from tool_registry.context import CallContext
from tool_registry.prompts import PromptArgument, PromptMessage, PromptSpec
from tool_registry.registry import DuplicateToolError, Registry
from tool_registry.resources import ResourceBody, ResourceSpec
from tool_registry.spec import ToolSpecError
from tool_registry.testing import ToolKit
from tool_registry.views import ViewContext, ViewError


async def _read(params: Mapping[str, str], ctx: ViewContext) -> list[ResourceBody]:
    return [ResourceBody(uri="mana://x", mime_type="text/plain", text=params.get("id", ""))]


async def _render(args: Mapping[str, str], ctx: ViewContext) -> list[PromptMessage]:
    return [PromptMessage(role="user", text=str(dict(args)))]


def _resource(**overrides: object) -> ResourceSpec:
    fields: dict[str, object] = {
        "name": "notes.thing",
        "title": "Thing",
        "description": "A thing for tests.",
        "module": "notes",
        "uri_template": "mana://things/{id}",
        "mime_type": "text/plain",
        "read": _read,
    }
    fields.update(overrides)
    return ResourceSpec(**fields)  # type: ignore[arg-type]


def test_resource_template_matches_its_uris_only() -> None:
    spec = _resource()
    assert spec.parameters == ("id",) and spec.is_template
    assert spec.match("mana://things/abc") == {"id": "abc"}
    assert spec.match("mana://things/a/b") is None
    assert spec.match("mana://other/abc") is None
    fixed = _resource(uri_template="mana://fixed")
    assert not fixed.is_template and fixed.match("mana://fixed") == {}


@pytest.mark.parametrize(
    "overrides",
    [
        {"name": "Notes.thing"},
        {"module": "habits"},
        {"uri_template": "https://example.com/{id}"},
        {"description": " "},
        {"complete": {"nope": _read}},
    ],
)
def test_bad_resource_declarations_are_refused(overrides: dict[str, object]) -> None:
    with pytest.raises(ToolSpecError):
        _resource(**overrides)


def test_bad_prompt_declarations_are_refused() -> None:
    with pytest.raises(ToolSpecError):
        PromptSpec("Weekly Review", "T", "D", "habits", (), _render)
    args = (PromptArgument("a", "x"), PromptArgument("a", "y"))
    with pytest.raises(ToolSpecError):
        PromptSpec("weekly-review", "T", "D", "habits", args, _render)


def test_prompt_arguments_are_checked() -> None:
    spec = PromptSpec(
        "p",
        "T",
        "D",
        "notes",
        (PromptArgument("a", "x", required=True), PromptArgument("b", "y")),
        _render,
    )
    assert spec.checked_arguments({"a": "1"}) == {"a": "1"}
    with pytest.raises(ViewError) as missing:
        spec.checked_arguments({"b": "2"})
    assert missing.value.status == "invalid-input" and "missing required arguments: a" in str(
        missing.value
    )
    with pytest.raises(ViewError) as unknown:
        spec.checked_arguments({"a": "1", "c": "3"})
    assert "unknown arguments: c" in str(unknown.value)


def test_registry_refuses_duplicate_resources_and_prompts() -> None:
    registry = Registry(resources=[_resource()])
    with pytest.raises(DuplicateToolError):
        registry.register_resource(_resource())
    with pytest.raises(DuplicateToolError, match="same URI"):
        registry.register_resource(_resource(name="notes.other"))
    registry.register_prompt(PromptSpec("p", "T", "D", "notes", (), _render))
    with pytest.raises(DuplicateToolError):
        registry.register_prompt(PromptSpec("p", "T", "D", "notes", (), _render))
    found = registry.resource_for("mana://things/n1")
    assert found is not None and found[0].name == "notes.thing" and found[1] == {"id": "n1"}


def test_bundled_resources_cover_notes_images_and_the_space() -> None:
    templates = {s.uri_template for s in build_runtime_registry().resources()}
    assert {"mana://notes/{id}", "mana://me/reference-images/{id}", "mana://space"} <= templates


def test_checked_in_resource_and_prompt_catalogs_match_the_registry() -> None:
    registry = build_runtime_registry()
    for path, expected in (
        (RESOURCES_CATALOG, render_resources_catalog(registry)),
        (PROMPTS_CATALOG, render_prompts_catalog(registry)),
    ):
        current = path.read_text(encoding="utf-8") if path.exists() else ""
        assert current == expected, (
            f"{path.name} is out of date with the registry; regenerate it with "
            f"`{REGENERATE_COMMAND}` and commit the result"
        )


# -- the pipeline's view path ------------------------------------------------------------------


async def _space_type(ctx: ViewContext) -> str:
    return ctx.tool.space.type


async def test_view_runs_in_the_callers_space_and_is_audited(mana_kit: ToolKit) -> None:
    alice = await mana_kit.user()
    family = await mana_kit.space(alice, "family")
    call = CallContext(user_id=alice.id, space=family.id, invoker="mcp")
    got = await mana_kit.pipeline.view("resource:notes.x", "notes", {"uri": "u"}, call, _space_type)
    assert got == "family"
    rows = await mana_kit.audit(tool="resource:notes.x")
    assert [(r["outcome"], r["space_id"], r["invoker"]) for r in rows] == [("ok", family.id, "mcp")]


async def test_view_refuses_non_members_scopes_and_disallowed_modules(mana_kit: ToolKit) -> None:
    alice, bob = await mana_kit.user(), await mana_kit.user()
    family = await mana_kit.space(alice, "family")
    view = mana_kit.pipeline.view

    with pytest.raises(ViewError) as outsider:
        await view("v", "notes", {}, CallContext(user_id=bob.id, space=family.id), _space_type)
    assert outsider.value.status == "denied" and outsider.value.reason == "not-a-member"

    write_only = CallContext(user_id=alice.id, space=family.id, scopes=frozenset({WRITE_SCOPE}))
    with pytest.raises(ViewError) as scoped:
        await view("v", "notes", {}, write_only, _space_type)
    assert scoped.value.reason == "insufficient-scope" and READ_SCOPE in str(scoped.value)
    read_only = CallContext(user_id=alice.id, space=family.id, scopes=frozenset({READ_SCOPE}))
    assert await view("v", "notes", {}, read_only, _space_type) == "family"

    with pytest.raises(ViewError) as intimate:
        await view("v", "journal", {}, CallContext(user_id=alice.id, space=family.id), _space_type)
    assert intimate.value.reason == "module-not-allowed"

    outcomes = [(r["outcome"], r["reason"]) for r in await mana_kit.audit(tool="v")]
    assert ("denied", "not-a-member") in outcomes
    assert ("denied", "insufficient-scope") in outcomes
    assert ("denied", "module-not-allowed") in outcomes


async def test_view_failure_is_an_error_with_the_request_id(mana_kit: ToolKit) -> None:
    alice = await mana_kit.user()

    async def broken(ctx: ViewContext) -> str:
        raise RuntimeError("secret detail")

    call = CallContext(user_id=alice.id)
    with pytest.raises(ViewError) as failed:
        await mana_kit.pipeline.view("v", "notes", {}, call, broken)
    assert failed.value.status == "error" and call.request_id in str(failed.value)
    assert "secret detail" not in str(failed.value)


def test_tools_export_writes_and_checks_the_resource_and_prompt_catalogs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tools = tmp_path / "tools.json"
    assert main(["tools", "export", "--output", str(tools)]) == 0
    registry = build_runtime_registry()
    assert (tmp_path / "resources.json").read_text() == render_resources_catalog(registry)
    assert (tmp_path / "prompts.json").read_text() == render_prompts_catalog(registry)
    assert main(["tools", "export", "--output", str(tools), "--check"]) == 0
    (tmp_path / "prompts.json").write_text("{}\n")
    capsys.readouterr()
    assert main(["tools", "export", "--output", str(tools), "--check"]) == 1
    err = capsys.readouterr().err
    assert "prompts.json is out of date" in err and "mana tools export" in err
