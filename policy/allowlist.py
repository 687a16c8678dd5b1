"""The per-space destructive allowlist and destructive mode, stored in the database (tables
`space_destructive_allowlist`, `space_destructive_mode` and `space_policy_audit`).

The mode says what happens to a destructive tool that is NOT on the allowlist (tools on it run
as usual): `deny` (the default: denied), `confirm` (a person's call runs once the user confirms
it in their client; agents stay denied) or `allow` (runs, for every invoker: the same as
allowlisting every destructive tool). See `policy.rules` for the exact rule.

- Empty for every space until someone opts in.
- Any member may read it (agents too, through the read tool `spaces.getPolicy`).
- Only the space's owner or an admin may change it. No registered tool changes it: an opt-in is
  a human decision, reachable from the CLI (`mana policy allow|revoke`) and, later, an
  authenticated settings endpoint, never through MCP or an agent.
- A change names registered, user-space destructive tools only; unknown or non-destructive
  names are rejected with the offending names. Adding requires an explicit acknowledgement.
- Every tool added or removed writes one audit row (space, actor, action, tool, time); every
  mode change writes one (action `destructive-mode`, the new mode). Setting `allow` requires
  an explicit acknowledgement too.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from policy.rules import DEFAULT_DESTRUCTIVE_MODE, DESTRUCTIVE_MODES, DestructiveMode
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
    destructive_mode,
    log_changes,
    log_mode_change,
    remove_tools,
    store_destructive_mode,
)
from tool_registry.store.connection import Conn
from tool_registry.store.database import Database

Action = Literal["allow", "revoke"]

ACKNOWLEDGE_TEXT = (
    "allowing a destructive tool lets agents and MCP clients acting in this space delete data "
    "with it without asking anyone first; re-run with --acknowledge to confirm"
)
ACKNOWLEDGE_MODE_TEXT = (
    "destructive mode allow lets agents and MCP clients acting in this space delete data with "
    "every destructive tool without asking anyone first; re-run with --acknowledge to confirm"
)


@dataclass(frozen=True)
class SpacePolicyView:
    """The allowlist as one member sees it."""

    space: Space
    role: str
    allowed: tuple[AllowedTool, ...]
    destructive_tools: tuple[str, ...]
    mode: DestructiveMode = DEFAULT_DESTRUCTIVE_MODE

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


@dataclass(frozen=True)
class ModeChange:
    space: Space
    previous: DestructiveMode
    mode: DestructiveMode

    @property
    def changed(self) -> bool:
        return self.previous != self.mode


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

    async def mode(self, space_id: str) -> DestructiveMode:
        """The space's destructive mode (no permission check: the gate's view)."""
        return await self.db.read(lambda c: destructive_mode(c, space_id))

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
        mode = await self.db.read(lambda c: destructive_mode(c, space_id))
        return SpacePolicyView(space, role, allowed, self.destructive_tools(), mode)

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

    async def set_mode(
        self, actor_id: str, space_ref: str | None, mode: str, *, acknowledge: bool
    ) -> ModeChange:
        """Set the space's destructive mode (owner or admin; `allow` must be acknowledged).
        An actual change writes one change-log row in the same transaction."""
        if mode not in DESTRUCTIVE_MODES:
            raise ValidationFailed(
                f"unknown destructive mode {mode!r}; use one of {', '.join(DESTRUCTIVE_MODES)}"
            )
        new_mode: DestructiveMode = mode
        if new_mode == "allow" and not acknowledge:
            raise ValidationFailed(ACKNOWLEDGE_MODE_TEXT)
        space, _ = await self._member_access(actor_id, space_ref)
        now = iso(self.clock.now())
        space_id = space.id

        def work(conn: Conn) -> ModeChange:
            role = check_role(member_role(conn, space_id, actor_id), space_ref)
            check_manager(role, "change the destructive mode")
            previous = destructive_mode(conn, space_id)
            if previous != new_mode:
                store_destructive_mode(conn, space_id, new_mode, set_by=actor_id, at=now)
                log_mode_change(conn, space_id, new_mode, actor_id=actor_id, at=now)
            return ModeChange(space, previous, new_mode)

        result: ModeChange = await self.db.write(work)
        return result

    async def audit(
        self, actor_id: str, space_ref: str | None, *, limit: int = 100
    ) -> list[PolicyAuditEntry]:
        """Changes to the space's allowlist and destructive mode, newest first; any member may
        read them."""
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
