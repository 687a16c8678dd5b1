"""MCP resources through the real `mcp` client over the in-process HTTP server, in both protocol
eras: notes as markdown, reference images, the space overview, templates, space isolation,
and the same scope and module rules as tools."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from mcp import Client, MCPError
from mcp.types import ResourceTemplateReference

from mana_cli.demo import DEMO_EMAIL
from mana_http.testing import McpTestServer
from mcp_server import stdio_adapter
from policy.allowlist import DestructiveAllowlist
from tests.mcp.support import (
    BRAND_IMAGES,
    MODES,
    PERSONAL_IMAGES,
    Mode,
    ServerProcess,
    http_client,
    seeded_world,
)
from tool_registry.membership import require_member
from tool_registry.modules.me import REFERENCE_IMAGES
from tool_registry.store.accounts import Space, User
from tool_registry.store.records import ScopedStore
from tool_registry.testing import ToolKit


def _text(result: object) -> str:
    contents = result.contents  # type: ignore[attr-defined]
    assert len(contents) >= 1
    return str(contents[0].text)


async def _reference_image(
    kit: ToolKit, user: User, space: Space, image_id: str, *, ai: bool
) -> None:
    """A reference photo stored like the app does (there is no tool that creates one)."""
    access = await require_member(kit.accounts, user.id, space.id)
    async with kit.db.transaction() as tx:
        store = ScopedStore(
            tx, user_id=user.id, access=access, clock=kit.pipeline.clock, writable=True
        )
        data = {
            "mediaId": f"media-{image_id}",
            "kind": "face",
            "label": f"Photo {image_id}",
            "publicUrl": f"https://media.example/{image_id}.png",
            "width": 640,
            "height": 480,
            "usage": {"aiReference": ai},
        }
        await store.insert(REFERENCE_IMAGES, data, record_id=image_id)


@pytest.mark.parametrize("mode", MODES)
async def test_notes_are_markdown_resources_of_the_active_space(
    mana_kit: ToolKit, mana_mcp: McpTestServer, mode: Mode
) -> None:
    alice, bob = await mana_kit.user(), await mana_kit.user()
    family = await mana_kit.space(alice, "family")
    mine = await mana_kit.call_ok(
        alice, family, "notes.create", {"title": "Groceries", "body": "Milk", "tags": ["home"]}
    )
    other = await mana_kit.call_ok(bob, None, "notes.create", {"title": "Bob's secret"})

    async with mana_mcp.client(alice, family, mode=mode) as client:
        listed = (await client.list_resources()).resources
        uris = {str(r.uri) for r in listed}
        assert f"mana://notes/{mine['id']}" in uris and "mana://space" in uris
        assert not any(other["id"] in u for u in uris)
        note = next(r for r in listed if str(r.uri) == f"mana://notes/{mine['id']}")
        assert note.title == "Groceries" and note.mime_type == "text/markdown"

        read = await client.read_resource(f"mana://notes/{mine['id']}")
        assert read.contents[0].mime_type == "text/markdown"
        assert _text(read) == "# Groceries\n\nMilk\n\nTags: home\n"

        templates = {
            t.uri_template for t in (await client.list_resource_templates()).resource_templates
        }
        assert "mana://notes/{id}" in templates

        # another space's note id is not readable here, and says not found (no leak)
        with pytest.raises(MCPError) as hidden:
            await client.read_resource(f"mana://notes/{other['id']}")
        assert "No note with id" in hidden.value.error.message
        # "resource not found": -32002 in the handshake era, -32602 in 2026-07-28
        assert hidden.value.error.code == (-32002 if mode == "legacy" else -32602)
        with pytest.raises(MCPError):
            await client.read_resource("mana://nothing/here")

    rows = await mana_kit.audit(tool="resource:notes.note")
    assert {(r["outcome"], r["space_id"]) for r in rows} >= {
        ("ok", family.id),
        ("invalid-input", family.id),
    }


@pytest.mark.parametrize("mode", MODES)
async def test_space_overview_lists_modules_counts_and_the_destructive_allowlist(
    mana_kit: ToolKit, mana_mcp: McpTestServer, mode: Mode
) -> None:
    alice = await mana_kit.user()
    family = await mana_kit.space(alice, "family", name="Home")
    for title in ("a", "b"):
        await mana_kit.call_ok(alice, family, "notes.create", {"title": title})
    allowlist = DestructiveAllowlist(mana_kit.db, mana_kit.registry, accounts=mana_kit.accounts)
    await allowlist.allow(alice.id, family.id, ["notes.delete"], acknowledge=True)
    async with mana_mcp.client(alice, family, mode=mode) as client:
        overview = json.loads(_text(await client.read_resource("mana://space")))
    assert overview["id"] == family.id and overview["name"] == "Home"
    assert overview["type"] == "family" and overview["role"] == "owner"
    assert "notes" in overview["modules"] and "journal" not in overview["modules"]
    assert overview["counts"]["notes"] == 2 and "habits" not in overview["counts"]
    assert overview["destructiveAllowlist"] == ["notes.delete"]


@pytest.mark.parametrize("mode", MODES)
async def test_reference_images_opted_in_for_ai_are_image_resources(
    mana_kit: ToolKit, mana_mcp: McpTestServer, mode: Mode
) -> None:
    alice = await mana_kit.user()
    personal = await mana_kit.personal(alice)
    family = await mana_kit.space(alice, "family")
    await _reference_image(mana_kit, alice, personal, "img_ok", ai=True)
    await _reference_image(mana_kit, alice, personal, "img_private", ai=False)
    await _reference_image(mana_kit, alice, family, "img_family", ai=True)

    async with mana_mcp.client(alice, personal, mode=mode) as client:
        listed = [r for r in (await client.list_resources()).resources if "reference" in str(r.uri)]
        assert [str(r.uri) for r in listed] == ["mana://me/reference-images/img_ok"]
        assert listed[0].mime_type == "image/png"
        read = await client.read_resource("mana://me/reference-images/img_ok")
        link, facts = read.contents
        assert link.mime_type == "text/uri-list"
        assert link.text.strip() == "https://media.example/img_ok.png"  # type: ignore[union-attr]
        described = json.loads(facts.text)  # type: ignore[union-attr]
        assert described["mimeType"] == "image/png" and described["width"] == 640
        for hidden in ("img_private", "img_family"):
            with pytest.raises(MCPError):
                await client.read_resource(f"mana://me/reference-images/{hidden}")


@pytest.mark.parametrize("mode", MODES)
async def test_resources_follow_membership_and_the_space_type(
    mana_kit: ToolKit, mana_mcp: McpTestServer, mode: Mode
) -> None:
    alice, bob, carol = await mana_kit.user(), await mana_kit.user(), await mana_kit.user()
    family = await mana_kit.space(alice, "family")
    await mana_kit.add_member(family, bob)
    note = await mana_kit.call_ok(alice, family, "notes.create", {"title": "Shared"})
    uri = f"mana://notes/{note['id']}"
    async with mana_mcp.client(bob, family, mode=mode) as client:
        assert "Shared" in _text(await client.read_resource(uri))
    # carol is no member: her own space does not hold the note, and the family is refused
    async with mana_mcp.client(carol, None, mode=mode) as client:
        with pytest.raises(MCPError):
            await client.read_resource(uri)
    async with mana_mcp.http(carol, family) as http:
        refused = await http.post(
            "/mcp",
            json={"jsonrpc": "2.0", "id": 1, "method": "resources/list"},
            headers={"Accept": "application/json, text/event-stream"},
        )
    assert refused.status_code == 403


@pytest.mark.parametrize("mode", MODES)
async def test_the_stdio_adapter_serves_resources_prompts_and_completions(
    mana_kit: ToolKit, mode: Mode
) -> None:
    """The stdio caller source (one user, one space ref) reaches the same views in-process."""
    alice = await mana_kit.user()
    family = await mana_kit.space(alice, "family")
    note = await mana_kit.call_ok(alice, family, "notes.create", {"title": "Picnic"})
    adapter = stdio_adapter(mana_kit.pipeline, user_id=alice.id, space=family.slug)
    async with Client(adapter.server, mode=mode) as client:
        caps = client.server_capabilities
        assert caps is not None and caps.resources is not None and caps.prompts is not None
        assert caps.completions is not None
        read = await client.read_resource(f"mana://notes/{note['id']}")
        assert _text(read).startswith("# Picnic")
        assert [p.name for p in (await client.list_prompts()).prompts] == ["plan-my-day"]
        ids = await client.complete(
            ResourceTemplateReference(uri="mana://notes/{id}"), {"name": "id", "value": "pic"}
        )
        assert ids.completion.values == [note["id"]]


def test_a_real_http_server_serves_the_demo_spaces_resources(
    tmp_path: Path, database_backend: str, request: pytest.FixtureRequest
) -> None:
    """`mana serve --http` in its own process: the demo user's reference photos are image
    resources of the space each request names, and the brand space offers no habits prompt."""
    with seeded_world(request, database_backend, tmp_path) as world:
        proc = ServerProcess(world.installation)
        try:
            proc.wait_ready()
            token = world.token(world.demo_id, email=DEMO_EMAIL)

            async def look(space: str, mode: Mode) -> tuple[set[str], list[str]]:
                async with http_client(proc.mcp_url, token, space, mode=mode) as (client, _):
                    resources = (await client.list_resources()).resources
                    prompts = [p.name for p in (await client.list_prompts()).prompts]
                images = {
                    str(r.uri).rsplit("/", 1)[1] for r in resources if "reference" in str(r.uri)
                }
                return images, prompts

            for mode in MODES:
                personal = asyncio.run(look(world.personal_id, mode))
                brand = asyncio.run(look(world.brand_id, mode))
                assert personal[0] == PERSONAL_IMAGES and "weekly-review" in personal[1]
                assert brand[0] == BRAND_IMAGES and brand[1] == ["plan-my-day"]
        finally:
            proc.stop()
