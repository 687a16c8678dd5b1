"""`me.generateWithReference` through the in-process HTTP server with the real `mcp` client, in
both eras: progress while it works, and image content beside the structured result when the
image service returns the bytes (none when it gives only a URL)."""

from __future__ import annotations

import base64

import mcp_types as types
import pytest

from mana_http.testing import McpTestServer
from tests.mcp.channel_tools import PNG
from tests.mcp.support import MODES, Mode
from tool_registry.membership import require_member
from tool_registry.modules.me import (
    IMAGE_GENERATOR,
    REFERENCE_IMAGES,
    GeneratedImage,
    ReferenceImage,
)
from tool_registry.store.accounts import User
from tool_registry.store.records import ScopedStore
from tool_registry.testing import ToolKit


class FakeGenerator:
    """An image service that returns the bytes with the URL, or only the URL."""

    def __init__(self, *, with_bytes: bool) -> None:
        self.with_bytes = with_bytes
        self.calls = 0

    async def generate(
        self, prompt: str, references: list[ReferenceImage], size: str
    ) -> GeneratedImage:
        self.calls += 1
        if self.with_bytes:
            return GeneratedImage(
                url="https://img.test/1.png", width=1, height=1, data=PNG, mime_type="image/png"
            )
        return GeneratedImage(url="https://img.test/1.png", width=1, height=1)


async def _reference_photo(kit: ToolKit, user: User) -> str:
    """A reference photo opted in for AI in the user's personal space, stored like the app."""
    access = await require_member(kit.accounts, user.id, None)
    async with kit.db.transaction() as tx:
        store = ScopedStore(
            tx, user_id=user.id, access=access, clock=kit.pipeline.clock, writable=True
        )
        data = {
            "mediaId": "media-face",
            "kind": "face",
            "publicUrl": "https://media.example/face.png",
            "width": 640,
            "height": 480,
            "usage": {"aiReference": True},
        }
        record = await store.insert(REFERENCE_IMAGES, data)
    return record.id


async def _generate(
    mcp: McpTestServer, user: User, mode: Mode, ref: str
) -> tuple[types.CallToolResult, list[tuple[float, float | None, str | None]]]:
    reported: list[tuple[float, float | None, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        reported.append((progress, total, message))

    async with mcp.client(user, mode=mode) as client:
        result = await client.call_tool(
            "me.generateWithReference",
            {"prompt": "me on a bike", "referenceImageIds": [ref]},
            progress_callback=on_progress,
        )
    return result, reported


@pytest.mark.parametrize("mode", MODES)
async def test_generated_image_comes_as_image_content_with_progress(
    mana_kit: ToolKit, mana_mcp: McpTestServer, mode: Mode
) -> None:
    generator = FakeGenerator(with_bytes=True)
    mana_kit.pipeline.backends.set(IMAGE_GENERATOR, generator)
    user = await mana_kit.user()
    ref = await _reference_photo(mana_kit, user)
    result, reported = await _generate(mana_mcp, user, mode, ref)
    assert not result.is_error, result.content
    assert generator.calls == 1
    assert result.structured_content is not None
    assert result.structured_content["url"] == "https://img.test/1.png"
    assert not {"data", "mimeType"} & set(result.structured_content)
    text, image = result.content
    assert isinstance(text, types.TextContent)
    assert isinstance(image, types.ImageContent) and image.mime_type == "image/png"
    assert base64.b64decode(image.data) == PNG
    assert [(p, t) for p, t, _ in reported] == [(0, 3), (1, 3), (2, 3), (3, 3)]
    stored = await mana_kit.db.read(
        lambda c: c.execute(
            "SELECT data FROM records WHERE collection = ?", ("generated_images",)
        ).fetchone()
    )
    assert "iVBOR" not in str(stored[0])  # the bytes are not stored


@pytest.mark.parametrize("mode", MODES)
async def test_a_url_only_image_service_gives_no_image_block(
    mana_kit: ToolKit, mana_mcp: McpTestServer, mode: Mode
) -> None:
    mana_kit.pipeline.backends.set(IMAGE_GENERATOR, FakeGenerator(with_bytes=False))
    user = await mana_kit.user()
    ref = await _reference_photo(mana_kit, user)
    result, reported = await _generate(mana_mcp, user, mode, ref)
    assert not result.is_error, result.content
    assert [type(b) for b in result.content] == [types.TextContent]
    assert len(reported) == 4
