"""Seeding (an idempotent upsert of the catalog into the database) and cleanup.

`Seeder.plan(catalog)` compares the catalog with the database and returns the changes needed,
each a readable line plus the work to do it; `apply(plan)` runs them. A second seed finds
nothing to change, so it writes nothing (passwords are checked, not re-hashed). `--dry-run` is
the plan without the apply.

What a seed owns: persona users (`kind = persona`, name, password), their `personas` rows, the
shared spaces of the catalog (by slug: name, and the memberships of persona users). It never
turns an existing human or system user into a persona, never takes over a space that was not
created by a persona, and never touches a human's membership in a persona space.

`cleanup` deletes persona users and everything that is theirs: their memberships, the records
they authored (in any space), the spaces whose every member is one of them (their personal
spaces, persona-only shared spaces; with every record in them), their audit and idempotency
rows, and their personas rows (actions, ratings, ticks cascade). A space with any other member
(a human, or a persona not being deleted) stays with that member's records; if its owners all
go, its longest-standing admin (else member) becomes owner. `--dry-run` reports exactly what a
cleanup then deletes. It refuses, and deletes nothing, when asked for an email that is not a
persona.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from personas.catalog import Persona, PersonaCatalog, SharedSpace
from personas.passwords import PersonaSecret
from personas.store import (
    PersonaProfile,
    persona_cleanup,
    persona_profile,
    remove_member,
    rename_persona_user,
    rename_space,
    space_by_slug,
    space_members,
    upsert_persona,
)
from tool_registry.clock import Clock, SystemClock, iso
from tool_registry.errors import ConflictError, NotFoundError, PermissionDeniedError
from tool_registry.store.accounts import Accounts, User
from tool_registry.store.connection import Conn
from tool_registry.store.database import Database

Work = Callable[[], Awaitable[None]]


@dataclass(frozen=True)
class Change:
    """One thing a seed would do: `action` (machine word), `target` (email or slug), `detail`."""

    action: str
    target: str
    detail: str = ""
    run: Work | None = field(default=None, repr=False, compare=False)

    def __str__(self) -> str:
        return f"{self.action:<15} {self.target}" + (f"  ({self.detail})" if self.detail else "")


@dataclass
class SeedPlan:
    changes: list[Change] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not self.changes

    def lines(self) -> list[str]:
        return [str(c) for c in self.changes]


@dataclass
class CleanupResult:
    """What a cleanup deletes (or, for a dry run, would delete): the same lists either way.

    `users`: persona emails; `memberships`: "email in slug (role)", every membership of those
    users; `spaces`: slugs of the spaces whose every member is one of them; `records_by_space`:
    records deleted per space slug (those the personas authored, and all of a deleted space's);
    `owners`: kept spaces whose owners were all personas and the member who becomes owner."""

    users: list[str] = field(default_factory=list)
    memberships: list[str] = field(default_factory=list)
    spaces: list[str] = field(default_factory=list)
    records_by_space: dict[str, int] = field(default_factory=dict)
    owners: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    dry_run: bool = False

    @property
    def records(self) -> int:
        return sum(self.records_by_space.values())

    def lines(self) -> list[str]:
        """The report, worded for a dry run ("would delete") or a cleanup ("deleted")."""
        if not self.users:
            return ["no persona users to delete"]
        verb = "would delete" if self.dry_run else "deleted"
        per_space = ", ".join(f"{slug} {n}" for slug, n in self.records_by_space.items())
        lines = [
            f"{verb} {len(self.users)} persona user(s): {', '.join(self.users)}",
            f"{verb} {len(self.memberships)} membership(s): {', '.join(self.memberships) or '-'}",
            f"{verb} {len(self.spaces)} space(s) whose every member is one of them: "
            f"{', '.join(self.spaces) or '-'}",
            f"{verb} {self.records} record(s) they authored or that were in those spaces"
            + (f": {per_space}" if per_space else ""),
        ]
        make = "would make" if self.dry_run else "made"
        lines += [f"{make} {line} (its owners were personas)" for line in self.owners]
        return lines


def not_in_catalog(emails: Sequence[str], catalog: PersonaCatalog) -> list[str]:
    known = {p.email for p in catalog.personas}
    return sorted(e for e in emails if e not in known)


class Seeder:
    def __init__(
        self,
        db: Database,
        accounts: Accounts,
        secret: PersonaSecret,
        clock: Clock | None = None,
    ) -> None:
        self.db = db
        self.accounts = accounts
        self.secret = secret
        self.clock = clock or SystemClock()

    # -- plan ------------------------------------------------------------------------------------

    async def plan(self, catalog: PersonaCatalog) -> SeedPlan:
        plan = SeedPlan()
        for persona in catalog.personas:
            plan.changes += await self._plan_persona(persona)
        for space in catalog.shared_spaces:
            plan.changes += await self._plan_space(space)
        in_db = [u.email for u in await self.accounts.list_users("persona")]
        extra = not_in_catalog(in_db, catalog)
        if extra:
            plan.warnings.append(
                f"{len(extra)} persona(s) in the database are not in the catalog: "
                f"{', '.join(extra)} (`mana personas cleanup` deletes them)"
            )
        return plan

    async def apply(self, plan: SeedPlan) -> None:
        for change in plan.changes:
            if change.run is not None:
                await change.run()

    async def seed(self, catalog: PersonaCatalog, *, dry_run: bool = False) -> SeedPlan:
        plan = await self.plan(catalog)
        if not dry_run:
            await self.apply(plan)
        return plan

    async def _plan_persona(self, p: Persona) -> list[Change]:
        user = await self.accounts.user_by_email(p.email)
        if user is None:
            return [
                Change(
                    "create-user",
                    p.email,
                    f"{p.name}, {p.archetype}, {p.cadence}, personal space",
                    run=lambda: self._create(p),
                )
            ]
        if user.kind != "persona":
            raise ConflictError(
                f"{p.email} belongs to a {user.kind} user, not a persona; refusing to turn it "
                "into one (change the persona's email in the catalog)"
            )
        changes: list[Change] = []
        if user.name != p.name:
            changes.append(
                Change(
                    "rename-user",
                    p.email,
                    f"{user.name!r} -> {p.name!r}",
                    run=lambda: self._rename(user.id, p.name),
                )
            )
        if await self.accounts.check_password(p.email, self.secret.password(p.email)) is None:
            changes.append(
                Change(
                    "reset-password",
                    p.email,
                    f"derived from the {self.secret.source}",
                    run=lambda: self.accounts.set_password(user.id, self.secret.password(p.email)),
                )
            )
        row = await self.db.read(lambda c: persona_profile(c, user.id))
        if row is None:
            changes.append(
                Change(
                    "create-persona",
                    p.email,
                    f"{p.archetype}, {p.cadence}",
                    run=lambda: self._upsert_persona(user.id, p),
                )
            )
        else:
            fields = [
                name
                for name, old, new in (
                    ("archetype", row.archetype, p.archetype),
                    ("systemPrompt", row.system_prompt, p.system_prompt),
                    ("moduleMix", row.module_mix, p.mix_json()),
                    ("cadence", row.cadence, p.cadence),
                )
                if old != new
            ]
            if fields:
                changes.append(
                    Change(
                        "update-persona",
                        p.email,
                        ", ".join(fields),
                        run=lambda: self._upsert_persona(user.id, p),
                    )
                )
        return changes

    async def _plan_space(self, s: SharedSpace) -> list[Change]:
        row = await self.db.read(lambda c: space_by_slug(c, s.slug))
        if row is None:
            members = ", ".join(f"{m.email} ({m.role})" for m in s.members)
            return [
                Change(
                    "create-space",
                    s.slug,
                    f"{s.type} {s.name!r}: {members}",
                    run=lambda: self._create_space(s),
                )
            ]
        if row.creator_kind != "persona":
            raise ConflictError(
                f"space slug {s.slug!r} is taken by a space that was not created for personas; "
                "refusing to take it over (change the slug in the catalog)"
            )
        if row.type != s.type:
            raise ConflictError(
                f"space {s.slug!r} is a {row.type} space but the catalog says {s.type}; "
                "a space's type cannot change: run `mana personas cleanup` and seed again"
            )
        space_id = row.id
        changes: list[Change] = []
        if row.name != s.name:
            changes.append(
                Change(
                    "rename-space",
                    s.slug,
                    f"{row.name!r} -> {s.name!r}",
                    run=lambda: self._rename_space(space_id, s.name),
                )
            )
        current = await self.db.read(lambda c: space_members(c, space_id))
        roles = {r.email: (r.role, r.kind) for r in current}
        for m in s.members:
            have = roles.get(m.email)
            if have is None:
                changes.append(
                    Change(
                        "add-member",
                        s.slug,
                        f"{m.email} as {m.role}",
                        run=self._member_work(space_id, m.email, m.role),
                    )
                )
            elif have[0] != m.role:
                changes.append(
                    Change(
                        "change-role",
                        s.slug,
                        f"{m.email}: {have[0]} -> {m.role}",
                        run=self._member_work(space_id, m.email, m.role),
                    )
                )
        declared = {m.email for m in s.members}
        for email, (_, kind) in sorted(roles.items()):
            if kind == "persona" and email not in declared:
                changes.append(
                    Change(
                        "remove-member",
                        s.slug,
                        email,
                        run=self._remove_member_work(space_id, email),
                    )
                )
        return changes

    # -- work ------------------------------------------------------------------------------------

    async def _create(self, p: Persona) -> None:
        user = await self.accounts.create_user(
            p.email, name=p.name, kind="persona", password=self.secret.password(p.email)
        )
        await self._upsert_persona(user.id, p)

    async def _rename(self, user_id: str, name: str) -> None:
        now = iso(self.clock.now())
        await self.db.write(lambda c: rename_persona_user(c, user_id, name, now=now))

    async def _upsert_persona(self, user_id: str, p: Persona) -> None:
        now = iso(self.clock.now())
        profile = PersonaProfile(p.archetype, p.system_prompt, p.mix_json(), p.cadence)
        await self.db.write(lambda c: upsert_persona(c, user_id, profile, now=now))

    async def _user(self, email: str) -> User:
        user = await self.accounts.user_by_email(email)
        if user is None:  # created earlier in the same apply; absent only if that failed
            raise NotFoundError(f"persona {email} does not exist; seed the personas first")
        return user

    async def _create_space(self, s: SharedSpace) -> None:
        owner = await self._user(s.owner)
        space = await self.accounts.create_space(owner.id, type_=s.type, name=s.name, slug=s.slug)
        for m in s.members:
            if m.email != s.owner:
                await self.accounts.add_member(space.id, (await self._user(m.email)).id, m.role)

    def _member_work(self, space_id: str, email: str, role: str) -> Work:
        async def work() -> None:
            await self.accounts.add_member(space_id, (await self._user(email)).id, role)

        return work

    def _remove_member_work(self, space_id: str, email: str) -> Work:
        async def work() -> None:
            user = await self._user(email)
            await self.db.write(lambda c: remove_member(c, space_id, user.id))

        return work

    async def _rename_space(self, space_id: str, name: str) -> None:
        await self.db.write(lambda c: rename_space(c, space_id, name))


# -- cleanup -------------------------------------------------------------------------------------


async def cleanup(
    db: Database,
    accounts: Accounts,
    *,
    emails: Sequence[str] = (),
    catalog: PersonaCatalog | None = None,
    dry_run: bool = False,
) -> CleanupResult:
    """Delete the given persona users (default: every persona user) and their data; with
    `dry_run`, the same result and nothing deleted."""
    result = CleanupResult(dry_run=dry_run)
    if emails:
        targets: list[User] = []
        for email in emails:
            user = await accounts.user_by_email(email)
            if user is None:
                result.warnings.append(f"no user {email.strip().lower()}: nothing to delete")
                continue
            if user.kind != "persona":
                raise PermissionDeniedError(
                    f"refusing to delete {user.email}: it is a {user.kind} user, not a persona "
                    "(cleanup only ever deletes persona users); nothing was deleted"
                )
            targets.append(user)
    else:
        targets = await accounts.list_users("persona")
    if catalog is not None:
        extra = not_in_catalog([u.email for u in targets], catalog)
        if extra:
            result.warnings.append(
                f"{len(extra)} persona(s) in the database are not in the catalog: "
                f"{', '.join(extra)}"
            )
    ids = sorted({u.id for u in targets})
    result.users = sorted(u.email for u in targets)
    if not ids:
        return result

    def work(conn: Conn) -> None:
        found = persona_cleanup(conn, ids, delete=not dry_run)
        result.spaces = found.spaces
        result.memberships = [
            f"{email} in {slug} ({role})" for email, slug, role in found.memberships
        ]
        result.records_by_space = found.records_by_space
        result.owners = [f"{email} becomes owner of {slug}" for email, slug in found.new_owners]

    # One write transaction: the plan and the deletion see the same rows (a dry run only plans:
    # it touches nothing but the temp tables).
    await db.write(work)
    return result


__all__ = ["Change", "CleanupResult", "SeedPlan", "Seeder", "cleanup", "not_in_catalog"]
