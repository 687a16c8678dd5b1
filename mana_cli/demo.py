"""The demo dataset: `demo@mana.test` with a personal and a brand space, data in several modules
and reference images in both spaces (some opted in, some not, one soft-deleted), so that
`me.listReferenceImages` visibly filters. Idempotent: tool-made data uses idempotency keys and
reference images use fixed ids, so a second run changes nothing."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mana_cli.runtime import Runtime
from tool_registry.context import CallContext
from tool_registry.errors import ManaError
from tool_registry.membership import require_member
from tool_registry.modules.me import REFERENCE_IMAGES
from tool_registry.store import Space, User
from tool_registry.store.records import ScopedStore

DEMO_EMAIL = "demo@mana.test"
DEMO_PASSWORD = "mana-demo-password"  # noqa: S105 - documented development credential
BRAND_SLUG = "demo-studio"


@dataclass
class SeedReport:
    user: User
    personal: Space
    brand: Space
    created: list[str] = field(default_factory=list)
    unchanged: int = 0

    def summary(self) -> str:
        head = (
            f"demo user {self.user.email} (password {DEMO_PASSWORD!r}); spaces: "
            f"{self.personal.slug} (personal), {self.brand.slug} (brand)"
        )
        if not self.created:
            return f"{head}\nalready seeded: nothing changed"
        return f"{head}\ncreated {len(self.created)} items: {', '.join(self.created)}"


# (fixed id, space key, data, soft-deleted?)
REFERENCE_IMAGE_SEED: tuple[tuple[str, str, dict[str, Any], bool], ...] = (
    (
        "ref_demo_face",
        "personal",
        {
            "kind": "face",
            "label": "Passport-style portrait",
            "primaryFor": "face-ref",
            "aiReference": True,
        },
        False,
    ),
    (
        "ref_demo_full",
        "personal",
        {
            "kind": "fullbody",
            "label": "Standing, neutral light",
            "primaryFor": "body-ref",
            "aiReference": True,
        },
        False,
    ),
    (
        "ref_demo_hands",
        "personal",
        {"kind": "hands", "label": "Hands on a desk", "primaryFor": None, "aiReference": False},
        False,
    ),
    (
        "ref_demo_old",
        "personal",
        {
            "kind": "face",
            "label": "Old avatar (deleted)",
            "primaryFor": "avatar",
            "aiReference": True,
        },
        True,
    ),
    (
        "ref_demo_brand_half",
        "brand",
        {
            "kind": "halfbody",
            "label": "Studio headshot",
            "primaryFor": "avatar",
            "aiReference": True,
        },
        False,
    ),
    (
        "ref_demo_brand_moodboard",
        "brand",
        {"kind": "reference", "label": "Mood board", "primaryFor": None, "aiReference": False},
        False,
    ),
)

TOOL_SEED: tuple[tuple[str, str, str, dict[str, Any]], ...] = (
    (
        "personal",
        "habit-water",
        "habits.create",
        {"name": "Drink water", "targetPerPeriod": 8, "color": "#38bdf8"},
    ),
    ("personal", "habit-walk", "habits.create", {"name": "Evening walk", "color": "#22c55e"}),
    (
        "personal",
        "todo-taxes",
        "todo.create",
        {"title": "File tax return", "priority": "high", "dueDate": "2026-12-15"},
    ),
    ("personal", "todo-plants", "todo.create", {"title": "Repot the monstera"}),
    (
        "personal",
        "note-ideas",
        "notes.create",
        {"title": "Gift ideas", "body": "Mum: a pottery class. Sam: the new sci-fi trilogy."},
    ),
    (
        "personal",
        "journal-1",
        "journal.add",
        {
            "text": "Slow Sunday. Long walk by the river, finally finished the book.",
            "moodTag": "good",
            "date": "2026-11-15",
        },
    ),
    ("personal", "mood-1", "mood.log", {"score": 4, "note": "Rested"}),
    (
        "brand",
        "brand-note",
        "notes.create",
        {"title": "Launch plan", "body": "Spring collection shoot in March; teaser posts weekly."},
    ),
    (
        "brand",
        "brand-event",
        "calendar.create",
        {
            "title": "Photo shoot",
            "start": "2026-12-03T10:00:00+01:00",
            "end": "2026-12-03T14:00:00+01:00",
            "location": "Studio 4",
        },
    ),
    (
        "brand",
        "brand-contact",
        "contacts.create",
        {"name": "Rita Alvarez", "email": "rita@example.com", "notes": "Photographer"},
    ),
)


def _image_data(image_id: str, spec: dict[str, Any]) -> dict[str, Any]:
    width, height = {
        "face": (1024, 1024),
        "fullbody": (1024, 1536),
        "halfbody": (1024, 1280),
        "hands": (1280, 960),
        "reference": (1600, 1200),
    }[spec["kind"]]
    return {
        "mediaId": f"med_{image_id.removeprefix('ref_')}",
        "kind": spec["kind"],
        "label": spec["label"],
        "primaryFor": spec["primaryFor"],
        "publicUrl": f"https://media.mana.test/{image_id}.jpg",
        "thumbnailUrl": f"https://media.mana.test/{image_id}_thumb.jpg",
        "width": width,
        "height": height,
        "usage": {"aiReference": spec["aiReference"]},
    }


async def _demo_spaces(rt: Runtime) -> tuple[User, Space, Space, list[str]]:
    created: list[str] = []
    user = await rt.accounts.user_by_email(DEMO_EMAIL)
    if user is None:
        user = await rt.accounts.create_user(DEMO_EMAIL, name="Demo User", password=DEMO_PASSWORD)
        created.append("user")
    personal = await rt.accounts.personal_space(user.id)
    brand = await rt.accounts.resolve_space(BRAND_SLUG)
    if brand is None:
        brand = await rt.accounts.create_space(
            user.id, type_="brand", name="Demo Studio", slug=BRAND_SLUG
        )
        created.append("brand space")
    return user, personal, brand, created


async def seed_demo(rt: Runtime) -> SeedReport:
    user, personal, brand, created = await _demo_spaces(rt)
    report = SeedReport(user=user, personal=personal, brand=brand, created=created)
    spaces = {"personal": personal, "brand": brand}
    for space_key, key, tool, args in TOOL_SEED:
        outcome = await rt.pipeline.invoke(
            tool,
            args,
            CallContext(
                user_id=user.id,
                space=spaces[space_key].id,
                invoker="cli",
                idempotency_key=f"seed:demo:{key}",
            ),
        )
        if not outcome.ok:
            raise ManaError(f"demo seed failed at {tool}: {outcome.public().get('error')}")
        if outcome.replayed:
            report.unchanged += 1
        else:
            report.created.append(tool)
    for space_key, new in (("personal", personal), ("brand", brand)):
        access = await require_member(rt.accounts, user.id, new.id)
        async with rt.db.transaction() as tx:
            store = ScopedStore(tx, user_id=user.id, access=access, clock=rt.clock, writable=True)
            for image_id, where, spec, deleted in REFERENCE_IMAGE_SEED:
                if where != space_key:
                    continue
                if await store.get(REFERENCE_IMAGES, image_id, include_deleted=True):
                    report.unchanged += 1
                    continue
                await store.insert(
                    REFERENCE_IMAGES, _image_data(image_id, spec), record_id=image_id
                )
                if deleted:
                    await store.soft_delete(REFERENCE_IMAGES, image_id)
                report.created.append(f"reference image {image_id}")
    return report
