"""Notes: free-form text the user wants to keep, with optional tags, searchable by content."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import AfterValidator, Field

from tool_registry.confirm import deletes
from tool_registry.context import ToolContext
from tool_registry.listing import Listing
from tool_registry.models import Deleted, LongText, RecordId, ToolInput, ToolOutput
from tool_registry.resources import ResourceBody, ResourceEntry, ResourceSpec
from tool_registry.spec import ToolSpec
from tool_registry.store.records import Record
from tool_registry.views import ViewContext, ViewError, candidates

MODULE = "notes"
NOTES = "notes"
SNIPPET_CHARS = 200
SEARCH_FIELDS = ["title", "body"]


def _unique(tags: list[str]) -> list[str]:
    """Drop repeated tags (case-insensitively), keeping the first spelling and the order."""
    seen: set[str] = set()
    unique = []
    for tag in tags:
        if tag.casefold() not in seen:
            seen.add(tag.casefold())
            unique.append(tag)
    return unique


Title = Annotated[str, Field(min_length=1, max_length=200, description="Short note title.")]
Body = Annotated[LongText, Field(description="Note text, up to 20000 characters.")]
Tag = Annotated[str, Field(min_length=1, max_length=40)]
Tags = Annotated[
    list[Tag],
    AfterValidator(_unique),
    Field(max_length=20, description="Up to 20 short labels, e.g. ['recipes', 'ideas']."),
]


class Note(ToolOutput):
    id: str
    title: str
    body: str
    tags: list[str]
    created_at: str
    updated_at: str

    @classmethod
    def of(cls, rec: Record) -> Note:
        return cls.model_validate(rec.as_dict())


# -- notes.create ------------------------------------------------------------------------------


class CreateNoteInput(ToolInput):
    title: Title
    body: Body = ""
    tags: Tags = Field(default_factory=list)


async def create_note(inp: CreateNoteInput, ctx: ToolContext) -> Note:
    return Note.of(await ctx.store.insert(NOTES, inp.model_dump(by_alias=True)))


CREATE = ToolSpec(
    name="notes.create",
    title="Create note",
    description=(
        "Save a new note (title, text body, optional tags) in the active space. Use it for "
        "information to keep; for tasks use todo.create, for dated diary entries "
        "journal.add. Returns the created note with its id."
    ),
    module=MODULE,
    scope="user-space",
    policy_hint="write",
    input=CreateNoteInput,
    output=Note,
    handler=create_note,
)


# -- notes.update ------------------------------------------------------------------------------


class UpdateNoteInput(ToolInput):
    id: RecordId
    title: Title | None = None
    body: Body | None = None
    tags: Tags | None = Field(default=None, description="Replaces all tags; [] removes them.")


async def update_note(inp: UpdateNoteInput, ctx: ToolContext) -> Note:
    changes = inp.model_dump(by_alias=True, exclude={"id"}, exclude_none=True)
    await ctx.store.require(NOTES, inp.id, label="note")
    return Note.of(await ctx.store.update(NOTES, inp.id, changes))


UPDATE = ToolSpec(
    name="notes.update",
    title="Update note",
    description=(
        "Change a note's title, body or tags. Only the fields you pass change; a new body "
        "replaces the whole text and new tags replace all tags. Find the id with notes.search. "
        "Returns the updated note."
    ),
    module=MODULE,
    scope="user-space",
    policy_hint="write",
    idempotent=True,
    input=UpdateNoteInput,
    output=Note,
    handler=update_note,
)


# -- notes.search ------------------------------------------------------------------------------


class SearchNotesInput(ToolInput):
    query: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="Text to look for in titles and bodies (case-insensitive). Omit it to get "
        "the most recently updated notes.",
    )
    limit: int = Field(default=10, ge=1, le=50, description="Maximum number of notes.")


class NoteHit(ToolOutput):
    id: str
    title: str
    snippet: str = Field(description="Up to 200 characters of the body, around the match.")
    tags: list[str]
    updated_at: str


class NoteHits(ToolOutput):
    notes: list[NoteHit]


def snippet(body: str, query: str | None) -> str:
    """At most SNIPPET_CHARS characters of `body`, starting a little before the first match."""
    if len(body) <= SNIPPET_CHARS:
        return body
    at = body.lower().find(query.lower()) if query else -1
    start = min(at - 60, len(body) - SNIPPET_CHARS + 1) if at > 60 else 0
    head = "…" if start > 0 else ""
    room = SNIPPET_CHARS - len(head)
    text = body[start : start + room]
    if start + room < len(body):
        text = text[: room - 1] + "…"
    return head + text


async def search_notes(inp: SearchNotesInput, ctx: ToolContext) -> NoteHits:
    listing = Listing(ctx, "note", "notes", limit=inp.limit)
    if inp.query is None:
        records = await listing.read(NOTES, order_by="updated_at", descending=True, limit=inp.limit)
    else:
        records = listing.took(
            await ctx.store.search(NOTES, inp.query, SEARCH_FIELDS, limit=inp.limit)
        )
    await listing.finish()
    return NoteHits(
        notes=[
            NoteHit(
                id=r.id,
                title=r.data["title"],
                snippet=snippet(r.data.get("body") or "", inp.query),
                tags=r.data.get("tags") or [],
                updated_at=r.updated_at,
            )
            for r in records
        ]
    )


SEARCH = ToolSpec(
    name="notes.search",
    title="Search notes",
    description=(
        "Find notes in the active space whose title or body contains the query "
        "(case-insensitive), best matches first (title matches rank above body matches). "
        "Without a query, returns the most recently updated notes. Each hit has the id, title, "
        "a body snippet of at most 200 characters, tags and updatedAt; use the id with "
        "notes.update or notes.delete."
    ),
    module=MODULE,
    scope="user-space",
    policy_hint="read",
    input=SearchNotesInput,
    output=NoteHits,
    handler=search_notes,
)


# -- notes.delete ------------------------------------------------------------------------------


class NoteIdInput(ToolInput):
    id: RecordId


async def delete_note(inp: NoteIdInput, ctx: ToolContext) -> Deleted:
    return Deleted.of(await ctx.store.soft_delete(NOTES, inp.id))


DELETE = ToolSpec(
    name="notes.delete",
    title="Delete note",
    description=(
        "Delete a note (soft delete: it no longer shows up in notes.search). Destructive: only "
        "available where the space owner allowed it."
    ),
    module=MODULE,
    scope="user-space",
    policy_hint="destructive",
    idempotent=True,
    input=NoteIdInput,
    output=Deleted,
    handler=delete_note,
    confirmation=deletes(NOTES, "the note '{title}'"),
)

TOOLS = (CREATE, UPDATE, SEARCH, DELETE)
NOTE_WRITES = frozenset(t.name for t in TOOLS if t.policy_hint != "read")


# -- resources: mana://notes/{id} --------------------------------------------------------------

NOTE_URI = "mana://notes/{id}"
# The most notes `resources/list` shows (most recently updated first); the template reaches all.
LISTED_NOTES = 200


def note_uri(note_id: str) -> str:
    return NOTE_URI.replace("{id}", note_id)


def note_markdown(note: Note) -> str:
    """A note as markdown: its title as the heading, the body, then its tags."""
    text = f"# {note.title}\n\n{note.body}".rstrip() + "\n"
    if note.tags:
        text += "\nTags: " + ", ".join(note.tags) + "\n"
    return text


async def read_note(params: Mapping[str, str], ctx: ViewContext) -> list[ResourceBody]:
    rec = await ctx.tool.store.get(NOTES, params["id"])
    if rec is None:
        raise ViewError(
            f"no note with id {params['id']!r} in this space",
            reason="not-found",
            status="invalid-input",
        )
    note = Note.of(rec)
    return [
        ResourceBody(uri=note_uri(note.id), mime_type="text/markdown", text=note_markdown(note))
    ]


async def list_note_resources(ctx: ViewContext) -> list[ResourceEntry]:
    records = await ctx.tool.store.list(
        NOTES, order_by="updated_at", descending=True, limit=LISTED_NOTES
    )
    return [
        ResourceEntry(
            uri=note_uri(r.id), name=r.id, title=r.data["title"], mime_type="text/markdown"
        )
        for r in records
    ]


async def complete_note_id(prefix: str, ctx: ViewContext) -> list[str]:
    """Ids of the space's notes whose title contains what was typed (titles starting with it
    first): a client shows the note's id for the title the user types."""
    return [r.id for r in await candidates(ctx, NOTES, "title", prefix)]


def changed_notes(tool: str, result: Mapping[str, Any]) -> list[str]:
    """notes.update and notes.delete (and a new note from notes.create) change the note whose
    id their result carries."""
    note_id = result.get("id")
    if tool in NOTE_WRITES and isinstance(note_id, str):
        return [note_uri(note_id)]
    return []


NOTE_RESOURCE = ResourceSpec(
    name="notes.note",
    title="Note",
    description=(
        "One note of the active space as markdown (title as heading, body, tags). Attach it "
        "to a conversation to work on the note's text."
    ),
    module=MODULE,
    uri_template=NOTE_URI,
    mime_type="text/markdown",
    read=read_note,
    enumerate=list_note_resources,
    complete={"id": complete_note_id},
    changed_by=changed_notes,
)

RESOURCES = (NOTE_RESOURCE,)
