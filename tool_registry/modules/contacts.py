"""Contacts: people the user knows, with how to reach them, searchable by name, email or notes."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from tool_registry.confirm import deletes
from tool_registry.context import ToolContext
from tool_registry.listing import Listing
from tool_registry.models import (
    Clear,
    Deleted,
    IsoDate,
    RecordId,
    ToolInput,
    ToolOutput,
    UpdateInput,
)
from tool_registry.spec import ToolSpec
from tool_registry.store.records import Record

MODULE = "contacts"
CONTACTS = "contacts"
SEARCH_FIELDS = ["name", "email", "notes"]

Name = Annotated[str, Field(min_length=1, max_length=120, description="The person's name.")]
Email = Annotated[
    str,
    Field(
        max_length=254,
        pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$",
        description="Email address, e.g. ada@example.org.",
    ),
]
Phone = Annotated[
    str,
    Field(
        min_length=3,
        max_length=40,
        pattern=r"^[0-9+()\- ]*[0-9][0-9+()\- ]*$",
        description="Phone number: digits, spaces and + - ( ), e.g. +49 30 1234567.",
    ),
]
Notes = Annotated[str, Field(max_length=5000, description="Free-text notes about the person.")]


class Contact(ToolOutput):
    id: str
    name: str
    email: str | None = None
    phone: str | None = None
    notes: str | None = None
    birthday: str | None = None
    created_at: str
    updated_at: str

    @classmethod
    def of(cls, rec: Record) -> Contact:
        return cls.model_validate(rec.as_dict())


# -- contacts.create ---------------------------------------------------------------------------


class CreateContactInput(ToolInput):
    name: Name
    email: Email | None = None
    phone: Phone | None = None
    notes: Notes | None = None
    birthday: IsoDate | None = Field(default=None, description="Birthday, YYYY-MM-DD.")


async def create_contact(inp: CreateContactInput, ctx: ToolContext) -> Contact:
    return Contact.of(await ctx.store.insert(CONTACTS, inp.model_dump(by_alias=True)))


CREATE = ToolSpec(
    name="contacts.create",
    title="Create contact",
    description=(
        "Add a person to the active space's contacts: name, and optionally email, phone, "
        "birthday (YYYY-MM-DD) and notes. Check contacts.search first to avoid duplicates; to "
        "change an existing person use contacts.update. Returns the contact with its id."
    ),
    module=MODULE,
    scope="user-space",
    policy_hint="write",
    input=CreateContactInput,
    output=Contact,
    handler=create_contact,
)


# -- contacts.search ---------------------------------------------------------------------------


class SearchContactsInput(ToolInput):
    query: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="Text to look for in name, email and notes (case-insensitive). Omit it to "
        "get the most recently updated contacts.",
    )
    limit: int = Field(default=20, ge=1, le=100, description="Maximum number of contacts.")


class ContactList(ToolOutput):
    contacts: list[Contact]


async def search_contacts(inp: SearchContactsInput, ctx: ToolContext) -> ContactList:
    listing = Listing(ctx, "contact", "contacts", limit=inp.limit)
    if inp.query is None:
        records = await listing.read(
            CONTACTS, order_by="updated_at", descending=True, limit=inp.limit
        )
    else:
        records = listing.took(
            await ctx.store.search(CONTACTS, inp.query, SEARCH_FIELDS, limit=inp.limit)
        )
    await listing.finish()
    return ContactList(contacts=[Contact.of(r) for r in records])


SEARCH = ToolSpec(
    name="contacts.search",
    title="Search contacts",
    description=(
        "Find people in the active space's contacts whose name, email or notes contain the "
        "query (case-insensitive); name matches rank first, then email, then notes. Without a "
        "query, returns the most recently updated contacts. Returns full contact details with "
        "ids for contacts.update or contacts.delete."
    ),
    module=MODULE,
    scope="user-space",
    policy_hint="read",
    input=SearchContactsInput,
    output=ContactList,
    handler=search_contacts,
)


# -- contacts.update ---------------------------------------------------------------------------


class UpdateContactInput(UpdateInput):
    id: RecordId
    name: Name | None = None
    email: Email | None = None
    phone: Phone | None = None
    notes: Notes | None = None
    birthday: IsoDate | None = Field(default=None, description="Birthday, YYYY-MM-DD.")
    clear: Clear[Literal["email", "phone", "notes", "birthday"]] = None


async def update_contact(inp: UpdateContactInput, ctx: ToolContext) -> Contact:
    await ctx.store.require(CONTACTS, inp.id, label="contact")
    return Contact.of(await ctx.store.update(CONTACTS, inp.id, inp.changes()))


UPDATE = ToolSpec(
    name="contacts.update",
    title="Update contact",
    description=(
        "Change a contact's name, email, phone, notes or birthday. Only the fields you pass "
        "change; omitted or null fields keep their value. To remove an email, phone, notes or "
        'birthday, list them in clear, e.g. clear: ["phone"]. Returns the updated contact.'
    ),
    module=MODULE,
    scope="user-space",
    policy_hint="write",
    idempotent=True,
    input=UpdateContactInput,
    output=Contact,
    handler=update_contact,
)


# -- contacts.delete ---------------------------------------------------------------------------


class ContactIdInput(ToolInput):
    id: RecordId


async def delete_contact(inp: ContactIdInput, ctx: ToolContext) -> Deleted:
    return Deleted.of(await ctx.store.soft_delete(CONTACTS, inp.id))


DELETE = ToolSpec(
    name="contacts.delete",
    title="Delete contact",
    description=(
        "Delete a contact (soft delete: it no longer shows up in contacts.search). "
        "Destructive: only available where the space owner allowed it."
    ),
    module=MODULE,
    scope="user-space",
    policy_hint="destructive",
    idempotent=True,
    input=ContactIdInput,
    output=Deleted,
    handler=delete_contact,
    confirmation=deletes(CONTACTS, "the contact '{name}'"),
)

TOOLS = (CREATE, SEARCH, UPDATE, DELETE)
