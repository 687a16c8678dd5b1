"""`SpaceMissions`: what a `missions.*` or `proposals.list` handler gets, the missions data of
one caller in one space, as `ctx.store` is for records.

The tools' backend is registered under `MISSIONS`, a `ScopedBackendKey`: the composition root
registers (and the CLI and daemon read) the unscoped `MissionsService`, while a handler's
`ctx.backend(MISSIONS)` builds a `SpaceMissions` per call from the call's user and space. The
view has only the operations the tools need and no method takes a user or space, so a handler
cannot reach another space's missions; the service's rules (membership, who may pause, what is
not found) apply unchanged.
"""

from __future__ import annotations

from missions.cadence import MANUAL, Cadence
from missions.models import Agent, Iteration, Mission, MissionState, Proposal
from missions.service import MissionsService
from tool_registry.context import ScopedBackendKey
from tool_registry.store.accounts import Space


class SpaceMissions:
    """The missions, agents, runs and proposals of one space, for one user (a member: the
    service checks it on every call)."""

    def __init__(self, service: MissionsService, user_id: str, space: Space) -> None:
        self._service = service
        self._user_id = user_id
        self._space = space

    @property
    def user_id(self) -> str:
        return self._user_id

    @property
    def space(self) -> Space:
        return self._space

    async def list_agents(self) -> list[Agent]:
        return await self._service.list_agents(user_id=self._user_id, space_id=self._space.id)

    async def list_missions(
        self, *, state: MissionState | None = None, include_archived: bool = False, limit: int = 50
    ) -> list[Mission]:
        """`include_archived=False` hides archived missions unless `state` names a state."""
        return await self._service.list_missions(
            user_id=self._user_id,
            space_id=self._space.id,
            state=state,
            include_archived=include_archived,
            limit=limit,
        )

    async def create_mission(
        self,
        *,
        agent: str | None,
        title: str,
        objective: str,
        concept: str = "",
        cadence: Cadence = MANUAL,
    ) -> Mission:
        """A mission owned by this user in this space (`MissionsService.create_mission`)."""
        return await self._service.create_mission(
            user_id=self._user_id,
            space_id=self._space.id,
            agent=agent,
            title=title,
            objective=objective,
            concept=concept,
            cadence=cadence,
        )

    async def set_state(self, mission_id: str, state: MissionState) -> Mission:
        """Pause, resume or complete a mission of this space (`MissionsService.set_state`)."""
        return await self._service.set_state(
            user_id=self._user_id, space_id=self._space.id, mission_id=mission_id, state=state
        )

    async def list_iterations(self, mission_id: str, *, limit: int = 10) -> list[Iteration]:
        return await self._service.list_iterations(
            user_id=self._user_id, space_id=self._space.id, mission_id=mission_id, limit=limit
        )

    async def list_proposals(
        self, *, status: str | None = "pending", mission_id: str | None = None, limit: int = 50
    ) -> list[Proposal]:
        return await self._service.list_proposals(
            user_id=self._user_id,
            space_id=self._space.id,
            status=status,
            mission_id=mission_id,
            limit=limit,
        )


MISSIONS: ScopedBackendKey[MissionsService, SpaceMissions] = ScopedBackendKey(
    "missions", SpaceMissions, MissionsService
)
