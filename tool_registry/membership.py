"""Who may act in a space: the one home of the membership rule and the owner/admin rule.

Every surface (the pipeline, the stdio and HTTP callers, missions, proposals, the destructive
allowlist, the CLI) applies these, so they all answer alike:

- member: a caller who is not a member of the space gets `NotAMemberError` ("not a member of
  space 'x'", reason `not-a-member`, HTTP 403) whether or not the space exists. The message echoes
  the caller's own reference and nothing the server resolved (slug, name, id), so no surface tells
  a stranger which spaces exist.
- manager: changing a space's settings (its destructive allowlist, agents, members) takes its
  owner or an admin; anyone else gets `PermissionDeniedError` ("only the space's owner or an
  admin may ...").
"""

from __future__ import annotations

from tool_registry.errors import NotAMemberError, PermissionDeniedError
from tool_registry.store.accounts import Accounts, SpaceAccess

MANAGER_ROLES: frozenset[str] = frozenset({"owner", "admin"})


def not_a_member(space_ref: str | None) -> NotAMemberError:
    """The one refusal for a space the caller cannot use (unknown or someone else's).
    `space_ref` is what the caller asked for (id or slug; None: their personal space)."""
    if space_ref is None:
        return NotAMemberError("the caller has no personal space")
    return NotAMemberError(f"not a member of space {space_ref!r}")


def member_problem(access: SpaceAccess | None, space_ref: str | None) -> NotAMemberError | None:
    """The refusal for this lookup (`Accounts.access(user, space_ref)`), or None for a member.
    For boundaries that answer a refusal instead of raising it (the HTTP guard)."""
    if access is None or access.role is None:
        return not_a_member(space_ref)
    return None


def check_member(access: SpaceAccess | None, space_ref: str | None) -> SpaceAccess:
    """`access` when it is a membership; raises the one refusal otherwise."""
    if access is None or access.role is None:
        raise not_a_member(space_ref)
    return access


def check_role(role: str | None, space_ref: str | None) -> str:
    """The role when there is one; for checks made inside a transaction on a raw row."""
    if role is None:
        raise not_a_member(space_ref)
    return role


def is_manager(role: str | None) -> bool:
    """True for the space's owner and admins."""
    return role in MANAGER_ROLES


def check_manager(role: str | None, what: str) -> None:
    """Raises unless `role` may manage the space; `what` completes "only ... may <what>"."""
    if not is_manager(role):
        raise PermissionDeniedError(f"only the space's owner or an admin may {what}")


async def require_member(accounts: Accounts, user_id: str, space_ref: str | None) -> SpaceAccess:
    """The space (id or slug; None: the personal space) with the user's role; raises the one
    refusal when the user is not a member, whether or not the space exists."""
    return check_member(await accounts.access(user_id, space_ref), space_ref)


async def require_manager(
    accounts: Accounts, user_id: str, space_ref: str | None, what: str
) -> SpaceAccess:
    """Like `require_member`, and the user must be the space's owner or an admin."""
    access = await require_member(accounts, user_id, space_ref)
    check_manager(access.role, what)
    return access
