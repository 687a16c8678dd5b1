"""The per-space destructive allowlist, stored in the database (tables
`space_destructive_allowlist` and `space_policy_audit`).

- Empty for every space until someone opts in.
- Any member may read it (agents too, through the read tool `spaces.getPolicy`).
- Only the space's owner or an admin may change it. No registered tool changes it: an opt-in is
  a human decision, reachable from the CLI (`mana policy allow|revoke`) and, later, an
  authenticated settings endpoint, never through MCP or an agent.
- A change names registered, user-space destructive tools only; unknown or non-destructive
  names are rejected with the offending names. Adding requires an explicit acknowledgement.
- Every tool added or removed writes one audit row (space, actor, action, tool, time).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from tool_registry.clock import Clock, SystemClock, iso
from tool_registry.errors import (
    ValidationFailed,
)
from tool_registry.membership import check_manager, check_role, is_manager, require_member
from tool_registry.registry import Registry
from tool_registry.store.accounts import Accounts, Space, member_role
from tool_registry.store.allowlist import (
    AllowedTool,
    PolicyAuditEntry,
    add_tools,
    allowed_tool_names,
    allowed_tools,
    change_log,
    log_changes,
    remove_tools,
)
from tool_registry.store.connection import Conn
from tool_registry.store.database import Database

Action = Literal["allow", "revoke"]

ACKNOWLEDGE_TEXT = (
    "allowing a destructive tool lets agents and MCP clients acting in this space delete data "
    "with it without asking anyone first; re-run with --acknowledge to confirm"
)


@dataclass(frozen=True)
class SpacePolicyView:
    """The allowlist as one member sees it."""

    space: Space
    role: str
    allowed: tuple[AllowedTool, ...]
    destructive_tools: tuple[str, ...]

    @property
    def tools(self) -> frozenset[str]:
        return frozenset(a.tool for a in self.allowed)

    @property
    def not_allowed(self) -> tuple[str, ...]:
        allowed = self.tools
        return tuple(t for t in self.destructive_tools if t not in allowed)

    @property
    def can_change(self) -> bool:
        return is_manager(self.role)


@dataclass(frozen=True)
class AllowlistChange:
    space: Space
    action: Action
    changed: tuple[str, ...]
    unchanged: tuple[str, ...]


def _unique(names: Iterable[str]) -> list[str]:
    seen: dict[str, None] = {}
    for name in names:
        name = name.strip()
        if name:
            seen.setdefault(name, None)
    return list(seen)


class DestructiveAllowlist:
    """Read and change the destructive allowlist of spaces. Built in the composition root."""

    def __init__(
        self,
        db: Database,
        registry: Registry,
        *,
        accounts: Accounts | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.db = db
        self.registry = registry
        self.clock = clock or SystemClock()
        self.accounts = accounts or Accounts(db, self.clock)

    # -- for the gate ------------------------------------------------------------------------

    async def tools(self, space_id: str) -> frozenset[str]:
        """The tool names the space has opted in to (no permission check: the gate's view)."""
        return await self.db.read(lambda c: allowed_tool_names(c, space_id))

    def destructive_tools(self) -> tuple[str, ...]:
        """Registered tools a space may opt in to: user-space scope, destructive hint."""
        return tuple(
            s.name for s in self.registry if s.policy_hint == "destructive" and s.exposable
        )

    # -- for people --------------------------------------------------------------------------

    async def show(self, actor_id: str, space_ref: str | None) -> SpacePolicyView:
        """The space's allowlist; any member may read it."""
        space, role = await self._member_access(actor_id, space_ref)
        space_id = space.id
        allowed = tuple(await self.db.read(lambda c: allowed_tools(c, space_id)))
        return SpacePolicyView(space, role, allowed, self.destructive_tools())

    async def allow(
        self,
        actor_id: str,
        space_ref: str | None,
        tools: Iterable[str],
        *,
        acknowledge: bool,
    ) -> AllowlistChange:
        """Add destructive tools to the space's allowlist (owner or admin, acknowledged)."""
        return await self._change("allow", actor_id, space_ref, _unique(tools), acknowledge)

    async def revoke(
        self, actor_id: str, space_ref: str | None, tools: Iterable[str]
    ) -> AllowlistChange:
        """Remove tools from the space's allowlist (owner or admin)."""
        return await self._change("revoke", actor_id, space_ref, _unique(tools), False)

    async def audit(
        self, actor_id: str, space_ref: str | None, *, limit: int = 100
    ) -> list[PolicyAuditEntry]:
        """Changes to the space's allowlist, newest first; any member may read them."""
        space, _ = await self._member_access(actor_id, space_ref)
        space_id = space.id
        return await self.db.read(lambda c: change_log(c, space_id, limit=limit))

    # -- internals ---------------------------------------------------------------------------

    async def _member_access(self, actor_id: str, space_ref: str | None) -> tuple[Space, str]:
        access = await require_member(self.accounts, actor_id, space_ref)
        return access.space, check_role(access.role, space_ref)

    def _check_names(self, names: list[str], current: frozenset[str], action: Action) -> None:
        if not names:
            raise ValidationFailed("name at least one tool, e.g. notes.delete")
        unknown: list[str] = []
        not_destructive: list[str] = []
        for name in names:
            if action == "revoke" and name in current:
                continue  # a stale entry (tool no longer registered) can always be removed
            spec = self.registry.get(name)
            if spec is None:
                unknown.append(name)
            elif spec.policy_hint != "destructive" or not spec.exposable:
                not_destructive.append(name)
        if unknown or not_destructive:
            parts = []
            if unknown:
                parts.append(f"unknown tools: {', '.join(unknown)}")
            if not_destructive:
                parts.append(f"not destructive user-space tools: {', '.join(not_destructive)}")
            options = ", ".join(self.destructive_tools()) or "none"
            raise ValidationFailed(
                f"only registered destructive tools can be {action}ed ({'; '.join(parts)}); "
                f"destructive tools: {options}"
            )

    async def _change(
        self,
        action: Action,
        actor_id: str,
        space_ref: str | None,
        names: list[str],
        acknowledge: bool,
    ) -> AllowlistChange:
        space, _ = await self._member_access(actor_id, space_ref)
        now = iso(self.clock.now())
        space_id = space.id

        def work(conn: Conn) -> AllowlistChange:
            # Permission, validation and change in one write transaction: a role revoked in the
            # meantime cannot slip a change through.
            role = check_role(member_role(conn, space_id, actor_id), space_ref)
            check_manager(role, "change the destructive allowlist")
            current = allowed_tool_names(conn, space_id)
            self._check_names(names, current, action)
            if action == "allow":
                if not acknowledge:
                    raise ValidationFailed(ACKNOWLEDGE_TEXT)
                changed = [n for n in names if n not in current]
                add_tools(conn, space_id, changed, added_by=actor_id, at=now)
            else:
                changed = [n for n in names if n in current]
                remove_tools(conn, space_id, changed)
            log_changes(conn, space_id, changed, actor_id=actor_id, action=action, at=now)
            unchanged = tuple(n for n in names if n not in changed)
            return AllowlistChange(space, action, tuple(changed), unchanged)

        result: AllowlistChange = await self.db.write(work)
        return result
