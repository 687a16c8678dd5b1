"""Me: the user's own reference photos (for AI image work) in the active space.

`me.listReferenceImages` is the model case for space filtering: opted-in (`usage.aiReference`),
not soft-deleted, active space only, no fallback to the personal space.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Annotated, Literal, Protocol, runtime_checkable

from pydantic import Field

from tool_registry.client_channel import Attachment
from tool_registry.context import BackendKey, ToolContext
from tool_registry.errors import ToolError
from tool_registry.models import RecordId, ToolInput, ToolOutput
from tool_registry.resources import ResourceBody, ResourceEntry, ResourceSpec
from tool_registry.spec import ToolSpec
from tool_registry.store.records import Filter, Record
from tool_registry.views import ViewContext, ViewError

MODULE = "me"
REFERENCE_IMAGES = "reference_images"
GENERATED_IMAGES = "generated_images"

ImageKind = Literal["face", "fullbody", "halfbody", "hands", "reference"]
PrimaryFor = Literal["avatar", "face-ref", "body-ref"]


class ReferenceImage(ToolOutput):
    id: str
    media_id: str
    kind: ImageKind
    label: str | None = None
    primary_for: PrimaryFor | None = None
    public_url: str
    thumbnail_url: str | None = None
    width: int
    height: int

    @classmethod
    def of(cls, rec: Record) -> ReferenceImage:
        d = rec.data
        return cls(
            id=rec.id,
            media_id=d["mediaId"],
            kind=d["kind"],
            label=d.get("label"),
            primary_for=d.get("primaryFor"),
            public_url=d["publicUrl"],
            thumbnail_url=d.get("thumbnailUrl"),
            width=d["width"],
            height=d["height"],
        )


# -- me.listReferenceImages ---------------------------------------------------------------------


class ListReferenceImagesInput(ToolInput):
    kind: ImageKind | None = Field(default=None, description="Only images of this kind.")


class ReferenceImageList(ToolOutput):
    images: list[ReferenceImage]


def _usable_filters(kind: str | None) -> list[Filter]:
    filters = [Filter("usage.aiReference", "eq", True)]
    if kind is not None:
        filters.append(Filter("kind", "eq", kind))
    return filters


async def list_reference_images(
    inp: ListReferenceImagesInput, ctx: ToolContext
) -> ReferenceImageList:
    records = await ctx.store.list(REFERENCE_IMAGES, filters=_usable_filters(inp.kind))
    return ReferenceImageList(images=[ReferenceImage.of(r) for r in records])


LIST_REFERENCE_IMAGES = ToolSpec(
    name="me.listReferenceImages",
    title="List my reference images",
    description=(
        "List the user's reference photos in the active space that they opted in for AI use "
        "(face, full body, half body, hands, other references), optionally of one kind. Use "
        "before generating images of the user. An empty list means no usable photos in this "
        "space; it never falls back to another space."
    ),
    module=MODULE,
    scope="user-space",
    policy_hint="read",
    input=ListReferenceImagesInput,
    output=ReferenceImageList,
    handler=list_reference_images,
)


# -- me.generateWithReference -------------------------------------------------------------------


class GeneratedImage(ToolOutput):
    """What an image service made: its URL and size, and optionally the image itself (`data`
    with its `mime_type`, e.g. when the service returns the bytes anyway). The bytes never
    enter a structured result or the database; `me.generateWithReference` attaches them to its
    MCP result as image content."""

    url: str
    width: int
    height: int
    data: bytes | None = Field(default=None, exclude=True, repr=False)
    mime_type: str | None = Field(default=None, exclude=True)


@runtime_checkable
class ImageGenerator(Protocol):
    """Backend contract for `image-generator`: turn a prompt plus reference photos into one
    image (its URL, optionally its bytes). Implementations call an outside service."""

    async def generate(
        self, prompt: str, references: list[ReferenceImage], size: str
    ) -> GeneratedImage: ...


IMAGE_GENERATOR: BackendKey[ImageGenerator] = BackendKey("image-generator", ImageGenerator)


class GenerateInput(ToolInput):
    prompt: Annotated[
        str, Field(min_length=3, max_length=2000, description="What to generate, in plain words.")
    ]
    reference_image_ids: Annotated[list[RecordId], Field(min_length=1, max_length=4)] = Field(
        description="Ids from me.listReferenceImages (1-4)."
    )
    size: Literal["512x512", "1024x1024", "1024x1536", "1536x1024"] = "1024x1024"


class GenerationResult(ToolOutput):
    id: str
    url: str
    width: int
    height: int
    prompt: str
    reference_image_ids: list[str]


GENERATION_STEPS = 3


async def generate_with_reference(inp: GenerateInput, ctx: ToolContext) -> GenerationResult:
    """Reports progress in three steps (references loaded, image generated, image saved). When
    the generator returns the image's bytes, the result carries them as image content besides
    the structured result; a generator that gives only a URL yields no image block (the URL is
    in the result)."""
    await ctx.channel.progress(0, GENERATION_STEPS, "Loading the reference images")
    refs: list[ReferenceImage] = []
    usable = {
        r.id: r
        for r in await ctx.store.list(
            REFERENCE_IMAGES,
            filters=[*_usable_filters(None), Filter("id", "in", inp.reference_image_ids)],
        )
    }
    missing = [i for i in inp.reference_image_ids if i not in usable]
    if missing:
        raise ToolError(
            "these reference images are not usable in this space (unknown, deleted or not "
            f"opted in for AI use): {', '.join(missing)}",
            reason="invalid-reference",
        )
    refs = [ReferenceImage.of(usable[i]) for i in inp.reference_image_ids]
    generator = ctx.backend(IMAGE_GENERATOR)
    await ctx.channel.progress(1, GENERATION_STEPS, "Generating the image")
    image = await generator.generate(inp.prompt, refs, inp.size)
    await ctx.channel.progress(2, GENERATION_STEPS, "Saving the image")
    rec = await ctx.store.insert(
        GENERATED_IMAGES,
        {
            "url": image.url,
            "width": image.width,
            "height": image.height,
            "prompt": inp.prompt,
            "referenceImageIds": inp.reference_image_ids,
        },
    )
    if image.data is not None:
        mime_type = image.mime_type or image_mime_type(image.url)
        ctx.attach(Attachment(kind="image", mime_type=mime_type, data=image.data))
    await ctx.channel.progress(3, GENERATION_STEPS, "Done")
    return GenerationResult(
        id=rec.id,
        url=image.url,
        width=image.width,
        height=image.height,
        prompt=inp.prompt,
        reference_image_ids=inp.reference_image_ids,
    )


GENERATE_WITH_REFERENCE = ToolSpec(
    name="me.generateWithReference",
    title="Generate image from my references",
    description=(
        "Generate a new image of the user from a prompt and 1-4 of their opted-in reference "
        "photos (ids from me.listReferenceImages). Calls the configured image service and saves "
        "the result in the active space. Returns the image URL and size."
    ),
    module=MODULE,
    scope="user-space",
    policy_hint="write",
    requires=(IMAGE_GENERATOR.name,),
    open_world=True,
    input=GenerateInput,
    output=GenerationResult,
    handler=generate_with_reference,
)

TOOLS = (LIST_REFERENCE_IMAGES, GENERATE_WITH_REFERENCE)


# -- resources: mana://me/reference-images/{id} -------------------------------------------------

REFERENCE_IMAGE_URI = "mana://me/reference-images/{id}"
_IMAGE_TYPES = {
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".png": "image/png",
    ".webp": "image/webp",
    ".gif": "image/gif",
}


def image_mime_type(url: str) -> str:
    """The image MIME type a URL's file extension names (`image/jpeg` when it names none)."""
    path = url.split("?", 1)[0].split("#", 1)[0].lower()
    return next((t for ext, t in _IMAGE_TYPES.items() if path.endswith(ext)), "image/jpeg")


def reference_image_uri(image_id: str) -> str:
    return REFERENCE_IMAGE_URI.replace("{id}", image_id)


async def read_reference_image(params: Mapping[str, str], ctx: ViewContext) -> list[ResourceBody]:
    """The image's link (`text/uri-list`, the public URL) plus a JSON description naming its
    MIME type, kind and size; only images opted in for AI use, in the active space."""
    rec = await ctx.tool.store.get(REFERENCE_IMAGES, params["id"])
    usage = rec.data.get("usage") if rec is not None else None
    if rec is None or not isinstance(usage, dict) or usage.get("aiReference") is not True:
        raise ViewError(
            f"no reference image with id {params['id']!r} usable for AI in this space",
            reason="not-found",
            status="invalid-input",
        )
    image = ReferenceImage.of(rec)
    uri = reference_image_uri(image.id)
    facts = image.model_dump(mode="json", by_alias=True)
    facts["mimeType"] = image_mime_type(image.public_url)
    return [
        ResourceBody(uri=uri, mime_type="text/uri-list", text=image.public_url + "\r\n"),
        ResourceBody(uri=uri, mime_type="application/json", text=json.dumps(facts)),
    ]


async def list_reference_image_resources(ctx: ViewContext) -> list[ResourceEntry]:
    records = await ctx.tool.store.list(REFERENCE_IMAGES, filters=_usable_filters(None))
    entries = []
    for rec in records:
        image = ReferenceImage.of(rec)
        entries.append(
            ResourceEntry(
                uri=reference_image_uri(image.id),
                name=image.id,
                title=image.label or f"Reference photo ({image.kind})",
                mime_type=image_mime_type(image.public_url),
                description=f"{image.kind} reference photo, {image.width}x{image.height}",
            )
        )
    return entries


REFERENCE_IMAGE_RESOURCE = ResourceSpec(
    name="me.referenceImage",
    title="Reference photo",
    description=(
        "One of the user's reference photos in the active space that is opted in for AI use: "
        "its link (text/uri-list) and a JSON description with its MIME type, kind and size."
    ),
    module=MODULE,
    uri_template=REFERENCE_IMAGE_URI,
    mime_type="text/uri-list",
    read=read_reference_image,
    enumerate=list_reference_image_resources,
)

RESOURCES = (REFERENCE_IMAGE_RESOURCE,)
