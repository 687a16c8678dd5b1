"""`MissionsService`: the `missions` backend (registered under `missions.view.MISSIONS`). The CLI
and the daemon use it directly; every method takes the user and space explicitly and the store
filters by the space in SQL. The MCP tools (`missions.*`, `proposals.list`) never get it: their
`ctx.backend(MISSIONS)` is a `missions.view.SpaceMissions` bound to the caller's user and space.

Who may do what (the caller must be a member of the space in every case):

- list and show agents, missions, iterations, skips and proposals: any member;
- create a mission: any member (it runs as that member, so its agent can never do more than
  the member could);
- pause, resume, complete, archive or cancel a mission, or run it now: its owner, or the
  space's owner or admin;
- create, pause, resume or archive an agent: the space's owner or admin.

Deciding proposals is deliberately not here (see `missions.proposals.ProposalService`): the
tools' view is built on this object, and no tool may approve a call.
"""

from __future__ import annotations

from dataclasses import dataclass

from missions.cadence import MANUAL, Cadence
from missions.models import Agent, Iteration, Mission, MissionState, Proposal, Skip
from missions.settings import MissionSettings
from missions.store import MissionStore
from policy.agent_policy import AgentToolPolicy
from tool_registry.clock import Clock, SystemClock
from tool_registry.errors import (
    ConflictError,
    NotFoundError,
    PermissionDeniedError,
)
from tool_registry.membership import check_manager, is_manager, require_member
from tool_registry.store.accounts import Accounts, SpaceAccess
from tool_registry.store.database import Database


@dataclass(frozen=True)
class MissionDetail:
    mission: Mission
    agent: Agent | None
    iterations: list[Iteration]
    proposals: list[Proposal]
    skips: list[Skip]


class MissionsService:
    def __init__(
        self,
        db: Database,
        accounts: Accounts,
        *,
        clock: Clock | None = None,
        settings: MissionSettings | None = None,
    ) -> None:
        self.clock = clock or SystemClock()
        self.store = MissionStore(db, self.clock)
        self.accounts = accounts
        self.settings = settings or MissionSettings()

    # -- access --------------------------------------------------------------------------------

    async def access(self, user_id: str, space: str | None) -> SpaceAccess:
        """The space (id, slug, or None for the personal space) with the user's role."""
        return await require_member(self.accounts, user_id, space)

    async def _role(self, user_id: str, space_id: str) -> str:
        return (await self.access(user_id, space_id)).role or ""

    async def _require_manager(self, user_id: str, space_id: str, what: str) -> None:
        check_manager(await self._role(user_id, space_id), what)

    async def _controllable(self, user_id: str, space_id: str, mission_id: str) -> Mission:
        role = await self._role(user_id, space_id)
        mission = await self.store.require_mission(space_id, mission_id)
        if not is_manager(role) and mission.owner_id != user_id:
            raise PermissionDeniedError(
                "only the mission's owner or the space's owner or an admin may change it"
            )
        return mission

    # -- agents --------------------------------------------------------------------------------

    async def create_agent(
        self,
        *,
        user_id: str,
        space_id: str,
        name: str,
        role: str = "",
        system_prompt: str = "",
        memory: str = "",
        tool_policy: AgentToolPolicy | None = None,
        max_tokens_per_day: int | None = None,
        max_concurrent: int = 1,
    ) -> Agent:
        await self._require_manager(user_id, space_id, "create agents")
        return await self.store.create_agent(
            space_id=space_id,
            created_by=user_id,
            name=name,
            role=role,
            system_prompt=system_prompt,
            memory=memory,
            tool_policy=tool_policy,
            max_tokens_per_day=max_tokens_per_day,
            max_concurrent=max_concurrent,
        )

    async def list_agents(self, *, user_id: str, space_id: str) -> list[Agent]:
        await self._role(user_id, space_id)
        return await self.store.list_agents(space_id)

    async def get_agent(self, *, user_id: str, space_id: str, ref: str) -> Agent:
        await self._role(user_id, space_id)
        return await self.store.require_agent(space_id, ref)

    async def set_agent_state(self, *, user_id: str, space_id: str, ref: str, state: str) -> Agent:
        await self._require_manager(user_id, space_id, "change agents")
        agent = await self.store.require_agent(space_id, ref)
        return await self.store.set_agent_state(space_id, agent.id, state)

    async def agent_tokens_used(self, agent: Agent) -> int:
        return await self.store.tokens_used(agent.id)

    # -- missions ------------------------------------------------------------------------------

    async def list_missions(
        self,
        *,
        user_id: str,
        space_id: str,
        state: str | None = None,
        include_archived: bool = True,
        limit: int = 100,
    ) -> list[Mission]:
        """`include_archived=False` hides archived missions unless `state` names a state."""
        await self._role(user_id, space_id)
        return await self.store.list_missions(
            space_id, state=state, include_archived=include_archived, limit=limit
        )

    async def create_mission(
        self,
        *,
        user_id: str,
        space_id: str,
        agent: str | None,
        title: str,
        objective: str,
        concept: str = "",
        cadence: Cadence = MANUAL,
    ) -> Mission:
        """`agent` is an agent's id or name in the space; None picks the space's only active
        agent (and fails, listing them, when there is not exactly one)."""
        await self._role(user_id, space_id)
        if agent is None:
            active = [a for a in await self.store.list_agents(space_id) if a.state == "active"]
            if len(active) != 1:
                names = ", ".join(a.name for a in active) or "none"
                raise ConflictError(
                    f"name the agent for this mission (active agents in this space: {names})",
                    reason="agent-required",
                )
            chosen = active[0]
        else:
            chosen = await self.store.require_agent(space_id, agent)
        return await self.store.create_mission(
            space_id=space_id,
            owner_id=user_id,
            agent_id=chosen.id,
            title=title,
            objective=objective,
            concept=concept,
            cadence=cadence,
        )

    async def get_mission(self, *, user_id: str, space_id: str, mission_id: str) -> Mission:
        await self._role(user_id, space_id)
        return await self.store.require_mission(space_id, mission_id)

    async def mission_detail(
        self, *, user_id: str, space_id: str, mission_id: str, iterations: int = 5
    ) -> MissionDetail:
        mission = await self.get_mission(user_id=user_id, space_id=space_id, mission_id=mission_id)
        await self.store.expire_proposals()
        return MissionDetail(
            mission=mission,
            agent=await self.store.find_agent(space_id, mission.agent_id),
            iterations=await self.store.list_iterations(space_id, mission.id, limit=iterations),
            proposals=await self.store.list_proposals(
                space_id, status="pending", mission_id=mission.id
            ),
            skips=await self.store.skips(space_id, mission.id, limit=10),
        )

    async def set_state(
        self, *, user_id: str, space_id: str, mission_id: str, state: MissionState
    ) -> Mission:
        """Pause (`paused`), resume (`active`), complete (`done`) or archive (`archived`), by the
        mission's owner or the space's owner or an admin. The state rules live in
        `MissionStore.set_mission_state`: resuming computes a fresh next run from now; `done`
        and `archived` clear the next run and let a running iteration finish without
        scheduling another; `archived` is final (`ConflictError` on any change away from it)."""
        await self._controllable(user_id, space_id, mission_id)
        return await self.store.set_mission_state(space_id, mission_id, state)

    async def cancel_mission(self, *, user_id: str, space_id: str, mission_id: str) -> list[str]:
        """Ask the mission's running iterations to stop between rounds; their ids."""
        await self._controllable(user_id, space_id, mission_id)
        return await self.store.request_cancel(space_id, mission_id)

    async def check_can_run(self, *, user_id: str, space_id: str, mission_id: str) -> Mission:
        return await self._controllable(user_id, space_id, mission_id)

    # -- iterations and proposals ----------------------------------------------------------------

    async def list_iterations(
        self, *, user_id: str, space_id: str, mission_id: str, limit: int = 10
    ) -> list[Iteration]:
        await self._role(user_id, space_id)
        await self.store.require_mission(space_id, mission_id)
        return await self.store.list_iterations(space_id, mission_id, limit=limit)

    async def get_iteration(
        self, *, user_id: str, space_id: str, iteration_id: str, transcript: bool = False
    ) -> Iteration:
        await self._role(user_id, space_id)
        found = await self.store.find_iteration(space_id, iteration_id, transcript=transcript)
        if found is None:
            raise NotFoundError(f"no iteration {iteration_id!r} in this space")
        return found

    async def list_proposals(
        self,
        *,
        user_id: str,
        space_id: str,
        status: str | None = "pending",
        mission_id: str | None = None,
        limit: int = 50,
    ) -> list[Proposal]:
        await self._role(user_id, space_id)
        await self.store.expire_proposals()
        return await self.store.list_proposals(
            space_id, status=status, mission_id=mission_id, limit=limit
        )
