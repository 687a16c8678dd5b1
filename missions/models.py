"""Records of the missions component as the code sees them (rows in, JSON out)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, get_args

from missions.cadence import Cadence, cadence_from_json, cadence_to_json, describe
from policy.agent_policy import AgentToolPolicy
from tool_registry.clock import parse_iso
from tool_registry.store.connection import Row

AgentState = Literal["active", "paused", "archived"]
MissionState = Literal["active", "paused", "done", "archived"]
IterationStatus = Literal["running", "awaiting-review", "completed", "failed", "cancelled"]
StepStatus = Literal["executed", "proposed", "denied", "failed"]
ProposalStatus = Literal["pending", "approved", "rejected", "executed", "failed", "expired"]
Trigger = Literal["schedule", "manual"]
Phase = Literal["starting", "model", "tools", "done"]
SkipReason = Literal["agent-paused", "agent-archived", "agent-busy", "out-of-budget"]

AGENT_STATES: tuple[str, ...] = get_args(AgentState)
MISSION_STATES: tuple[str, ...] = get_args(MissionState)
ITERATION_STATUSES: tuple[str, ...] = get_args(IterationStatus)
PROPOSAL_STATUSES: tuple[str, ...] = get_args(ProposalStatus)
SKIP_REASONS: tuple[str, ...] = get_args(SkipReason)
# A mission in one of these states is finished with: never due, no next run (see
# `MissionStore.set_mission_state`); `done` can be resumed, `archived` is final.
RETIRED_MISSION_STATES: tuple[str, ...] = ("done", "archived")

# Module names never offered to an agent inside a mission (or a persona tick): an agent that
# could create missions or decide proposals could replicate itself or approve its own calls.


def _time(value: str | None) -> datetime | None:
    return parse_iso(value) if value else None


@dataclass(frozen=True)
class Agent:
    id: str
    space_id: str
    name: str
    role: str
    system_prompt: str
    memory: str
    tool_policy: AgentToolPolicy
    max_tokens_per_day: int | None
    max_concurrent: int
    state: str
    created_by: str | None
    created_at: str
    updated_at: str

    @classmethod
    def from_row(cls, row: Row) -> Agent:
        return cls(
            id=row["id"],
            space_id=row["space_id"],
            name=row["name"],
            role=row["role"],
            system_prompt=row["system_prompt"],
            memory=row["memory"],
            tool_policy=AgentToolPolicy.from_json(json.loads(row["tool_policy"])),
            max_tokens_per_day=row["max_tokens_per_day"],
            max_concurrent=row["max_concurrent"],
            state=row["state"],
            created_by=row["created_by"],
            created_at=row["created_at"],
            updated_at=row["updated_at"],
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "spaceId": self.space_id,
            "name": self.name,
            "role": self.role,
            "systemPrompt": self.system_prompt,
            "memory": self.memory,
            "toolPolicy": self.tool_policy.to_json(),
            "maxTokensPerDay": self.max_tokens_per_day,
            "maxConcurrent": self.max_concurrent,
            "state": self.state,
            "createdBy": self.created_by,
            "createdAt": self.created_at,
            "updatedAt": self.updated_at,
        }


@dataclass(frozen=True)
class Mission:
    id: str
    space_id: str
    owner_id: str
    agent_id: str
    title: str
    objective: str
    concept: str
    cadence: Cadence
    state: str
    next_run_at: str | None
    window_at: str | None
    failures: int
    backoff_until: str | None
    last_error: str | None
    last_run_at: str | None
    last_status: str | None
    skip_reason: str | None
    skipped_at: str | None
    lease_owner: str | None
    lease_expires_at: str | None
    created_at: str
    updated_at: str
    agent_name: str | None = None

    @classmethod
    def from_row(cls, row: Row) -> Mission:
        keys = row.keys()
        return cls(
            id=row["id"],
            space_id=row["space_id"],
            owner_id=row["owner_id"],
            agent_id=row["agent_id"],
            title=row["title"],
            objective=row["objective"],
            concept=row["concept"],
            cadence=cadence_from_json(json.loads(row["cadence"])),
            state=row["state"],
            next_run_at=row["next_run_at"],
            window_at=row["window_at"],
            failures=row["failures"],
            backoff_until=row["backoff_until"],
            last_error=row["last_error"],
            last_run_at=row["last_run_at"],
            last_status=row["last_status"],
            skip_reason=row["skip_reason"],
            skipped_at=row["skipped_at"],
            lease_owner=row["lease_owner"],
            lease_expires_at=row["lease_expires_at"],
            created_at=row["created_at"],
            updated_at=row["updated_at"],
            agent_name=row["agent_name"] if "agent_name" in keys else None,
        )

    @property
    def next_run(self) -> datetime | None:
        return _time(self.next_run_at)

    @property
    def window(self) -> datetime | None:
        return _time(self.window_at)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "spaceId": self.space_id,
            "ownerId": self.owner_id,
            "agentId": self.agent_id,
            "agentName": self.agent_name,
            "title": self.title,
            "objective": self.objective,
            "concept": self.concept,
            "cadence": cadence_to_json(self.cadence),
            "cadenceText": describe(self.cadence),
            "state": self.state,
            "nextRunAt": self.next_run_at,
            "failures": self.failures,
            "backoffUntil": self.backoff_until,
            "lastError": self.last_error,
            "lastRunAt": self.last_run_at,
            "lastStatus": self.last_status,
            "skipReason": self.skip_reason,
            "skippedAt": self.skipped_at,
            "running": self.lease_owner is not None,
            "createdAt": self.created_at,
            "updatedAt": self.updated_at,
        }


@dataclass(frozen=True)
class PlanStep:
    """One tool call of an iteration. `status`: executed | proposed | denied | failed;
    `proposal_status` follows the proposal once a human decides it."""

    round: int
    index: int
    call_id: str
    tool: str
    status: str
    reason: str | None = None
    request_id: str | None = None
    replayed: bool = False
    proposal_id: str | None = None
    proposal_status: str | None = None
    depth: int = 0

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "round": self.round,
            "index": self.index,
            "callId": self.call_id,
            "tool": self.tool,
            "status": self.status,
        }
        for key, value in (
            ("reason", self.reason),
            ("requestId", self.request_id),
            ("proposalId", self.proposal_id),
            ("proposalStatus", self.proposal_status),
        ):
            if value is not None:
                body[key] = value
        if self.replayed:
            body["replayed"] = True
        if self.depth:
            body["depth"] = self.depth
        return body

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PlanStep:
        return cls(
            round=int(data["round"]),
            index=int(data["index"]),
            call_id=str(data["callId"]),
            tool=str(data["tool"]),
            status=str(data["status"]),
            reason=data.get("reason"),
            request_id=data.get("requestId"),
            replayed=bool(data.get("replayed", False)),
            proposal_id=data.get("proposalId"),
            proposal_status=data.get("proposalStatus"),
            depth=int(data.get("depth", 0)),
        )


@dataclass(frozen=True)
class Iteration:
    id: str
    mission_id: str
    space_id: str
    agent_id: str
    trigger: str
    window_at: str | None
    run_key: str
    attempt: int
    runner: str | None
    status: str
    phase: str
    round: int
    plan: tuple[PlanStep, ...]
    summary: str | None
    stop_reason: str | None
    input_tokens: int
    output_tokens: int
    total_tokens: int
    error_name: str | None
    error_message: str | None
    error_phase: str | None
    cancel_requested: bool
    started_at: str
    finished_at: str | None
    transcript: list[Any] | None = field(default=None, repr=False)

    @classmethod
    def from_row(cls, row: Row, *, with_transcript: bool = False) -> Iteration:
        transcript = None
        if with_transcript and row["transcript"]:
            transcript = json.loads(row["transcript"])
        return cls(
            id=row["id"],
            mission_id=row["mission_id"],
            space_id=row["space_id"],
            agent_id=row["agent_id"],
            trigger=row["trigger"],
            window_at=row["window_at"],
            run_key=row["run_key"],
            attempt=row["attempt"],
            runner=row["runner"],
            status=row["status"],
            phase=row["phase"],
            round=row["round"],
            plan=tuple(PlanStep.from_json(s) for s in json.loads(row["plan"])),
            summary=row["summary"],
            stop_reason=row["stop_reason"],
            input_tokens=row["input_tokens"],
            output_tokens=row["output_tokens"],
            total_tokens=row["total_tokens"],
            error_name=row["error_name"],
            error_message=row["error_message"],
            error_phase=row["error_phase"],
            cancel_requested=bool(row["cancel_requested"]),
            started_at=row["started_at"],
            finished_at=row["finished_at"],
            transcript=transcript,
        )

    @property
    def error(self) -> dict[str, Any] | None:
        if self.error_name is None:
            return None
        return {"name": self.error_name, "message": self.error_message, "phase": self.error_phase}

    def to_json(self, *, transcript: bool = False) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": self.id,
            "missionId": self.mission_id,
            "trigger": self.trigger,
            "windowAt": self.window_at,
            "attempt": self.attempt,
            "status": self.status,
            "phase": self.phase,
            "round": self.round,
            "steps": [s.to_json() for s in self.plan],
            "summary": self.summary,
            "stopReason": self.stop_reason,
            "usage": {
                "inputTokens": self.input_tokens,
                "outputTokens": self.output_tokens,
                "totalTokens": self.total_tokens,
            },
            "error": self.error,
            "cancelRequested": self.cancel_requested,
            "startedAt": self.started_at,
            "finishedAt": self.finished_at,
        }
        if transcript:
            body["transcript"] = self.transcript
        return body


@dataclass(frozen=True)
class Proposal:
    id: str
    iteration_id: str
    mission_id: str
    space_id: str
    agent_id: str
    call_id: str
    tool: str
    arguments: dict[str, Any]
    arguments_json: str
    rationale: str
    reason: str
    fingerprint: str
    status: str
    decided_by: str | None
    decided_at: str | None
    result: dict[str, Any] | None
    created_at: str
    expires_at: str

    @classmethod
    def from_row(cls, row: Row) -> Proposal:
        return cls(
            id=row["id"],
            iteration_id=row["iteration_id"],
            mission_id=row["mission_id"],
            space_id=row["space_id"],
            agent_id=row["agent_id"],
            call_id=row["call_id"],
            tool=row["tool"],
            arguments=json.loads(row["arguments"]),
            arguments_json=row["arguments"],
            rationale=row["rationale"],
            reason=row["reason"],
            fingerprint=row["fingerprint"],
            status=row["status"],
            decided_by=row["decided_by"],
            decided_at=row["decided_at"],
            result=json.loads(row["result"]) if row["result"] else None,
            created_at=row["created_at"],
            expires_at=row["expires_at"],
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "iterationId": self.iteration_id,
            "missionId": self.mission_id,
            "agentId": self.agent_id,
            "tool": self.tool,
            "arguments": self.arguments,
            "rationale": self.rationale,
            "reason": self.reason,
            "fingerprint": self.fingerprint,
            "status": self.status,
            "decidedBy": self.decided_by,
            "decidedAt": self.decided_at,
            "result": self.result,
            "createdAt": self.created_at,
            "expiresAt": self.expires_at,
        }


@dataclass(frozen=True)
class Skip:
    mission_id: str
    window_at: str
    reason: str
    detail: str | None
    first_at: str
    last_at: str
    count: int

    @classmethod
    def from_row(cls, row: Row) -> Skip:
        return cls(
            row["mission_id"],
            row["window_at"],
            row["reason"],
            row["detail"],
            row["first_at"],
            row["last_at"],
            row["count"],
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "missionId": self.mission_id,
            "windowAt": self.window_at,
            "reason": self.reason,
            "detail": self.detail,
            "firstAt": self.first_at,
            "lastAt": self.last_at,
            "count": self.count,
        }
