"""Users, spaces and memberships: the system side of the store (never handed to a handler)."""

from __future__ import annotations

import asyncio
import re
import unicodedata
from dataclasses import dataclass
from typing import Literal, get_args

from tool_registry.clock import Clock, SystemClock, iso
from tool_registry.errors import ConflictError, NotFoundError, ValidationFailed
from tool_registry.ids import looks_like_id
from tool_registry.store.connection import Conn, Row
from tool_registry.store.database import Database
from tool_registry.store.passwords import hash_password, verify_password

UserKind = Literal["human", "persona", "system"]
Tier = Literal["free", "plus", "pro"]
SpaceType = Literal["personal", "brand", "club", "family", "team", "practice"]
Role = Literal["owner", "admin", "member"]

USER_KINDS: tuple[str, ...] = get_args(UserKind)
TIERS: tuple[str, ...] = get_args(Tier)
SPACE_TYPES: tuple[str, ...] = get_args(SpaceType)
ROLES: tuple[str, ...] = get_args(Role)

EMAIL_PATTERN = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_SLUG_STRIP = re.compile(r"[^a-z0-9]+")


@dataclass(frozen=True)
class User:
    id: str
    email: str
    name: str
    kind: str
    tier: str
    created_at: str


@dataclass(frozen=True)
class Space:
    id: str
    slug: str
    name: str
    type: str
    created_at: str


@dataclass(frozen=True)
class SpaceAccess:
    """A space as seen by one user: `role` is None when the user is not a member;
    `user_kind` (human, persona, system) is filled in by `Accounts.access`."""

    space: Space
    role: str | None
    user_kind: str | None = None


SLUG_MAX_LENGTH = 48
SLUG_PATTERN = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,46}[a-z0-9])?$")
SLUG_RULE = (
    "1 to 48 lower-case letters, digits and hyphens, starting and ending with a letter or digit, "
    "and not shaped like a space id"
)


def slug_problem(slug: str) -> str | None:
    """Why `slug` cannot name a space, or None: the one slug rule (`SLUG_PATTERN`, and never the
    shape of an id, so "id or slug" is never ambiguous). Every way to create a space (CLI,
    persona catalog, seeding, derivation from a name) goes through it."""
    if SLUG_PATTERN.fullmatch(slug) is None:
        return f"slug {slug!r} is not valid: use {SLUG_RULE}"
    if looks_like_id(slug):
        return f"slug {slug!r} is shaped like a space id; choose a name"
    return None


def check_slug(slug: str) -> str:
    """`slug` when `slug_problem` has nothing against it; `ValidationFailed` otherwise."""
    problem = slug_problem(slug)
    if problem is not None:
        raise ValidationFailed(problem)
    return slug


def slugify(text: str) -> str:
    """A valid slug derived from a name: accents dropped, other characters as hyphens, cut to
    48 characters; "space" when nothing is left, prefixed when it would read as an id."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    slug = _SLUG_STRIP.sub("-", ascii_text.lower()).strip("-")[:SLUG_MAX_LENGTH].rstrip("-")
    if not slug:
        return "space"
    if looks_like_id(slug):
        slug = f"space-{slug}"[:SLUG_MAX_LENGTH].rstrip("-")
    return check_slug(slug)


# The id of the space a reference names (two `?`, both the reference): the space with that id,
# else the one with that slug. Explicit rather than `id = ? OR slug = ?`, which leaves the choice
# to the query plan when both match (a slug equal to an id cannot be created, but an older
# database may hold one).
SPACE_BY_REF = (
    "COALESCE((SELECT id FROM spaces WHERE id = ?), (SELECT id FROM spaces WHERE slug = ?))"
)

# A user by email (one `?`, given as `email_key(address)`), whatever the case of either side: the
# one form both backends index (SQLite's `users_by_lower_email`, PostgreSQL's unique
# `users_email_nocase`) and fold alike (ASCII letters, as SQLite's NOCASE column did).
EMAIL_IS = "lower(email) = lower(?)"


def email_key(email: str) -> str:
    """The form `create_user` stores and `EMAIL_IS` is given: folded in Python too, so a query
    with non-ASCII capitals still finds the address (SQL's lower() folds ASCII only)."""
    return email.strip().lower()


def _user(row: Row) -> User:
    return User(row["id"], row["email"], row["name"], row["kind"], row["tier"], row["created_at"])


def space_from_row(row: Row) -> Space:
    return Space(row["id"], row["slug"], row["name"], row["type"], row["created_at"])


def member_role(conn: Conn, space_id: str, user_id: str) -> str | None:
    """The user's role in the space, None when not a member; on the caller's connection, so a
    check made inside a write transaction holds for the change it guards."""
    row = conn.execute(
        "SELECT role FROM memberships WHERE space_id = ? AND user_id = ?", (space_id, user_id)
    ).fetchone()
    return None if row is None else str(row["role"])


def _slug_taken(conn: Conn, slug: str) -> bool:
    # A slug is unique among slugs and never another space's id.
    return (
        conn.execute("SELECT 1 FROM spaces WHERE slug = ? OR id = ?", (slug, slug)).fetchone()
        is not None
    )


def _unique_slug(conn: Conn, base: str) -> str:
    """`base`, or `base` cut short enough to carry `-2`, `-3`, ... when it is taken."""
    slug, n = base, 2
    while _slug_taken(conn, slug):
        suffix = f"-{n}"
        slug, n = base[: SLUG_MAX_LENGTH - len(suffix)].rstrip("-") + suffix, n + 1
    return check_slug(slug)


def _insert_space(
    conn: Conn,
    *,
    space_id: str,
    owner_id: str,
    type_: str,
    name: str,
    slug: str | None,
    now: str,
) -> Space:
    if slug is not None:
        if _slug_taken(conn, check_slug(slug)):
            raise ConflictError(f"a space with slug {slug!r} already exists")
    else:
        slug = _unique_slug(conn, slugify(name))
    conn.execute(
        "INSERT INTO spaces (id, slug, name, type, created_by, created_at) VALUES (?,?,?,?,?,?)",
        (space_id, slug, name, type_, owner_id, now),
    )
    conn.execute(
        "INSERT INTO memberships (space_id, user_id, role, created_at) VALUES (?,?,?,?)",
        (space_id, owner_id, "owner", now),
    )
    return Space(space_id, slug, name, type_, now)


class Accounts:
    """Account administration used by the composition root, CLI, auth and the pipeline."""

    def __init__(self, db: Database, clock: Clock | None = None) -> None:
        self.db = db
        self.clock = clock or SystemClock()

    # -- users -------------------------------------------------------------------------------

    async def create_user(
        self,
        email: str,
        *,
        name: str | None = None,
        kind: str = "human",
        tier: str = "free",
        password: str | None = None,
    ) -> User:
        """Create a user and its personal space (the user is its owner), atomically."""
        email = email_key(email)
        if not EMAIL_PATTERN.match(email):
            raise ValidationFailed(f"email {email!r} is not a valid address")
        if kind not in USER_KINDS:
            raise ValidationFailed(f"kind must be one of {', '.join(USER_KINDS)}")
        if tier not in TIERS:
            raise ValidationFailed(f"tier must be one of {', '.join(TIERS)}")
        display = (name or email.split("@", 1)[0]).strip()
        pw_hash = await asyncio.to_thread(hash_password, password) if password is not None else None
        now = iso(self.clock.now())
        user_id = self.clock.new_id("usr")
        space_id = self.clock.new_id("spc")

        def work(conn: Conn) -> User:
            if conn.execute(f"SELECT 1 FROM users WHERE {EMAIL_IS}", (email,)).fetchone():
                raise ConflictError(f"a user with email {email} already exists")
            conn.execute(
                "INSERT INTO users (id, email, name, kind, tier, password_hash, created_at, "
                "updated_at) VALUES (?,?,?,?,?,?,?,?)",
                (user_id, email, display, kind, tier, pw_hash, now, now),
            )
            _insert_space(
                conn,
                space_id=space_id,
                owner_id=user_id,
                type_="personal",
                name=f"{display} (personal)",
                slug=None,
                now=now,
            )
            return User(user_id, email, display, kind, tier, now)

        return await self.db.write(work)

    async def user_by_email(self, email: str) -> User | None:
        row = await self.db.read(
            lambda c: c.execute(
                f"SELECT * FROM users WHERE {EMAIL_IS}", (email_key(email),)
            ).fetchone()
        )
        return _user(row) if row else None

    async def require_user(self, email: str) -> User:
        user = await self.user_by_email(email)
        if user is None:
            raise NotFoundError(f"no user with email {email_key(email)}")
        return user

    async def user_by_id(self, user_id: str) -> User | None:
        row = await self.db.read(
            lambda c: c.execute("SELECT * FROM users WHERE id = ?", (user_id,)).fetchone()
        )
        return _user(row) if row else None

    async def list_users(self, kind: str | None = None) -> list[User]:
        def work(conn: Conn) -> list[User]:
            if kind is None:
                rows = conn.execute("SELECT * FROM users ORDER BY email").fetchall()
            else:
                rows = conn.execute(
                    "SELECT * FROM users WHERE kind = ? ORDER BY email", (kind,)
                ).fetchall()
            return [_user(r) for r in rows]

        return await self.db.read(work)

    async def set_password(self, user_id: str, password: str) -> None:
        pw_hash = await asyncio.to_thread(hash_password, password)
        now = iso(self.clock.now())

        def work(conn: Conn) -> None:
            conn.execute(
                "UPDATE users SET password_hash = ?, updated_at = ? WHERE id = ?",
                (pw_hash, now, user_id),
            )

        await self.db.write(work)

    async def check_password(self, email: str, password: str) -> User | None:
        """The user when the password matches; None for an unknown email or a wrong password."""
        row = await self.db.read(
            lambda c: c.execute(
                f"SELECT * FROM users WHERE {EMAIL_IS}", (email_key(email),)
            ).fetchone()
        )
        stored = row["password_hash"] if row is not None else None
        # scrypt is deliberately slow (~80 ms): keep it off the event loop. A missing user costs
        # the same as a wrong password, so timing reveals nothing.
        matches = await asyncio.to_thread(verify_password, password, stored or None)
        return _user(row) if row is not None and matches else None

    async def set_tier(self, user_id: str, tier: str) -> User:
        if tier not in TIERS:
            raise ValidationFailed(f"tier must be one of {', '.join(TIERS)}")
        now = iso(self.clock.now())

        def work(conn: Conn) -> User:
            cur = conn.execute(
                "UPDATE users SET tier = ?, updated_at = ? WHERE id = ?", (tier, now, user_id)
            )
            if cur.rowcount == 0:
                raise NotFoundError(f"no user with id {user_id}")
            return _user(conn.execute("SELECT * FROM users WHERE id = ?", (user_id,)).fetchone())

        return await self.db.write(work)

    # -- spaces ------------------------------------------------------------------------------

    async def create_space(
        self, owner_id: str, *, type_: str, name: str, slug: str | None = None
    ) -> Space:
        if type_ not in SPACE_TYPES:
            raise ValidationFailed(f"space type must be one of {', '.join(SPACE_TYPES)}")
        if type_ == "personal":
            raise ValidationFailed("personal spaces are created with their user")
        if not name.strip():
            raise ValidationFailed("space name must not be empty")
        now = iso(self.clock.now())
        space_id = self.clock.new_id("spc")
        return await self.db.write(
            lambda c: _insert_space(
                c,
                space_id=space_id,
                owner_id=owner_id,
                type_=type_,
                name=name.strip(),
                slug=slug,
                now=now,
            )
        )

    async def add_member(self, space_id: str, user_id: str, role: str) -> None:
        """Add a member or change the role of an existing one."""
        if role not in ROLES:
            raise ValidationFailed(f"role must be one of {', '.join(ROLES)}")
        now = iso(self.clock.now())

        def work(conn: Conn) -> None:
            space = conn.execute("SELECT type FROM spaces WHERE id = ?", (space_id,)).fetchone()
            if space is None:
                raise NotFoundError(f"no space {space_id}")
            if space["type"] == "personal":
                raise ValidationFailed("a personal space has exactly one member")
            conn.execute(
                "INSERT INTO memberships (space_id, user_id, role, created_at) VALUES (?,?,?,?) "
                "ON CONFLICT (space_id, user_id) DO UPDATE SET role = excluded.role",
                (space_id, user_id, role, now),
            )

        await self.db.write(work)

    async def resolve_space(self, ref: str) -> Space | None:
        """A space by id or slug (id first, see `SPACE_BY_REF`)."""
        row = await self.db.read(
            lambda c: c.execute(
                f"SELECT * FROM spaces WHERE id = {SPACE_BY_REF}", (ref, ref)
            ).fetchone()
        )
        return space_from_row(row) if row else None

    async def require_space(self, ref: str) -> Space:
        space = await self.resolve_space(ref)
        if space is None:
            raise NotFoundError(f"no space with id or slug {ref!r}")
        return space

    async def personal_space(self, user_id: str) -> Space:
        row = await self.db.read(
            lambda c: c.execute(
                "SELECT s.* FROM spaces s JOIN memberships m ON m.space_id = s.id "
                "WHERE m.user_id = ? AND s.type = 'personal' AND m.role = 'owner' "
                "ORDER BY s.created_at, s.id LIMIT 1",
                (user_id,),
            ).fetchone()
        )
        if row is None:
            raise NotFoundError(f"user {user_id} has no personal space")
        return space_from_row(row)

    async def access(self, user_id: str, space_ref: str | None) -> SpaceAccess | None:
        """The space (by id or slug; None = personal) with the user's role, in one query."""
        params: tuple[str, ...]
        if space_ref is None:
            sql = (
                "SELECT s.*, m.role, u.kind AS user_kind FROM spaces s "
                "JOIN memberships m ON m.space_id = s.id JOIN users u ON u.id = m.user_id "
                "WHERE m.user_id = ? AND s.type = 'personal' AND m.role = 'owner' "
                "ORDER BY s.created_at, s.id LIMIT 1"
            )
            params = (user_id,)
        else:
            sql = (
                "SELECT s.*, m.role, (SELECT kind FROM users WHERE id = ?) AS user_kind "
                "FROM spaces s LEFT JOIN memberships m ON m.space_id = s.id AND m.user_id = ? "
                f"WHERE s.id = {SPACE_BY_REF}"
            )
            params = (user_id, user_id, space_ref, space_ref)
        row = await self.db.read(lambda c: c.execute(sql, params).fetchone())
        if row is None:
            return None
        return SpaceAccess(space_from_row(row), row["role"], row["user_kind"])

    async def spaces_of(self, user_id: str) -> list[SpaceAccess]:
        rows = await self.db.read(
            lambda c: c.execute(
                "SELECT s.*, m.role FROM spaces s JOIN memberships m ON m.space_id = s.id "
                "WHERE m.user_id = ? ORDER BY s.type != 'personal', s.created_at, s.id",
                (user_id,),
            ).fetchall()
        )
        return [SpaceAccess(space_from_row(r), r["role"]) for r in rows]

    async def members(self, space_id: str) -> list[tuple[User, str]]:
        rows = await self.db.read(
            lambda c: c.execute(
                "SELECT u.*, m.role FROM users u JOIN memberships m ON m.user_id = u.id "
                "WHERE m.space_id = ? ORDER BY u.email",
                (space_id,),
            ).fetchall()
        )
        return [(_user(r), r["role"]) for r in rows]
