"""MCP-facing tools of the `missions` and `proposals` modules, so a Claude Desktop user can set
up and review missions by talking: `missions.list`, `missions.create`, `missions.pause`,
`missions.resume`, `missions.complete` (writes), `missions.iterations` and `proposals.list`.
Archiving a mission is final, so it stays a CLI act (`mana missions archive`).

Handlers reach the data only through `ctx.backend(MISSIONS)`: a `SpaceMissions` view bound to the
caller's user and space (`missions.view`); the unscoped `MissionsService` configured in the
composition root is never handed to a handler. Proposals are decided by a person: at the
CLI, or with `proposals.review` (`missions.review`), which asks the user about each proposal
in their client and cannot run without one that can ask. Neither module is ever offered to an agent running a mission (see
`missions.runner.MissionTools`).

These specs are registered by the composition root (`build_registry(extra=TOOLS)`), never by
`tool_registry`, which must not depend on this package.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Literal

from pydantic import Field

from missions.cadence import MANUAL, Cadence, cadence_to_json, describe
from missions.models import Agent, Iteration, Mission, MissionState, Proposal
from missions.review import PROPOSALS_REVIEW
from missions.view import MISSIONS, SpaceMissions
from tool_registry.context import ToolContext
from tool_registry.models import ToolInput, ToolOutput
from tool_registry.spec import ToolSpec

ProposalFilter = Literal["pending", "approved", "rejected", "executed", "failed", "expired", "all"]
EntityId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]


def _missions(ctx: ToolContext) -> SpaceMissions:
    """The caller's missions in the call's space (never the unscoped service)."""
    return ctx.backend(MISSIONS)


# -- outputs ------------------------------------------------------------------------------------


class AgentSummary(ToolOutput):
    id: str
    name: str
    role: str
    state: str
    max_tokens_per_day: int | None
    max_concurrent: int

    @classmethod
    def of(cls, agent: Agent) -> AgentSummary:
        return cls(
            id=agent.id,
            name=agent.name,
            role=agent.role,
            state=agent.state,
            max_tokens_per_day=agent.max_tokens_per_day,
            max_concurrent=agent.max_concurrent,
        )


class MissionSummary(ToolOutput):
    id: str
    title: str
    objective: str
    concept: str
    agent_id: str
    agent_name: str | None
    owner_id: str
    cadence: dict[str, Any]
    cadence_text: str
    state: MissionState
    next_run_at: str | None
    last_run_at: str | None
    last_status: str | None
    failures: int
    skip_reason: str | None
    running: bool
    created_at: str

    @classmethod
    def of(cls, m: Mission) -> MissionSummary:
        return cls(
            id=m.id,
            title=m.title,
            objective=m.objective,
            concept=m.concept,
            agent_id=m.agent_id,
            agent_name=m.agent_name,
            owner_id=m.owner_id,
            cadence=cadence_to_json(m.cadence),
            cadence_text=describe(m.cadence),
            state=m.state,
            next_run_at=m.next_run_at,
            last_run_at=m.last_run_at,
            last_status=m.last_status,
            failures=m.failures,
            skip_reason=m.skip_reason,
            running=m.lease_owner is not None,
            created_at=m.created_at,
        )


class StepSummary(ToolOutput):
    round: int
    tool: str
    status: str
    proposal_id: str | None = None
    proposal_status: str | None = None


class Usage(ToolOutput):
    input_tokens: int
    output_tokens: int


class IterationError(ToolOutput):
    name: str
    message: str | None
    phase: str | None


class IterationSummary(ToolOutput):
    id: str
    status: str
    phase: str
    trigger: str
    attempt: int
    started_at: str
    finished_at: str | None
    summary: str | None
    steps: list[StepSummary]
    usage: Usage
    error: IterationError | None

    @classmethod
    def of(cls, it: Iteration) -> IterationSummary:
        return cls(
            id=it.id,
            status=it.status,
            phase=it.phase,
            trigger=it.trigger,
            attempt=it.attempt,
            started_at=it.started_at,
            finished_at=it.finished_at,
            summary=it.summary,
            steps=[
                StepSummary(
                    round=s.round,
                    tool=s.tool,
                    status=s.status,
                    proposal_id=s.proposal_id,
                    proposal_status=s.proposal_status,
                )
                for s in it.plan
            ],
            usage=Usage(input_tokens=it.input_tokens, output_tokens=it.output_tokens),
            error=IterationError(name=it.error_name, message=it.error_message, phase=it.error_phase)
            if it.error_name
            else None,
        )


class ProposalSummary(ToolOutput):
    id: str
    mission_id: str
    iteration_id: str
    tool: str
    arguments: dict[str, Any]
    rationale: str
    status: str
    fingerprint: str
    created_at: str
    expires_at: str
    decided_by: str | None
    decided_at: str | None

    @classmethod
    def of(cls, p: Proposal) -> ProposalSummary:
        return cls(
            id=p.id,
            mission_id=p.mission_id,
            iteration_id=p.iteration_id,
            tool=p.tool,
            arguments=p.arguments,
            rationale=p.rationale,
            status=p.status,
            fingerprint=p.fingerprint,
            created_at=p.created_at,
            expires_at=p.expires_at,
            decided_by=p.decided_by,
            decided_at=p.decided_at,
        )


# -- missions.list ------------------------------------------------------------------------------


class ListInput(ToolInput):
    state: MissionState | None = Field(
        default=None, description="Only missions in this state (archived ones only this way)."
    )
    limit: int = Field(default=50, ge=1, le=200, description="At most this many missions.")


class MissionList(ToolOutput):
    missions: list[MissionSummary]
    agents: list[AgentSummary]


async def list_missions(inp: ListInput, ctx: ToolContext) -> MissionList:
    view = _missions(ctx)
    missions = await view.list_missions(state=inp.state, include_archived=False, limit=inp.limit)
    agents = await view.list_agents()
    return MissionList(
        missions=[MissionSummary.of(m) for m in missions],
        agents=[AgentSummary.of(a) for a in agents],
    )


LIST = ToolSpec(
    name="missions.list",
    title="List missions",
    description=(
        "List the missions in the active space (newest first) with their agent, cadence, state, "
        "next and last run, plus the space's agents (use an agent's name or id with "
        "missions.create). Archived missions are left out unless asked for with "
        "state=archived."
    ),
    module="missions",
    scope="user-space",
    policy_hint="read",
    requires=(MISSIONS.name,),
    input=ListInput,
    output=MissionList,
    handler=list_missions,
)


# -- missions.create ----------------------------------------------------------------------------


class CreateInput(ToolInput):
    title: str = Field(min_length=1, max_length=200, description="Short name of the mission.")
    objective: str = Field(
        min_length=1, max_length=20_000, description="What the agent should achieve."
    )
    concept: str = Field(
        default="",
        max_length=20_000,
        description="Optional notes on approach, tone, constraints.",
    )
    agent: str | None = Field(
        default=None,
        min_length=1,
        max_length=80,
        description=(
            "Name or id of an agent of this space (see missions.list). Optional when the space "
            "has exactly one active agent."
        ),
    )
    cadence: Cadence = Field(
        default=MANUAL,
        description=(
            "When it runs: {kind: manual} (only on request), {kind: interval, everyMinutes}, "
            "{kind: daily, hour, minute, timezone}, {kind: weekly, day: mon..sun, hour, minute, "
            "timezone} or {kind: cron, expression, timezone}. Default manual."
        ),
    )


async def create_mission(inp: CreateInput, ctx: ToolContext) -> MissionSummary:
    mission = await _missions(ctx).create_mission(
        agent=inp.agent,
        title=inp.title,
        objective=inp.objective,
        concept=inp.concept,
        cadence=inp.cadence,
    )
    return MissionSummary.of(mission)


CREATE = ToolSpec(
    name="missions.create",
    title="Create a mission",
    description=(
        "Create a mission in the active space: an objective that one of the space's agents "
        "pursues on a cadence (manual, every N minutes, daily, weekly or cron, in a time zone). "
        "The mission runs as you. The agent's tool policy decides which of its calls run and "
        "which wait for your approval. Returns the mission with its next run time."
    ),
    module="missions",
    scope="user-space",
    policy_hint="write",
    requires=(MISSIONS.name,),
    input=CreateInput,
    output=MissionSummary,
    handler=create_mission,
)


# -- missions.pause / resume / complete ----------------------------------------------------------


class MissionRef(ToolInput):
    mission_id: EntityId = Field(description="Id of the mission (see missions.list).")


def _set_state(
    state: MissionState,
) -> Callable[[MissionRef, ToolContext], Awaitable[MissionSummary]]:
    """The handler of a tool that moves a mission to `state` (rules: `MissionsService.set_state`)."""

    async def handler(inp: MissionRef, ctx: ToolContext) -> MissionSummary:
        mission = await _missions(ctx).set_state(inp.mission_id, state)
        return MissionSummary.of(mission)

    return handler


PAUSE = ToolSpec(
    name="missions.pause",
    title="Pause a mission",
    description=(
        "Pause a mission of the active space so it no longer runs on its cadence (a run in "
        "progress finishes). Only the mission's owner or the space's owner or an admin may "
        "pause it. missions.resume starts it again."
    ),
    module="missions",
    scope="user-space",
    policy_hint="write",
    idempotent=True,
    requires=(MISSIONS.name,),
    input=MissionRef,
    output=MissionSummary,
    handler=_set_state("paused"),
)

RESUME = ToolSpec(
    name="missions.resume",
    title="Resume a mission",
    description=(
        "Start a paused or completed mission of the active space again; its next run is "
        "computed from its cadence starting now (missed runs are not made up). An archived "
        "mission cannot be resumed. Only the mission's owner or the space's owner or an admin "
        "may resume it."
    ),
    module="missions",
    scope="user-space",
    policy_hint="write",
    idempotent=True,
    requires=(MISSIONS.name,),
    input=MissionRef,
    output=MissionSummary,
    handler=_set_state("active"),
)

COMPLETE = ToolSpec(
    name="missions.complete",
    title="Mark a mission done",
    description=(
        "Mark a mission of the active space as done when its objective is reached: it no "
        "longer runs (a run in progress finishes) until missions.resume. Only the mission's "
        "owner or the space's owner or an admin may complete it."
    ),
    module="missions",
    scope="user-space",
    policy_hint="write",
    idempotent=True,
    requires=(MISSIONS.name,),
    input=MissionRef,
    output=MissionSummary,
    handler=_set_state("done"),
)


# -- missions.iterations ------------------------------------------------------------------------


class IterationsInput(ToolInput):
    mission_id: EntityId = Field(description="Id of the mission (see missions.list).")
    limit: int = Field(default=10, ge=1, le=100, description="At most this many, newest first.")


class IterationList(ToolOutput):
    iterations: list[IterationSummary]


async def list_iterations(inp: IterationsInput, ctx: ToolContext) -> IterationList:
    iterations = await _missions(ctx).list_iterations(inp.mission_id, limit=inp.limit)
    return IterationList(iterations=[IterationSummary.of(i) for i in iterations])


ITERATIONS = ToolSpec(
    name="missions.iterations",
    title="List a mission's runs",
    description=(
        "List the runs (iterations) of a mission in the active space, newest first: status "
        "(running, awaiting-review, completed, failed, cancelled), phase, each tool call with "
        "its status (executed, proposed, denied, failed), the agent's summary, token usage and "
        "any error."
    ),
    module="missions",
    scope="user-space",
    policy_hint="read",
    requires=(MISSIONS.name,),
    input=IterationsInput,
    output=IterationList,
    handler=list_iterations,
)


# -- proposals.list -----------------------------------------------------------------------------


class ProposalsInput(ToolInput):
    status: ProposalFilter = Field(default="pending", description="Filter by status (or all).")
    mission_id: EntityId | None = Field(default=None, description="Only this mission's.")
    limit: int = Field(default=50, ge=1, le=200, description="At most this many, newest first.")


class ProposalList(ToolOutput):
    proposals: list[ProposalSummary]
    how_to_decide: str


DECIDE_HINT = (
    "Proposals are decided by a person: an owner or admin calls proposals.review, which asks "
    "the user about each one in their client, or runs `mana proposals approve ID` or "
    "`mana proposals reject ID` (approval runs exactly the proposed call, through the policy "
    "gate)."
)


async def list_proposals(inp: ProposalsInput, ctx: ToolContext) -> ProposalList:
    proposals = await _missions(ctx).list_proposals(
        status=None if inp.status == "all" else inp.status,
        mission_id=inp.mission_id,
        limit=inp.limit,
    )
    return ProposalList(
        proposals=[ProposalSummary.of(p) for p in proposals], how_to_decide=DECIDE_HINT
    )


PROPOSALS_LIST = ToolSpec(
    name="proposals.list",
    title="List proposed agent actions",
    description=(
        "List tool calls that agents in the active space proposed and that wait for a human "
        "decision (default: pending; or another status, or all), with the tool, arguments, the "
        "agent's rationale and expiry. Deciding is up to the user (proposals.review asks them); "
        "the result says how."
    ),
    module="proposals",
    scope="user-space",
    policy_hint="read",
    requires=(MISSIONS.name,),
    input=ProposalsInput,
    output=ProposalList,
    handler=list_proposals,
)

TOOLS: tuple[ToolSpec[Any, Any], ...] = (
    LIST,
    CREATE,
    PAUSE,
    RESUME,
    COMPLETE,
    ITERATIONS,
    PROPOSALS_LIST,
    PROPOSALS_REVIEW,
)
